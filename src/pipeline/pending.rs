//! Pending data: per table, per partition, the batches and quarantined payloads not yet
//! committed, with their totals. Every total changes here, together with the data it counts,
//! so the sums cannot drift from what is held.

use std::collections::{BTreeMap, HashMap};
use std::ops::{AddAssign, SubAssign};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;

use crate::sink::QuarantineRow;
use crate::source::PartitionKey;

/// What some pending data amounts to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Memory held: payloads plus copies (the memory cap counts these).
    pub memory: u64,
    /// Payload bytes of the messages (what `committed_bytes` counts).
    pub payload: u64,
    /// Decoded Arrow bytes, quarantined payloads at their size (the `flush.max_bytes` trigger
    /// counts these, so a file holds the same data whether the payloads were compressed,
    /// realigned, or neither).
    pub data: u64,
    /// Rows of the batches.
    pub rows: u64,
    /// Kafka messages (decoded or quarantined).
    pub messages: u64,
}

impl AddAssign for Totals {
    fn add_assign(&mut self, o: Totals) {
        self.memory += o.memory;
        self.payload += o.payload;
        self.data += o.data;
        self.rows += o.rows;
        self.messages += o.messages;
    }
}

impl SubAssign for Totals {
    fn sub_assign(&mut self, o: Totals) {
        self.memory -= o.memory;
        self.payload -= o.payload;
        self.data -= o.data;
        self.rows -= o.rows;
        self.messages -= o.messages;
    }
}

/// What one message adds to its partition's pending data.
pub enum Entry {
    /// Decoded batches.
    Batches(Vec<RecordBatch>),
    /// A rejected payload.
    Quarantined(QuarantineRow),
}

/// Pending data of one partition inside a table.
#[derive(Default)]
pub struct PartitionPending {
    /// Decoded batches, in offset order.
    pub batches: Vec<RecordBatch>,
    /// Rejected payloads, in offset order.
    pub quarantine: Vec<QuarantineRow>,
    /// The offset of the first pending message.
    pub first: Option<i64>,
    /// The offset after the last pending message.
    pub next: i64,
    /// What it amounts to.
    pub totals: Totals,
}

impl PartitionPending {
    fn merge(&mut self, later: PartitionPending) {
        self.batches.extend(later.batches);
        self.quarantine.extend(later.quarantine);
        self.first = self.first.or(later.first);
        self.next = later.next;
        self.totals += later.totals;
    }
}

/// One table's pending data: what one flush commits.
#[derive(Default)]
pub struct TablePending {
    parts: BTreeMap<PartitionKey, PartitionPending>,
    totals: Totals,
    /// When its oldest pending message arrived.
    since: Option<Instant>,
}

impl TablePending {
    /// Its partitions, in order.
    pub fn parts(&self) -> impl Iterator<Item = (&PartitionKey, &PartitionPending)> {
        self.parts.iter()
    }

    /// Whether it covers `key`.
    pub fn covers(&self, key: &PartitionKey) -> bool {
        self.parts.contains_key(key)
    }

    /// The sum over its partitions.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// When its oldest message arrived.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Takes one partition's data out (e.g. after another writer committed its range).
    pub fn remove(&mut self, key: &PartitionKey) -> Option<PartitionPending> {
        let p = self.parts.remove(key)?;
        self.totals -= p.totals;
        Some(p)
    }

    fn append(&mut self, key: &PartitionKey, offset: i64, entry: Entry, add: Totals, now: Instant) {
        let p = self.parts.entry(key.clone()).or_default();
        match entry {
            Entry::Batches(b) => p.batches.extend(b),
            Entry::Quarantined(row) => p.quarantine.push(row),
        }
        p.first.get_or_insert(offset);
        p.next = offset + 1;
        p.totals += add;
        self.totals += add;
        self.since.get_or_insert(now);
    }

    /// Appends `later` (data that arrived after `self`) behind `self`'s data.
    fn merge(&mut self, later: TablePending) {
        for (key, p) in later.parts {
            self.parts.entry(key).or_default().merge(p);
        }
        self.totals += later.totals;
        self.since = match (self.since, later.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// All pending data, by table.
#[derive(Default)]
pub struct Pending {
    tables: HashMap<Arc<str>, TablePending>,
    /// Memory held over all tables.
    memory: u64,
}

impl Pending {
    /// Adds one message's data to `table`, as partition `key`'s data up to `offset`.
    pub fn append(
        &mut self,
        table: &Arc<str>,
        key: &PartitionKey,
        offset: i64,
        entry: Entry,
        add: Totals,
        now: Instant,
    ) {
        self.tables
            .entry(table.clone())
            .or_default()
            .append(key, offset, entry, add, now);
        self.memory += add.memory;
    }

    /// Takes all of `table`'s pending data (to flush it).
    pub fn take(&mut self, table: &str) -> Option<TablePending> {
        let t = self.tables.remove(table)?;
        self.memory -= t.totals.memory;
        Some(t)
    }

    /// Puts the data of a failed flush back in front of what `table` received meanwhile.
    pub fn restore(&mut self, table: &Arc<str>, mut earlier: TablePending) {
        self.memory += earlier.totals.memory;
        if let Some(later) = self.tables.remove(table) {
            earlier.merge(later);
        }
        self.tables.insert(table.clone(), earlier);
    }

    /// Drops every table's data of partition `key` (revoked, or committed by another writer).
    pub fn drop_partition(&mut self, key: &PartitionKey) {
        for t in self.tables.values_mut() {
            if let Some(p) = t.remove(key) {
                self.memory -= p.totals.memory;
            }
        }
        self.tables.retain(|_, t| !t.is_empty());
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.tables.clear();
        self.memory = 0;
    }

    /// Memory held over all tables.
    pub fn memory(&self) -> u64 {
        self.memory
    }

    /// The tables with pending data.
    pub fn tables(&self) -> impl Iterator<Item = (&Arc<str>, &TablePending)> {
        self.tables.iter()
    }

    /// The names of the tables with pending data.
    pub fn table_names(&self) -> Vec<Arc<str>> {
        self.tables.keys().cloned().collect()
    }

    /// Whether `table` holds data of partition `key`.
    pub fn covers(&self, table: &str, key: &PartitionKey) -> bool {
        self.tables.get(table).is_some_and(|t| t.covers(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn key(t: &str, p: i32) -> PartitionKey {
        PartitionKey::new(t, p)
    }

    fn rows(n: i64) -> Entry {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]);
        Entry::Batches(vec![b.unwrap()])
    }

    fn t(memory: u64, rows: u64) -> Totals {
        Totals {
            memory,
            payload: memory,
            data: memory,
            rows,
            messages: 1,
        }
    }

    /// Every table's totals are the sum of its partitions', and memory the sum of tables'.
    fn assert_consistent(p: &Pending) {
        let mut memory = 0;
        for (_, tp) in p.tables() {
            let mut sum = Totals::default();
            for (_, pp) in tp.parts() {
                sum += pp.totals;
            }
            assert_eq!(sum, tp.totals());
            memory += tp.totals().memory;
        }
        assert_eq!(memory, p.memory());
    }

    #[test]
    fn totals_follow_appends_takes_restores_and_drops() {
        let now = Instant::now();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut p = Pending::default();
        p.append(&a, &key("x", 0), 10, rows(3), t(100, 3), now);
        p.append(&a, &key("x", 1), 4, rows(2), t(50, 2), now);
        p.append(&b, &key("y", 0), 0, rows(1), t(7, 1), now);
        assert_consistent(&p);
        assert_eq!(p.memory(), 157);

        let taken = p.take("a").unwrap();
        assert_eq!(
            taken.totals(),
            Totals {
                memory: 150,
                payload: 150,
                data: 150,
                rows: 5,
                messages: 2
            }
        );
        assert_eq!(p.memory(), 7);
        assert!(p.take("a").is_none());

        // More arrives for `a` while its flush is out; the flush fails and comes back in front.
        let later = now + std::time::Duration::from_secs(1);
        p.append(&a, &key("x", 0), 11, rows(4), t(20, 4), later);
        p.restore(&a, taken);
        assert_consistent(&p);
        assert_eq!(p.memory(), 177);
        let (_, ta) = p.tables().find(|(n, _)| n.as_ref() == "a").unwrap();
        assert_eq!(ta.since(), Some(now));
        let x0: Vec<_> = ta.parts().filter(|(k, _)| **k == key("x", 0)).collect();
        assert_eq!(x0[0].1.next, 12);
        assert_eq!(
            x0[0]
                .1
                .batches
                .iter()
                .map(|b| b.num_rows())
                .collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(x0[0].1.totals.rows, 7);

        p.drop_partition(&key("x", 0));
        assert_consistent(&p);
        assert_eq!(p.memory(), 57);
        assert!(!p.covers("a", &key("x", 0)) && p.covers("a", &key("x", 1)));
        p.drop_partition(&key("x", 1));
        assert_eq!(p.table_names(), vec![b.clone()]);
        p.clear();
        assert_eq!((p.memory(), p.tables().count()), (0, 0));
    }

    #[test]
    fn removing_a_partition_from_a_taken_table_keeps_its_totals() {
        let now = Instant::now();
        let a: Arc<str> = "a".into();
        let mut p = Pending::default();
        p.append(&a, &key("x", 0), 0, rows(3), t(30, 3), now);
        p.append(&a, &key("x", 1), 0, rows(5), t(50, 5), now);
        let mut taken = p.take("a").unwrap();
        let gone = taken.remove(&key("x", 0)).unwrap();
        assert_eq!((gone.totals.rows, gone.next), (3, 1));
        assert_eq!(taken.totals().rows, 5);
        assert_eq!(taken.totals().memory, 50);
        assert!(taken.remove(&key("x", 0)).is_none());
    }
}
