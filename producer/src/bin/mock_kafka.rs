//! `sluice-mock-kafka`: librdkafka's mock cluster as a process of its own, for tests and the
//! chaos suite that run several `sluice run` processes against one broker.
//!
//! The mock brokers listen on real loopback ports and implement consumer groups with session
//! expiry (a SIGKILLed member leaves the group after its `session.timeout.ms`), which the
//! broker process of the tests (tansu 0.6) does not do promptly. Mind the mock's retention: it
//! keeps about 5 MiB / 100k messages per partition, so producers must pace themselves by lag.
//!
//! The first line printed is the bootstrap address. Then it reads commands from stdin, one per
//! line, answering `ok` or `error: …` on stdout:
//! - `down <broker id>` / `up <broker id>`: take a broker down (connections closed, refused) or
//!   bring it back;
//! - `rtt <broker id> <milliseconds>`: delay every response of a broker.
//!
//! It exits when stdin closes (so it never outlives the process that started it) or on SIGTERM.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, Producer};

/// Host librdkafka's mock Kafka cluster on loopback and print its bootstrap address.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Number of mock brokers.
    #[arg(long, default_value_t = 1)]
    brokers: i32,
    /// A topic to create first, `name:partitions` (repeatable).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// How long the first member of an empty group waits for others before the group is
    /// assigned (Kafka's `group.initial.rebalance.delay.ms`; the mock's default is 3000). A
    /// member whose `session.timeout.ms` is shorter than this never gets an assignment.
    #[arg(long, default_value_t = 3000)]
    initial_rebalance_delay_ms: i32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // The cluster lives inside this client (librdkafka's `test.mock.num.brokers`), so that its
    // raw handle is reachable for the one setting rdkafka does not wrap.
    let host: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", args.brokers.to_string())
        .create()
        .context("starting librdkafka's mock cluster")?;
    let cluster = host
        .client()
        .mock_cluster()
        .context("librdkafka did not start a mock cluster")?;
    // SAFETY: `host` created the mock cluster (test.mock.num.brokers) and outlives every use of
    // the handle below; librdkafka returns NULL, checked, for a client without one.
    let raw =
        unsafe { rdkafka::bindings::rd_kafka_handle_mock_cluster(host.client().native_ptr()) };
    anyhow::ensure!(!raw.is_null(), "librdkafka did not start a mock cluster");
    // SAFETY: `raw` is the live mock cluster of `host` (checked non-null above); the call only
    // stores the delay in the cluster's defaults.
    unsafe {
        rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(
            raw,
            args.initial_rebalance_delay_ms,
        )
    };
    for spec in &args.topics {
        let (name, partitions) = spec
            .rsplit_once(':')
            .with_context(|| format!("--topic {spec:?} is not name:partitions"))?;
        let partitions: i32 = partitions
            .parse()
            .with_context(|| format!("--topic {spec:?}: {partitions:?} is not a number"))?;
        cluster
            .create_topic(name, partitions, 1)
            .with_context(|| format!("creating topic {name:?}"))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", cluster.bootstrap_servers())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let answer = match command(&cluster, line.trim()) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e:#}"),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

/// Runs one stdin command against the cluster.
fn command<C: rdkafka::ClientContext>(cluster: &MockCluster<'_, C>, line: &str) -> Result<()> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let id = |i: usize| -> Result<i32> {
        words
            .get(i)
            .with_context(|| format!("{line:?}: a broker id is missing"))?
            .parse()
            .with_context(|| format!("{line:?}: the broker id is not a number"))
    };
    match words.first().copied() {
        Some("down") => cluster.broker_down(id(1)?)?,
        Some("up") => cluster.broker_up(id(1)?)?,
        Some("rtt") => {
            let ms: u64 = words
                .get(2)
                .with_context(|| format!("{line:?}: the milliseconds are missing"))?
                .parse()
                .with_context(|| format!("{line:?}: the milliseconds are not a number"))?;
            cluster.broker_round_trip_time(id(1)?, Duration::from_millis(ms))?
        }
        Some(other) => bail!("unknown command {other:?} (down <id>, up <id>, rtt <id> <ms>)"),
        None => bail!("empty command"),
    }
    Ok(())
}
