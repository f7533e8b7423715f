//! `sluice-loadgen` against librdkafka's mock cluster: the messages it writes decode back to
//! exactly the rows it reports.

use std::io::Cursor;
use std::process::Command;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use arrow::ipc::reader::StreamReader;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

#[test]
fn loadgen_writes_the_requested_rows_round_robin() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("lg", 3, 1).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args([
            "--brokers",
            &brokers,
            "--topic",
            "lg",
            "--partitions",
            "3",
            "--total",
            "2050",
        ])
        .args([
            "--rows-per-batch",
            "100",
            "--batches-per-message",
            "2",
            "--compression",
            "zstd",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("produced 2050 rows in 11 messages"),
        "{stderr}"
    );

    let (mut seqs, mut per_partition) = (Vec::new(), [0; 3]);
    for (partition, payload) in read_all(&brokers, "lg", 3, 11) {
        per_partition[partition as usize] += 1;
        for b in StreamReader::try_new(Cursor::new(payload), None).unwrap() {
            seqs.extend(
                b.unwrap()
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..2050).collect::<Vec<i64>>());
    assert_eq!(per_partition, [4, 4, 3]);
}

#[test]
fn loadgen_writes_one_json_row_per_message() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("lgj", 2, 1).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args(["--brokers", &brokers, "--topic", "lgj", "--partitions", "2"])
        .args(["--total", "25", "--rows-per-batch", "10"])
        .args(["--dataset", "narrow", "--values", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("produced 25 rows in 25 messages"),
        "{stderr}"
    );

    let (mut seqs, mut per_partition) = (Vec::new(), [0; 2]);
    for (partition, payload) in read_all(&brokers, "lgj", 2, 25) {
        per_partition[partition as usize] += 1;
        let text = std::str::from_utf8(&payload).unwrap();
        assert!(
            text.starts_with("{\"seq\":") && text.contains("\"sensor_id\":"),
            "{text}"
        );
        let seq: i64 = text["{\"seq\":".len()..text.find(',').unwrap()]
            .parse()
            .unwrap();
        seqs.push(seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..25).collect::<Vec<i64>>());
    assert_eq!(per_partition, [13, 12]);
}

/// Reads `messages` messages from the start of `partitions` partitions of `topic`: (partition,
/// payload) in arrival order.
fn read_all(brokers: &str, topic: &str, partitions: i32, messages: usize) -> Vec<(i32, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < messages {
        assert!(
            Instant::now() < deadline,
            "only {} of {messages} messages arrived",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            out.push((m.partition(), m.payload().unwrap_or_default().to_vec()));
        }
    }
    out
}
