//! sluice moves Arrow IPC payloads from Kafka into DuckLake tables, exactly once, without
//! copying them to decode.
//!
//! ```text
//! Kafka ──poll──> KafkaMessage ──Buffer (no copy)──> decode ──RecordBatch──> pending[table]
//!   (source)        (owner of the librdkafka message)  (stream|file, lz4|zstd)   (pipeline)
//!   ──flush──> DuckDB Arrow scan (C Data Interface) ──> DuckLake txn {data + offsets + quarantine}
//!                                   (sink)
//! ```
//!
//! - [`source`] — the Kafka consumer and the message owner that backs Arrow buffers.
//! - [`decode`] — in-place IPC decoding, with copied bytes measured.
//! - [`sink`] — DuckDB/DuckLake: the Arrow stream handoff and the exactly-once commit.
//! - [`live`] — the retention ring behind the live Arrow Flight endpoint.
//! - [`pipeline`] — flush policy, memory cap, rebalances, quarantine, clean stop.
//! - [`config`] — figment-layered configuration, validated before start.
//! - [`observe`] — counters.
//! - [`demo`] — `sluice demo`, the whole pipeline on embedded parts.

pub mod config;
pub mod decode;
pub mod demo;
pub mod live;
pub mod metrics;
pub mod observe;
pub mod pipeline;
pub mod retry;
pub mod sink;
pub mod source;
