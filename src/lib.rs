//! sluice moves Arrow IPC payloads from Kafka into DuckLake tables, exactly once, without
//! copying them to decode.
//!
//! ```text
//! Kafka ──poll──> KafkaMessage ──Buffer (no copy)──> decode ──RecordBatch──┬──> pending[table]
//!  (source)   (owns the librdkafka message)   (stream|file, lz4|zstd)      └──> live ring[topic]
//! pending[table] ──flush──> DuckDB Arrow scan (C Data Interface) ──> DuckLake txn
//!  (pipeline)                            (sink)                 {data + offsets + quarantine}
//! live ring[topic] ──> Flight DoGet (replay / follow)  (live)
//! ```
//!
//! - [`source`] — the Kafka consumer and the message owner that backs Arrow buffers.
//! - [`decode`] — in-place IPC decoding, with copied bytes measured.
//! - [`sink`] — DuckDB/DuckLake: attach, offsets, schema fit, the exactly-once commit,
//!   quarantine.
//! - [`live`] — the retention ring and the live Arrow Flight endpoint.
//! - [`pipeline`] — the loop: partitions, pending data, the flush policy, commit outcomes.
//! - [`maintain`] — the lake's lifecycle (compaction, snapshot expiry, file clean-up through
//!   DuckLake's functions), leased to one instance at a time.
//! - [`config`] — figment-layered configuration, one section per stage, validated before start.
//! - [`observe`] — counters, `/metrics`, health checks, the server runtime (a leaf).
//! - [`cli`] — `sluice run`, `check`, `demo`, `maintain`, `offsets` and `status`, assembling
//!   the stages once.
//! - [`retry`] — the one backoff policy of every retry loop; [`sync`] — poison-tolerant locks.

pub mod cli;
pub use sluice_config as config;
pub mod decode;
pub mod live;
pub mod maintain;
pub mod observe;
pub mod pipeline;
pub mod retry;
pub mod sink;
pub mod source;
pub mod sql;
pub mod sync;
