//! The real-time views: for each lake table `t`, the view `t_live` in sluice's DuckDB is the
//! table's rows united (by column name) with the live ring's rows of every topic feeding it
//! whose offsets the lake has not committed. A table's view appears with the table, at its
//! first commit.
//!
//! Why no row is missing or doubled at the commit boundary: a flush commits its rows and moves
//! `sluice_offsets.next_offset` of its partitions in one DuckLake transaction, so every snapshot
//! holds exactly the offsets below its own `next_offset` per partition (data inlined or not,
//! compacted or not). A view's query reads the table and `sluice_offsets` in one transaction,
//! hence from one snapshot, and takes from the ring exactly the rows at or above that
//! snapshot's `next_offset`. The ring holds every batch this instance decoded and has not seen
//! committed (it does not evict them; [`crate::live::ring`]), so the two parts meet without a
//! gap, whenever the ring's own copy was taken. Partitions other instances consume add only
//! their committed rows; quarantined messages are in neither part, as in the lake.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::TablesConfig;
use crate::live::ring::Ring;
use crate::sink::duck::{ident, literal};
use crate::sink::{LAKE_ALIAS, LEASE_TABLE, OFFSETS_TABLE, QUARANTINE_TABLE};
use crate::sync::lock;

use super::ring_scan::{FUNCTION, OFFSET_COLUMN, PARTITION_COLUMN};

/// The suffix of a real-time view's name.
pub const SUFFIX: &str = "_live";

/// Keeps the real-time views in step with the lake's tables and the ring's topics.
pub struct Views {
    ring: Arc<Ring>,
    tables: TablesConfig,
    group: String,
    schema: String,
    /// The SQL each view was last created with.
    made: Mutex<HashMap<String, String>>,
    /// The lake's tables as last listed, and when.
    listed: Mutex<(BTreeSet<String>, Option<Instant>)>,
}

/// How often the lake's tables are listed again when no topic of the ring needs it.
const LIST_EVERY: Duration = Duration::from_secs(5);

impl Views {
    /// Views over the lake schema `schema` (offsets of consumer group `group`), with the
    /// topics of `ring` named into tables as `tables` says.
    pub fn new(ring: Arc<Ring>, tables: TablesConfig, group: &str, schema: &str) -> Self {
        Views {
            ring,
            tables,
            group: group.to_string(),
            schema: schema.to_string(),
            made: Mutex::new(HashMap::new()),
            listed: Mutex::new((BTreeSet::new(), None)),
        }
    }

    /// Creates or replaces, on `conn`'s database, every view whose definition changed (a table
    /// or a topic appeared).
    pub fn refresh(&self, conn: &duckdb::Connection) -> duckdb::Result<()> {
        let mut feeds: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for topic in self.ring.topics() {
            if self.ring.schema(&topic).is_some() {
                feeds
                    .entry(self.tables.table_for(&topic))
                    .or_default()
                    .push(topic);
            }
        }
        let lake_tables = {
            let mut listed = lock(&self.listed);
            // A table the ring feeds must be seen in the lake as soon as its first commit
            // created it (its view then takes the lake's rows, and the ring's only above the
            // committed offsets); tables only other instances feed are looked for every 5 s.
            let stale = listed.1.is_none_or(|at| at.elapsed() >= LIST_EVERY)
                || feeds.keys().any(|t| !listed.0.contains(t));
            if stale {
                listed.0 = self.lake_tables(conn)?;
                listed.1 = Some(Instant::now());
            }
            listed.0.clone()
        };
        // A view exists once its table does (the table's first commit creates it): its
        // definition then never changes between "without the lake" and "with it", which would
        // need the view replaced in the very transaction that commits.
        let mut made = lock(&self.made);
        for table in lake_tables {
            let view = format!("{table}{SUFFIX}");
            let topics = feeds.get(&table).map(Vec::as_slice).unwrap_or_default();
            let sql = self.definition(&table, topics);
            if made.get(&view) != Some(&sql) {
                conn.execute_batch(&format!(
                    "CREATE OR REPLACE VIEW memory.main.{} AS {sql}",
                    ident(&view)
                ))?;
                made.insert(view, sql);
            }
        }
        Ok(())
    }

    /// The tables of the lake's schema (sluice's own excepted).
    fn lake_tables(&self, conn: &duckdb::Connection) -> duckdb::Result<BTreeSet<String>> {
        let mut stmt = conn.prepare(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?",
        )?;
        let rows = stmt.query_map([LAKE_ALIAS, self.schema.as_str()], |r| {
            r.get::<_, String>(0)
        })?;
        let mut out = BTreeSet::new();
        for t in rows {
            let t = t?;
            if ![OFFSETS_TABLE, QUARANTINE_TABLE, LEASE_TABLE].contains(&t.as_str()) {
                out.insert(t);
            }
        }
        Ok(out)
    }

    /// The ring these views read.
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// The query of `table`'s view: each topic's ring rows the lake's snapshot has not
    /// committed, then the table's rows. The ring's part comes first: DuckDB binds in that
    /// order, so the ring's copy is taken before the lake's snapshot is (at the first access
    /// to the lake's catalog), and a commit landing in between leaves its rows in both halves
    /// for the offset filter to sort out, never in neither. (A query that reads the lake
    /// before the view gets the same guarantee from a [`Ring::hold`] taken before it starts:
    /// Flight SQL takes one.)
    fn definition(&self, table: &str, topics: &[String]) -> String {
        let schema = ident(&self.schema);
        let mut parts = Vec::new();
        for topic in topics {
            let (p, o) = (ident(PARTITION_COLUMN), ident(OFFSET_COLUMN));
            parts.push(format!(
                "SELECT r.* EXCLUDE ({p}, {o}) FROM {FUNCTION}({topic}) r \
                 WHERE r.{o} >= coalesce((SELECT c.next_offset FROM {LAKE_ALIAS}.{schema}.{offsets} c \
                 WHERE c.consumer_group = {group} AND c.topic = {topic} AND c.\"partition\" = r.{p}), -1)",
                topic = literal(topic),
                offsets = ident(OFFSETS_TABLE),
                group = literal(&self.group),
            ));
        }
        parts.push(format!(
            "SELECT * FROM {LAKE_ALIAS}.{schema}.{}",
            ident(table)
        ));
        parts.join(" UNION ALL BY NAME ")
    }
}
