//! `cli`: the `sluice` command — [`run`], [`check`], [`demo`], [`config`]. The one place that assembles the
//! stages ([`assemble`]), owns the server runtime, and reports errors with anyhow.

pub mod check;
pub mod config;
pub mod demo;
pub mod instance;
pub mod maintain;
pub mod offsets;
pub mod run;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice_producer::BodyCompression;

use crate::config::{Config, LogFormat};
use crate::live::flight::FlightServer;
use crate::live::ring::Ring;
use crate::maintain::Maintainer;
use crate::observe::server::Servers;
use crate::observe::{Sources, Stats, http};
use crate::pipeline::{Pipeline, PipelineError};

/// Kafka (Arrow IPC) → DuckLake, exactly once.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about)]
pub struct Cli {
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
    /// Print the complete default configuration, every key under its explanation (the
    /// `sluice.example.toml` of the repository is this output).
    Config {
        /// Every key with its default, or commented out with an example where it has none.
        #[arg(long, required = true)]
        defaults: bool,
    },
    /// Run one maintenance pass over the lake (compaction, snapshot expiry, file clean-up) if
    /// no running instance holds the maintenance lease, and exit.
    Maintain {
        /// TOML configuration file (then `SLUICE_…` environment overrides).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also compact sluice's own tables (the offsets, the lease). Only while no instance is
        /// ingesting into the lake: it can race their offset updates.
        #[arg(long)]
        own_tables: bool,
    },
    /// See the lake's offsets against the broker's watermarks, or move them.
    Offsets {
        #[command(subcommand)]
        action: OffsetsAction,
    },
    /// Where ingestion stands, from the lake and the broker (and the instance's metrics
    /// endpoint if one answers): per partition offsets, lag and last commit age, per table its
    /// rows and files, and totals.
    Status {
        /// TOML configuration file (then `SLUICE_…` environment overrides).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print one JSON object instead of the tables.
        #[arg(long)]
        json: bool,
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

#[derive(Subcommand, Debug)]
enum OffsetsAction {
    /// Per topic and partition: lake offset, low/high watermark, lag, last commit time.
    Show {
        /// TOML configuration file (then `SLUICE_…` environment overrides).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Move lake offsets (one transaction, refused if a running instance moved one meanwhile).
    Set {
        /// TOML configuration file (then `SLUICE_…` environment overrides).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Partition (default: every partition of the topic).
        #[arg(long)]
        partition: Option<i32>,
        /// `earliest`, `latest`, an offset, or a timestamp (e.g. 2026-12-01T10:00:00Z: the
        /// first message at or after it).
        #[arg(long)]
        to: String,
    },
}

/// Runs the command line; the process's exit code.
pub fn main() -> ExitCode {
    match dispatch(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config } => run::run(config.as_deref()),
        Command::Check { config } => check::check(config.as_deref()),
        // clap requires `--defaults`, the one thing `config` does so far.
        Command::Config { defaults: _ } => config::print_defaults(),
        Command::Maintain { config, own_tables } => {
            maintain::maintain(config.as_deref(), own_tables)
        }
        Command::Offsets { action } => match action {
            OffsetsAction::Show { config } => offsets::show(config.as_deref()),
            OffsetsAction::Set {
                config,
                topic,
                partition,
                to,
            } => offsets::set(config.as_deref(), &topic, partition, &to),
        },
        Command::Status { config, json } => status::status(config.as_deref(), json),
        Command::Demo {
            dir,
            rows,
            partitions,
            rows_per_message,
            compression,
        } => {
            init_logging("warn", LogFormat::Text);
            let opts = demo::DemoOptions {
                dir,
                rows,
                partitions,
                rows_per_message,
                compression,
            };
            demo::run(&opts, stop_flag()?)?;
            Ok(())
        }
    }
}

/// Logs to stderr at `level` (or `RUST_LOG`), as text or JSON lines. A `RUST_LOG` that is no
/// filter ([`crate::config::env_filter`]) is ignored, saying why.
pub fn init_logging(level: &str, format: LogFormat) {
    let env = std::env::var("RUST_LOG").ok();
    let filter = match env.as_deref().map(crate::config::env_filter) {
        Some(Ok(f)) => f,
        other => {
            if let Some(Err(why)) = other {
                eprintln!("RUST_LOG ignored: it {why}");
            }
            // `level` was validated with the configuration.
            crate::config::env_filter(level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        }
    };
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

/// A flag SIGINT and SIGTERM set; a second signal while stopping ends the process at once.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

/// The stages of one process, wired together: the pipeline, the live ring and its Flight
/// endpoint, the operators' HTTP endpoint, on one server runtime.
pub struct Assembled {
    /// The pipeline's counters.
    pub stats: Arc<Stats>,
    /// The pipeline (publishing to the live ring, if any).
    pub pipeline: Pipeline,
    /// The live ring and the Flight endpoint serving it, if `live.enabled`.
    pub live: Option<(Arc<Ring>, FlightServer)>,
    /// The Flight SQL endpoint, if `sql.enabled`.
    pub sql: Option<crate::sql::SqlServer>,
    /// The Quack URI the real-time views are served on, if `sql.quack_address` is set.
    pub quack: Option<String>,
    /// The HTTP endpoint's address, if `metrics.enabled`.
    pub metrics: Option<SocketAddr>,
    /// The runtime both endpoints run on.
    pub servers: Servers,
    /// The maintenance thread, if `maintenance.enabled`.
    pub maintainer: Option<Maintainer>,
}

/// Opens the lake, subscribes, and starts the endpoints `cfg` enables.
pub fn assemble(cfg: &Config) -> Result<Assembled> {
    let stats = Arc::new(Stats::default());
    let pipeline = Pipeline::new(cfg, stats.clone())?;
    let servers = Servers::new().context("starting the server runtime")?;
    let lake = if cfg.live.enabled {
        let db = pipeline.another_lake()?.database().clone();
        Some(Arc::new(crate::live::lake::LakeSource::new(
            db,
            cfg.tables.clone(),
            &cfg.kafka.group_id,
            &cfg.lake.schema,
        )))
    } else {
        None
    };
    let live = crate::live::start(&cfg.live, &servers, cfg.memory_budget().pending, lake)
        .with_context(|| format!("starting the Flight endpoint on {}", cfg.live.address))?;
    if let Some((ring, _)) = &live {
        pipeline.attach_live(ring.clone());
    }
    let (sql, quack) = match &live {
        Some((ring, _)) if cfg.sql.enabled || cfg.sql.quack_address.is_some() => {
            let db = pipeline.another_lake()?.database().clone();
            let views = crate::sql::install(cfg, &db, ring.clone())
                .context("installing the real-time views")?;
            let sql = if cfg.sql.enabled {
                Some(
                    crate::sql::serve(cfg, &servers, db.clone(), views.clone()).with_context(
                        || format!("starting the Flight SQL endpoint on {}", cfg.sql.address),
                    )?,
                )
            } else {
                None
            };
            let quack = match (&cfg.sql.quack_address, &cfg.live.auth_token) {
                (Some(address), Some(token)) => Some(
                    crate::sql::quack::serve(address, token.expose(), &db, views, &servers)
                        .with_context(|| format!("starting Quack on {address}"))?,
                ),
                _ => None,
            };
            (sql, quack)
        }
        _ => (None, None),
    };
    let metrics = if cfg.metrics.enabled {
        let addr: SocketAddr = cfg.metrics.address.parse()?;
        let sources = Sources {
            stats: stats.clone(),
            flight: live.as_ref().map(|(_, s)| s.stats.clone()),
            stall_after: Duration::from_millis(cfg.metrics.stall_after_ms),
        };
        let credentials = cfg
            .metrics
            .username
            .clone()
            .zip(cfg.metrics.password.clone());
        if credentials.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(address = %addr, "/metrics serves a non-loopback address without authentication (set metrics.username and metrics.password)");
        }
        let bound = http::serve(&servers, addr, sources, credentials)
            .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
        Some(bound)
    } else {
        None
    };
    let maintainer = if cfg.maintenance.enabled {
        let lake = pipeline.another_lake()?;
        Some(
            Maintainer::start(lake, cfg.maintenance.times()?, stats.clone())
                .context("starting the maintenance thread")?,
        )
    } else {
        None
    };
    Ok(Assembled {
        stats,
        pipeline,
        live,
        sql,
        quack,
        metrics,
        servers,
        maintainer,
    })
}

/// Consumes until `stop`, then stops in order: maintenance ends after its current step (and
/// gives its lease up), ingestion flushes and commits, then the Flight and HTTP endpoints stop
/// (readers see every batch until then).
pub fn run_until(a: Assembled, stop: &AtomicBool) -> Result<(), PipelineError> {
    let Assembled {
        pipeline,
        servers,
        maintainer,
        ..
    } = a;
    let result = pipeline.run(stop);
    if let Some(m) = maintainer {
        m.stop();
    }
    servers.stop();
    result
}
