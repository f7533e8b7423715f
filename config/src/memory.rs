//! `[memory]`: one limit for the whole process, split between its parts.
//!
//! An operator sets the container's limit once (`memory.limit_bytes`); sluice derives from it
//! what each part may hold, and lowers the settings that bound those parts to their shares:
//!
//! | part | bounded by |
//! |---|---|
//! | the allocator's overhead (retained pages, fragmentation) | a tenth of the limit, kept free |
//! | code, DuckDB's and librdkafka's fixed state, thread stacks | [`BASE_BYTES`], kept free |
//! | librdkafka's prefetch | `kafka.queued_max_messages_kbytes` + `kafka.fetch_max_bytes` |
//! | Arrow data: pending, in flight, the live ring | `flush.memory_cap_bytes`, `live.retention_bytes`, `flush.max_bytes` |
//! | DuckDB's Parquet writer | DuckDB's `memory_limit` and `threads`, the size of one flush, the tables' row groups |
//!
//! A setting already lower than its share stays as it is. DuckDB's Parquet writer buffers one
//! row group per thread; a row group is 122,880 rows by default, which for rows of 1 KB asks
//! DuckDB for more than a 512 MiB process can give it (measured: DuckDB 1.5.5 with a 128 MiB
//! `memory_limit` fails such an insert with "Out of Memory Error: failed to allocate data of
//! size 128.0 MiB"). Under a limit a flush is therefore at most a third of DuckDB's share, and
//! a table without a configured `parquet_row_group_size` gets one that keeps a row group near
//! [`MemorySplit::row_group_bytes`] at the bytes per row of its first flush (which also bounds
//! what compaction holds). DuckDB's `parquet_row_group_size_bytes` would bound it directly, but
//! only with `preserve_insertion_order` off; set on a table it makes every stock DuckDB
//! `INSERT` and `ducklake_merge_adjacent_files` on that table fail ("ROW_GROUP_SIZE_BYTES does
//! not work while preserving insertion order", measured), so sluice does not use it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, invalid, parse_size};

const MIB: u64 = 1024 * 1024;

/// What the process holds whatever it does: sluice's, DuckDB's and librdkafka's code and fixed
/// state (the DuckLake extension, the catalog connection, librdkafka's broker threads), the
/// Flight and HTTP runtimes and every thread's stack.
pub const BASE_BYTES: u64 = 96 * MIB;

/// The smallest limit the split works with: below it the Arrow or DuckDB share would be too
/// small to hold one Parquet row group of a few MiB.
pub const MIN_LIMIT_BYTES: u64 = 256 * MIB;

/// `[memory]` settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// The most memory (resident bytes) the whole process may use, e.g. the container's limit;
    /// unset, each part is bounded only by its own settings. sluice splits it and lowers
    /// `flush.memory_cap_bytes`, `flush.max_bytes`, `live.retention_bytes`, kafka's prefetch and
    /// DuckDB's `memory_limit` and `threads` to their shares (a lower setting stays; `sluice
    /// check` prints the split). At least 256 MiB.
    #[schemars(example = 1_073_741_824)]
    pub limit_bytes: Option<u64>,
}

/// How `memory.limit_bytes` is split (all in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySplit {
    /// `memory.limit_bytes`.
    pub limit: u64,
    /// Left free for the allocator's overhead: a tenth of the limit.
    pub headroom: u64,
    /// Left free for what the process holds whatever it does ([`BASE_BYTES`]).
    pub base: u64,
    /// librdkafka's prefetch: a sixteenth of the limit, between 8 and 64 MiB, half queued
    /// messages and half one fetch.
    pub prefetch: u64,
    /// Arrow data: pending, in flight and the live ring (half of what is left).
    pub arrow: u64,
    /// Of `arrow`, the live ring's retention over all topics: at most a quarter of it.
    pub live: u64,
    /// DuckDB's `memory_limit`: the other half of what is left.
    pub duckdb: u64,
    /// DuckDB's threads: one per 128 MiB of its share, at most the cores.
    pub threads: u32,
    /// Parquet row group bound: an eighth of DuckDB's share per thread, 4 to 64 MiB. Compacting
    /// files of such row groups took DuckDB about 4.5 times one (measured: merging the files of
    /// 1 KB rows in 43,008-row groups, about 42 MiB, failed in a 166 MB `memory_limit` with
    /// "failed to allocate data of size 37.4 MiB (141.3 MiB/158.3 MiB used)" and passed in
    /// 200 MB).
    pub row_group_bytes: u64,
    /// The largest single flush: half of the pending share (so one table's flush can be in
    /// flight while the next one fills), at most a third of DuckDB's share.
    pub flush_bytes: u64,
}

impl MemorySplit {
    /// The split of `limit` for a process with `cores` cores and `topics` topic entries (the
    /// live ring reserves retention per entry), or why `limit` is too small.
    pub fn derive(limit: u64, cores: u32, topics: usize, live: bool) -> Result<Self, String> {
        if limit < MIN_LIMIT_BYTES {
            return Err(format!(
                "({}) is below the smallest limit sluice can keep, {}",
                mib(limit),
                mib(MIN_LIMIT_BYTES)
            ));
        }
        let headroom = limit / 10;
        let base = BASE_BYTES;
        let prefetch = (limit / 16).clamp(8 * MIB, 64 * MIB);
        let rest = limit - headroom - base - prefetch;
        let arrow = rest / 2;
        let duckdb = rest - arrow;
        let live = if live && topics > 0 { arrow / 4 } else { 0 };
        let threads = ((duckdb / (128 * MIB)) as u32).clamp(1, cores.max(1));
        let row_group_bytes = (duckdb / 8 / u64::from(threads)).clamp(4 * MIB, 64 * MIB);
        Ok(MemorySplit {
            limit,
            headroom,
            base,
            prefetch,
            arrow,
            live,
            duckdb,
            threads,
            row_group_bytes,
            flush_bytes: ((arrow - live) / 2).min(duckdb / 3),
        })
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / MIB)
}

impl Config {
    /// With `memory.limit_bytes` set, lowers every setting that bounds a part of the process to
    /// that part's share (a setting already lower stays). Running it again changes nothing.
    pub fn apply_memory_limit(&mut self) -> Result<(), ConfigError> {
        let Some(split) = self.split() else {
            return Ok(());
        };
        let split = split.map_err(|why| invalid("memory.limit_bytes", why))?;
        let duckdb = match &self.lake.memory_limit {
            Some(m) => parse_size(m).ok_or_else(|| {
                invalid(
                    "lake.memory_limit",
                    format!("{m:?} is not a size like \"2GB\", \"512MiB\" or \"1000000\""),
                )
            })?,
            None => u64::MAX,
        };
        if duckdb > split.duckdb {
            self.lake.memory_limit = Some(format!("{}MiB", split.duckdb / MIB));
        }
        self.lake.threads = Some(
            self.lake
                .threads
                .map_or(split.threads, |t| t.min(split.threads)),
        );
        self.lake.row_group_bytes = Some(split.row_group_bytes);
        let lower = |v: &mut u64, share: u64| *v = (*v).min(share);
        lower(
            &mut self.kafka.queued_max_messages_kbytes,
            split.prefetch / 2 / 1024,
        );
        lower(&mut self.kafka.fetch_max_bytes, split.prefetch / 2);
        lower(
            &mut self.kafka.max_partition_fetch_bytes,
            self.kafka.fetch_max_bytes,
        );
        if let Some(per_topic) = split.live.checked_div(self.kafka.topics.len() as u64) {
            lower(&mut self.live.retention_bytes, per_topic);
        }
        lower(
            &mut self.flush.memory_cap_bytes,
            split.arrow + split.prefetch,
        );
        lower(&mut self.flush.max_bytes, split.flush_bytes);
        Ok(())
    }

    /// The split of `memory.limit_bytes` (`None` without a limit or when it is too small).
    pub fn memory_split(&self) -> Option<MemorySplit> {
        self.split()?.ok()
    }

    /// The split on this machine's cores, or why the limit is too small; `None` without one.
    fn split(&self) -> Option<Result<MemorySplit, String>> {
        let limit = self.memory.limit_bytes?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Some(MemorySplit::derive(
            limit,
            cores,
            self.kafka.topics.len(),
            self.live.enabled,
        ))
    }
}
