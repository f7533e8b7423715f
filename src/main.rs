//! The `sluice` command: `run`, `check` and `demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice::config::{Config, LogFormat};
use sluice::demo::{self, DemoOptions};
use sluice::metrics::{self, MetricsServer};
use sluice::observe::Stats;
use sluice::pipeline::Pipeline;
use sluice::sink::Lake;
use sluice::source::KafkaSource;
use sluice_producer::BodyCompression;

/// Kafka (Arrow IPC) → DuckLake, exactly once.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Consume the configured topics into the lake until SIGINT/SIGTERM.
    Run {
        /// TOML configuration file (then `SLUICE_…` environment overrides).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and check that the brokers answer and the lake attaches.
    Check {
        /// TOML configuration file (then `SLUICE_…` environment overrides).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the whole pipeline on embedded parts (mock Kafka, local DuckLake) and show the result.
    Demo {
        /// Directory for the demo lake.
        #[arg(long, default_value = "sluice-demo")]
        dir: PathBuf,
        /// Rows to produce.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Topic partitions.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Rows per Kafka message.
        #[arg(long, default_value_t = 100)]
        rows_per_message: usize,
        /// Arrow IPC body compression of the produced messages.
        #[arg(long, value_enum, default_value_t = BodyCompression::None)]
        compression: BodyCompression,
    },
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping ends the process at once.
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config } => {
            let cfg = Config::load(config.as_deref())?;
            init_logging(&cfg.log.level, cfg.log.format);
            let stop = stop_flag()?;
            let stats = Arc::new(Stats::default());
            let pipeline = Pipeline::new(&cfg, stats.clone())?;
            let live = sluice::live::start(&cfg.live)
                .with_context(|| format!("starting the Flight endpoint on {}", cfg.live.address))?;
            if let Some((ring, server)) = &live {
                pipeline.attach_live(ring.clone());
                tracing::info!(url = %format!("grpc://{}", server.addr), "live Arrow Flight endpoint");
            }
            let metrics = if cfg.metrics.enabled {
                let addr = cfg.metrics.address.parse()?;
                let server = MetricsServer::start(
                    addr,
                    metrics::Sources {
                        stats,
                        flight: live.as_ref().map(|(_, s)| s.stats.clone()),
                        stall_after: Duration::from_millis(cfg.metrics.stall_after_ms),
                    },
                )
                .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
                tracing::info!(url = %format!("http://{}/metrics", server.addr), "metrics endpoint");
                Some(server)
            } else {
                None
            };
            tracing::info!(topics = ?cfg.kafka.topics, group = %cfg.kafka.group_id, "sluice running");
            // Ingestion flushes and commits first; then the Flight and metrics servers stop.
            let result = pipeline.run(&stop);
            if let Some((_, server)) = live {
                server.stop();
            }
            if let Some(m) = metrics {
                m.stop();
            }
            result?;
            tracing::info!("stopped cleanly");
            Ok(())
        }
        Command::Check { config } => {
            let cfg = Config::load(config.as_deref())?;
            init_logging("warn", cfg.log.format);
            println!("config: ok");
            let b = cfg.memory_budget();
            let mib = |n: u64| n / (1024 * 1024);
            println!(
                "memory budget: {} MiB = {} MiB pending + {} MiB live retention + {} MiB librdkafka prefetch",
                mib(b.total),
                mib(b.pending),
                mib(b.live),
                mib(b.prefetch)
            );
            let source = KafkaSource::new(&cfg.kafka)?;
            let (patterns, names): (Vec<String>, Vec<String>) = cfg
                .kafka
                .topics
                .iter()
                .cloned()
                .partition(|t| sluice::config::is_topic_pattern(t));
            let topics = source
                .check(&names, Duration::from_secs(10))
                .context("kafka brokers unreachable")?;
            for p in &patterns {
                println!("kafka: pattern {p:?} (topics matching it are consumed as they appear)");
            }
            for (t, n) in &topics {
                if *n == 0 {
                    anyhow::bail!("topic {t:?} does not exist on {}", cfg.kafka.brokers);
                }
                println!("kafka: topic {t:?} has {n} partitions");
            }
            let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id)?;
            drop(lake);
            println!(
                "lake: attached ({} catalog, data path {})",
                format!("{:?}", cfg.lake.catalog_kind).to_lowercase(),
                cfg.lake.data_path
            );
            Ok(())
        }
        Command::Demo {
            dir,
            rows,
            partitions,
            rows_per_message,
            compression,
        } => {
            init_logging("warn", LogFormat::Text);
            let stop = stop_flag()?;
            let opts = DemoOptions {
                dir,
                rows,
                partitions,
                rows_per_message,
                compression,
            };
            demo::run(&opts, stop)?;
            Ok(())
        }
    }
}
