//! sluice's offsets table: per (consumer group, topic, partition) the next offset to consume.
//! A flush moves it in the same transaction as its data, conditional on the value this handle
//! read, so two owners of one partition can never both commit a range.

use std::collections::BTreeMap;

use super::duck::{DuckError, ident, literal};
use super::{
    LAKE_ALIAS, Lake, NO_OFFSET, OFFSETS_TABLE, OffsetUpdate, QUARANTINE_TABLE, SinkError, duck,
    quarantine,
};

/// One partition's row of sluice's offsets table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRow {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to consume ([`NO_OFFSET`] if registered but never committed).
    pub next_offset: i64,
    /// When it was last moved (or registered), UTC, RFC 3339.
    pub committed_at: Option<String>,
}

impl Lake {
    /// Creates the lake schema and sluice's tables if they do not exist yet.
    pub(super) fn ensure_own_tables(&self) -> Result<(), SinkError> {
        let _turn = self.write_turn();
        let schema_sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {}.{}",
            LAKE_ALIAS,
            ident(&self.schema)
        );
        self.conn
            .execute(&schema_sql)
            .map_err(duck(format!("create lake schema {}", self.schema)))?;
        if self.table_columns(OFFSETS_TABLE)?.is_some()
            && self.table_columns(QUARANTINE_TABLE)?.is_some()
        {
            return Ok(());
        }
        let offsets = self.qualified(OFFSETS_TABLE);
        // Created in one transaction together with the guard row that serializes partition
        // registration (see `register_partitions`); a concurrent creator makes this commit
        // conflict, and the retry then finds the tables.
        let sql = format!(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS {offsets} (consumer_group VARCHAR, topic VARCHAR, \"partition\" INTEGER, next_offset BIGINT, committed_at TIMESTAMP WITH TIME ZONE);
             INSERT INTO {offsets} SELECT '', '', -1, 0, now() WHERE NOT EXISTS (SELECT 1 FROM {offsets} WHERE \"partition\" = -1);
             CREATE TABLE IF NOT EXISTS {} ({});
             COMMIT;
             CALL {alias}.set_option('data_inlining_row_limit', 1000000, schema := {schema}, table_name := '{OFFSETS_TABLE}');",
            self.qualified(QUARANTINE_TABLE),
            quarantine::COLUMNS_SQL,
            alias = LAKE_ALIAS,
            schema = literal(&self.schema),
        );
        // A lost race is retried by `Lake::open_with`, which opens the lake again.
        self.conn.execute(&sql).map(drop).map_err(|e| {
            let _ = self.conn.execute("ROLLBACK");
            duck("create sluice's tables in the lake")(e)
        })
    }

    /// Runs `sql` (a `BEGIN; …; COMMIT;` script), rolling back and retrying it with the
    /// conflict policy while it loses to a concurrent transaction.
    fn in_transaction(&self, what: &str, sql: &str) -> Result<(), DuckError> {
        self.conflicts.run(what, DuckError::is_conflict, || {
            self.conn.execute(sql).map(drop).inspect_err(|_| {
                let _ = self.conn.execute("ROLLBACK");
            })
        })
    }

    /// Ensures every (topic, partition) has an offsets row (registration is serialized through a
    /// guard row, so two instances never both create one) and returns the lake's next offset of
    /// each ([`NO_OFFSET`] if never committed).
    pub fn register_partitions(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, SinkError> {
        let _turn = self.write_turn();
        let mut known = self.read_offsets(topic)?;
        let missing: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !known.contains_key(p))
            .collect();
        if missing.is_empty() {
            known.retain(|p, _| partitions.contains(p));
            return Ok(known);
        }
        let offsets = self.qualified(OFFSETS_TABLE);
        let values = missing
            .iter()
            .map(|p| format!("({p})"))
            .collect::<Vec<_>>()
            .join(", ");
        let g = literal(&self.group);
        let t = literal(topic);
        let sql = format!(
            "BEGIN;
             UPDATE {offsets} SET committed_at = now() WHERE consumer_group = '' AND topic = '' AND \"partition\" = -1;
             INSERT INTO {offsets} SELECT {g}, {t}, v.p, {NO_OFFSET}, now() FROM (VALUES {values}) v(p)
               WHERE NOT EXISTS (SELECT 1 FROM {offsets} o WHERE o.consumer_group = {g} AND o.topic = {t} AND o.\"partition\" = v.p);
             COMMIT;"
        );
        self.in_transaction("partition registration (raced another instance)", &sql)
            .map_err(duck(format!("register partitions of topic {topic}")))?;
        let mut all = self.read_offsets(topic)?;
        all.retain(|p, _| partitions.contains(p));
        Ok(all)
    }

    /// The lake's next offset of every registered partition of `topic` for this group.
    pub fn read_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, SinkError> {
        let sql = format!(
            "SELECT \"partition\", next_offset FROM {} WHERE consumer_group = {} AND topic = {}",
            self.qualified(OFFSETS_TABLE),
            literal(&self.group),
            literal(topic)
        );
        let mut r = self
            .conn
            .query(&sql)
            .map_err(duck(format!("read lake offsets of topic {topic}")))?;
        let n = r.row_count();
        let mut out = BTreeMap::new();
        for row in 0..n {
            if let (Some(p), Some(o)) = (r.i64(0, row), r.i64(1, row)) {
                out.insert(p as i32, o);
            }
        }
        Ok(out)
    }

    /// Moves partitions' lake offsets in one transaction of their own (an offset gap policy,
    /// `sluice offsets set`), each conditional on the value it was read at: if any moved
    /// meanwhile, nothing changes and the error names them ([`SinkError::OffsetConflict`]).
    /// Partitions never registered are registered first.
    pub fn move_offsets(&self, updates: &[OffsetUpdate]) -> Result<(), SinkError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for u in updates {
            by_topic.entry(&u.topic).or_default().push(u.partition);
        }
        for (topic, ps) in by_topic {
            self.register_partitions(topic, &ps)?;
        }
        let _turn = self.write_turn();
        self.conflicts.run(
            "offset move (raced another transaction)",
            |e: &SinkError| matches!(e, SinkError::Duck { source, .. } if source.is_conflict()),
            || {
                self.conn
                    .execute("BEGIN")
                    .map_err(duck("begin an offset move"))?;
                self.update_offsets(updates)?;
                self.conn.execute("COMMIT").map(drop).map_err(|e| {
                    let _ = self.conn.execute("ROLLBACK");
                    duck("commit an offset move")(e)
                })
            },
        )
    }

    /// Every offsets row of this group: (topic, partition, next offset, last commit time as
    /// text), ordered by topic and partition.
    pub fn list_offsets(&self) -> Result<Vec<OffsetRow>, SinkError> {
        let sql = format!(
            "SELECT topic, \"partition\", next_offset, strftime(committed_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') \
             FROM {} WHERE consumer_group = {} AND \"partition\" >= 0 ORDER BY topic, \"partition\"",
            self.qualified(OFFSETS_TABLE),
            literal(&self.group),
        );
        let mut r = self
            .conn
            .query(&sql)
            .map_err(duck("read the lake's offsets"))?;
        let mut out = Vec::new();
        for row in 0..r.row_count() {
            if let (Some(topic), Some(p), Some(next)) =
                (r.text(0, row), r.i64(1, row), r.i64(2, row))
            {
                out.push(OffsetRow {
                    topic,
                    partition: p as i32,
                    next_offset: next,
                    committed_at: r.text(3, row),
                });
            }
        }
        Ok(out)
    }

    /// Milliseconds since the epoch of `text` read as a DuckDB `TIMESTAMPTZ` (e.g.
    /// `2026-12-01T10:00:00Z`).
    pub fn timestamp_ms(&self, text: &str) -> Result<i64, SinkError> {
        let sql = format!("SELECT epoch_ms(CAST({} AS TIMESTAMPTZ))", literal(text));
        let mut r = self
            .conn
            .query(&sql)
            .map_err(duck(format!("read {text:?} as a timestamp")))?;
        r.i64(0, 0).ok_or_else(|| {
            duck(format!("read {text:?} as a timestamp"))(DuckError::new("no value"))
        })
    }

    pub(super) fn update_offsets(&self, offsets: &[OffsetUpdate]) -> Result<(), SinkError> {
        let mut by_topic: BTreeMap<&str, Vec<&OffsetUpdate>> = BTreeMap::new();
        for o in offsets {
            by_topic.entry(&o.topic).or_default().push(o);
        }
        let table = self.qualified(OFFSETS_TABLE);
        for (topic, updates) in by_topic {
            let values = updates
                .iter()
                .map(|o| format!("({}, {}, {})", o.partition, o.prev, o.next))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "UPDATE {table} SET next_offset = v.next, committed_at = now() \
                 FROM (VALUES {values}) v(p, prev, next) \
                 WHERE {table}.consumer_group = {g} AND {table}.topic = {t} \
                   AND {table}.\"partition\" = v.p AND {table}.next_offset = v.prev",
                g = literal(&self.group),
                t = literal(topic),
            );
            let changed = self
                .conn
                .execute(&sql)
                .map_err(duck(format!("move lake offsets of topic {topic}")))?;
            if changed != updates.len() as u64 {
                // Someone else moved (some of) them: find which, then give up this commit.
                let _ = self.conn.execute("ROLLBACK");
                let now = self.read_offsets(topic)?;
                let partitions = updates
                    .iter()
                    .filter_map(|o| {
                        let cur = now.get(&o.partition).copied().unwrap_or(NO_OFFSET);
                        (cur != o.prev).then_some((o.partition, cur))
                    })
                    .collect();
                return Err(SinkError::OffsetConflict {
                    topic: topic.to_string(),
                    partitions,
                });
            }
        }
        Ok(())
    }
}
