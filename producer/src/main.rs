//! `sluice-loadgen`: produces PostHog-shaped events as Arrow IPC to a Kafka topic.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use sluice_producer::events::{Dataset, EventGen};
use sluice_producer::{ArrowProducer, BodyCompression, Encoding, IpcFormat, encode_json_rows};

/// What a message value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Values {
    /// Arrow IPC: `--batches-per-message` batches of `--rows-per-batch` rows.
    Arrow,
    /// One JSON object per row, one row per message (the JSON consumer baseline's input).
    Json,
}

/// Produce PostHog-shaped events as Arrow IPC messages.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "localhost:9092")]
    brokers: String,
    /// Topic to write to.
    #[arg(long, default_value = "events")]
    topic: String,
    /// Partitions to spread messages over (round robin); the topic is created with this many
    /// partitions if it does not exist.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Total rows to produce.
    #[arg(long, default_value_t = 1_000_000)]
    total: u64,
    /// Rows per record batch.
    #[arg(long, default_value_t = 1000)]
    rows_per_batch: usize,
    /// Record batches per Kafka message.
    #[arg(long, default_value_t = 1)]
    batches_per_message: usize,
    /// Rows per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// IPC framing.
    #[arg(long, value_enum, default_value_t = IpcFormat::Stream)]
    format: IpcFormat,
    /// IPC body compression.
    #[arg(long, value_enum, default_value_t = BodyCompression::None)]
    compression: BodyCompression,
    /// Which rows to generate.
    #[arg(long, value_enum, default_value_t = Dataset::Events)]
    dataset: Dataset,
    /// Arrow IPC messages or one JSON row per message.
    #[arg(long, value_enum, default_value_t = Values::Arrow)]
    values: Values,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Extra librdkafka producer properties, `key=value`.
    #[arg(long = "property", short = 'X')]
    properties: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let props: Vec<(String, String)> = args
        .properties
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--property {p:?} is not key=value"))
        })
        .collect::<Result<_>>()?;
    ensure_topic(&args.brokers, &args.topic, args.partitions)?;
    let prop_refs: Vec<(&str, &str)> = props
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let encoding = Encoding {
        format: args.format,
        compression: args.compression,
    };
    let producer = ArrowProducer::new(&args.brokers, &args.topic, encoding, &prop_refs)?;
    let mut g = EventGen::new(args.seed);
    let start = Instant::now();
    let (mut rows, mut bytes, mut messages) = (0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    while rows < args.total {
        let mut batches = Vec::with_capacity(args.batches_per_message);
        let mut in_msg = 0u64;
        for _ in 0..args.batches_per_message {
            let n = (args.total - rows - in_msg).min(args.rows_per_batch as u64) as usize;
            if n == 0 {
                break;
            }
            batches.push(args.dataset.generate(&mut g, n));
            in_msg += n as u64;
        }
        let partitions = args.partitions.max(1) as u64;
        match args.values {
            Values::Arrow => {
                let partition = (messages % partitions) as i32;
                bytes += producer.send(Some(partition), None, &batches)? as u64;
                messages += 1;
            }
            Values::Json => {
                for batch in &batches {
                    for row in encode_json_rows(batch)? {
                        let partition = (messages % partitions) as i32;
                        producer.send_raw(Some(partition), None, &row)?;
                        bytes += row.len() as u64;
                        messages += 1;
                    }
                }
            }
        }
        rows += in_msg;
        producer.poll();
        if args.rate > 0 {
            let due = Duration::from_secs_f64(rows as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            report(rows, bytes, messages, start.elapsed());
        }
    }
    producer.flush(Duration::from_secs(60))?;
    report(rows, bytes, messages, start.elapsed());
    Ok(())
}

fn report(rows: u64, bytes: u64, messages: u64, elapsed: Duration) {
    let s = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "produced {rows} rows in {messages} messages, {:.1} MB ({:.0} rows/s, {:.1} MB/s)",
        bytes as f64 / 1e6,
        rows as f64 / s,
        bytes as f64 / 1e6 / s
    );
}

fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating the Kafka admin client")?;
    let md = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("fetching topic metadata")?;
    let existing = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if existing > 0 {
        if (existing as i32) < partitions {
            anyhow::bail!(
                "topic {topic} has {existing} partitions, fewer than --partitions {partitions}"
            );
        }
        return Ok(());
    }
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let fut = admin.create_topics(
        [&new],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    );
    let results = futures_lite_block_on(fut).context("creating the topic")?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("could not create topic {t}: {e}"),
        }
    }
    Ok(())
}

/// Minimal executor for the admin client's single future (no async runtime needed).
fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context as TaskContext, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
