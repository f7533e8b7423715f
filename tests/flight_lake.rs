//! Flight reads from any ingested position (issue 16 part 2), with pyarrow.flight: positions
//! older than the live ring are read from the lake (by the lineage columns `_kafka_partition`,
//! `_kafka_offset`, `_kafka_batch`), then from the ring, and a follower that falls behind the
//! ring goes on from the lake instead of being cut off (as it is without the lake).

mod common;

use std::io::BufRead;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use sluice::config::Config;
use sluice::live::flight::{self, LiveFlight};
use sluice::live::lake::LakeSource;
use sluice::live::ring::{Retention, Ring};
use sluice::observe::FlightStats;
use sluice::observe::server::Servers;
use sluice::pipeline::Pipeline;
use sluice::sink::Lake;
use sluice_producer::events::{EventGen, generate};
use sluice_producer::{ArrowProducer, Encoding};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/flight_client.py");

/// A pipeline consuming `cfg`'s topic with a live ring of `retention_bytes`, and a Flight
/// endpoint over it that reads older positions from the pipeline's lake if `lake`.
struct LakeBacked {
    servers: Servers,
    url: String,
    stats: Arc<FlightStats>,
    run: Running,
}

impl LakeBacked {
    fn start(cfg: &Config, retention_bytes: u64, with_lake: bool) -> LakeBacked {
        let ring = Ring::new(Retention {
            max_bytes: retention_bytes,
            max_age: Duration::from_secs(600),
            max_uncommitted: 64 << 20,
        });
        let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
        let source = LakeSource::new(
            lake.database().clone(),
            cfg.tables.clone(),
            &cfg.kafka.group_id,
            &cfg.lake.schema,
        );
        let servers = Servers::new().unwrap();
        let mut service = LiveFlight::new(ring.clone());
        if with_lake {
            service = service.with_lake(Arc::new(source));
        }
        let stats = service.stats().clone();
        let addr = "127.0.0.1:0".parse().unwrap();
        let server = flight::serve(&servers, service, addr, flight::Access::default()).unwrap();
        let run = Running::start_with(cfg, lake, |p: &Pipeline| p.attach_live(ring.clone()));
        LakeBacked {
            servers,
            url: server.url(),
            stats,
            run,
        }
    }

    fn stop(self) {
        self.run.stop().unwrap();
        self.servers.stop();
    }
}

/// `messages` messages of two record batches of 50 events each (seq from `first` on), round
/// robin over `partitions`.
fn produce_two_batch_messages(p: &ArrowProducer, partitions: i32, first: i64, messages: usize) {
    let mut g = EventGen::starting_at(9, first);
    for m in 0..messages {
        let batches = [generate(&mut g, 50), generate(&mut g, 50)];
        p.send(Some((m as i32) % partitions), None, &batches)
            .expect("send");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

fn lineage(cfg: &mut Config) {
    cfg.tables.metadata.partition = true;
    cfg.tables.metadata.offset = true;
    cfg.tables.metadata.batch = true;
}

fn client(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run flight_client.py");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "flight_client.py {args:?}:\n{stderr}");
    stderr
}

/// 3,000 rows in 30 messages of two batches over 2 partitions; the first 2,000 rows are
/// committed and evicted from a ring of about 10 messages, the last 1,000 wait uncommitted in
/// the ring. A read from offset 0 reads the lake, then the ring: every row once, in order per
/// partition; resuming after any batch of it from the last `app_metadata` per partition gives
/// exactly the rest of that read, across the lake→ring seam too. A read from the time between
/// the 10th and the 11th message starts at the 11th, in the lake.
#[test]
fn a_read_from_offset_0_after_eviction_reads_the_lake_then_the_ring_exactly() {
    let (kafka, topic, _dir, mut cfg) = setup("lake_read", 2);
    lineage(&mut cfg);
    cfg.tables.metadata.timestamp = true;
    cfg.flush.max_rows = 2_000;
    cfg.flush.max_age_ms = 600_000;
    let p = kafka.producer(&topic, Encoding::default());
    produce_two_batch_messages(&p, 2, 0, 10);
    // The messages from seq 1,000 on are stamped after `middle` (the producer's clock).
    std::thread::sleep(Duration::from_millis(1_100));
    let middle = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    std::thread::sleep(Duration::from_millis(100));
    produce_two_batch_messages(&p, 2, 1_000, 20);
    let s = LakeBacked::start(&cfg, 1_100_000, true);
    s.run.wait(
        "2,000 rows committed and 3,000 read",
        Duration::from_secs(60),
        |st| st.committed_rows.load(Relaxed) >= 2_000 && st.rows.load(Relaxed) >= 3_000,
    );
    assert_eq!(s.run.stats.committed_rows.load(Relaxed), 2_000);
    let stderr = client(&["lake_replay", &s.url, &topic, "3000"]);
    assert!(
        stderr.contains(
            "read 3000 rows from offset 0 in 60 batches, 40 from the lake; every resume exact"
        ),
        "{stderr}"
    );
    // From a time: the lake's offsets for it (its first 1,000 rows are committed and evicted),
    // then the ring.
    let stderr = client(&["lake_time", &s.url, &topic, &middle, "1000", "3000"]);
    assert!(
        stderr.contains("read seq 1000..3000 once each from timestamp"),
        "{stderr}"
    );
    assert_eq!(s.stats.lag_disconnects.load(Relaxed), 0);
    s.stop();
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), 3_000);
}

/// Runs the client mode `client` (a follower from latest that reads one batch, prints
/// "stalling" and stalls 3 s) while 8 times the ring's retention goes through a 1-partition
/// topic (8,300 rows in all); returns its stderr and the Flight counters (lag disconnects, lake
/// catch-ups, lake batches), after checking the lake holds every row.
fn stall_while_the_ring_turns_over(
    client: &str,
    with_lineage: bool,
    with_lake: bool,
) -> (String, [u64; 3]) {
    let (kafka, topic, _dir, mut cfg) = setup("lake_slow", 1);
    if with_lineage {
        lineage(&mut cfg);
    }
    let p = kafka.producer(&topic, Encoding::default());
    produce_events(&p, 1, 0, 2, 100);
    let s = LakeBacked::start(&cfg, 1_100_000, with_lake);
    s.run.wait("first rows", Duration::from_secs(60), |st| {
        st.rows.load(Relaxed) >= 200
    });
    let args = [client, &s.url, &topic, "3", "200", "8300"];
    let (child, mut stdout) = spawn_script(SCRIPT, &args, "following");
    produce_events(&p, 1, 200, 1, 100);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "stalling");
    // While it stalls, 80 more messages go through the ring (8x its retention), in two bursts
    // the consumer keeps up with (the mock cluster keeps only 5 MiB per partition).
    produce_events(&p, 1, 300, 40, 100);
    s.run.wait("first burst", Duration::from_secs(60), |st| {
        st.rows.load(Relaxed) >= 4_300
    });
    produce_events(&p, 1, 4_300, 40, 100);
    s.run
        .wait("ingestion went on", Duration::from_secs(60), |st| {
            st.committed_rows.load(Relaxed) >= 8_300
        });
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let counters = [
        s.stats.lag_disconnects.load(Relaxed),
        s.stats.lake_catchups.load(Relaxed),
        s.stats.lake_batches.load(Relaxed),
    ];
    s.stop();
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), 8_300);
    (stderr, counters)
}

/// A follower that stalls while 8 times the ring's retention goes through is not cut off: it
/// goes on from the lake, then the ring, and receives every row produced after it started,
/// once, in order.
#[test]
fn a_slow_follower_falls_back_to_the_lake_and_receives_every_row() {
    let (stderr, [cut, catchups, batches]) =
        stall_while_the_ring_turns_over("slow_lake", true, true);
    assert!(
        stderr.contains("the slow follower received seq 200..8300 once each, in order"),
        "{stderr}"
    );
    assert_eq!((cut, catchups), (0, 1));
    assert!(batches > 0);
}

/// Without the lineage columns the lake cannot place the follower's position: it is cut off
/// as without a lake, and the error says why the lake did not help.
#[test]
fn a_slow_follower_the_lake_cannot_serve_is_cut_off_saying_why() {
    let (stderr, [cut, catchups, batches]) = stall_while_the_ring_turns_over("slow", false, true);
    assert!(
        stderr.contains(
            "cut off: gRPC returned resource exhausted error, with message: reader of topic"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("batches were dropped before it read them; the lake cannot serve it either: the lake table"),
        "{stderr}"
    );
    assert!(
        stderr.contains("has no column _kafka_partition: reading positions older than the live ring from the lake needs [tables.metadata] partition, offset and batch = true"),
        "{stderr}"
    );
    assert_eq!((cut, catchups, batches), (1, 0, 0));
}

/// Without the lake behind the ring, a follower that falls behind it is cut off, saying by how
/// much, while ingestion goes on.
#[test]
fn a_slow_follower_without_the_lake_is_cut_off_with_the_lag() {
    let (stderr, [cut, catchups, batches]) = stall_while_the_ring_turns_over("slow", true, false);
    assert!(
        stderr.contains(
            "cut off: gRPC returned resource exhausted error, with message: reader of topic"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("batches were dropped before it read them. gRPC client debug context"),
        "{stderr}"
    );
    assert_eq!((cut, catchups, batches), (1, 0, 0));
}
