//! The ring: retention by bytes and age, positions, reads, compaction.

use super::*;
use arrow::array::{Array, ArrayData, DictionaryArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
        Field::new(
            "d",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
    ]));
    let n = ids.end - ids.start;
    let d: DictionaryArray<Int32Type> = (0..n)
        .map(|i| {
            if i % 4 == 0 {
                None
            } else {
                Some(["x", "y"][i as usize % 2])
            }
        })
        .collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter(
                ids.map(|i| (i % 3 != 0).then(|| format!("v{i}"))),
            )),
            Arc::new(d),
        ],
    )
    .unwrap()
}

fn meta(topic: &str, partition: i32, offset: i64, timestamp_ms: Option<i64>) -> MessageMeta {
    MessageMeta {
        topic: topic.into(),
        partition,
        offset,
        timestamp_ms,
    }
}

fn ring(max_bytes: u64) -> Arc<Ring> {
    ring_with(max_bytes, 0)
}

/// A ring of `max_bytes` that may hold `max_uncommitted` more in batches not yet committed.
fn ring_with(max_bytes: u64, max_uncommitted: u64) -> Arc<Ring> {
    Ring::new(Retention {
        max_bytes,
        max_age: Duration::from_secs(3600),
        max_uncommitted,
    })
}

#[test]
fn retention_by_bytes_evicts_oldest_and_readers_behind_get_the_lag() {
    let r = ring(300);
    for m in 0..10 {
        r.push(
            &meta("t", m % 2, m as i64 / 2, Some(1000 + m as i64)),
            &[batch(0..10)],
            100,
            true,
        );
    }
    // 10 batches of 100 bytes, 300 retained: seqs 7, 8, 9.
    let v = r.describe("t").unwrap();
    assert_eq!((v.rows, v.bytes), (30, 300));
    assert_eq!(r.resolve("t", &Start::Earliest), Ok(7));
    assert_eq!(r.resolve("t", &Start::Latest), Ok(10));
    let (got, next) = r.read("t", 7, 10, |_| true).unwrap();
    assert_eq!(next, 10);
    assert_eq!(
        got.iter()
            .map(|e| (e.seq, e.partition, e.offset))
            .collect::<Vec<_>>(),
        vec![(7, 1, 3), (8, 0, 4), (9, 1, 4)]
    );
    assert_eq!(
        r.read("t", 5, 10, |_| true).unwrap_err().to_string(),
        "reader of topic \"t\" lagged: 2 batches were dropped before it read them"
    );
    assert_eq!(r.read("t", 10, 10, |_| true).unwrap().0.len(), 0);
}

#[test]
fn positions_by_offset_and_timestamp() {
    let r = ring(1 << 30);
    for m in 0..6 {
        r.push(
            &meta("t", m % 2, 10 + m as i64 / 2, Some(1000 * m as i64)),
            &[batch(0..5), batch(5..10)],
            100,
            true,
        );
    }
    // Messages (p0, 10) (p1, 10) (p0, 11) (p1, 11) (p0, 12) (p1, 12), two batches each.
    let at = |p1: (i64, u32)| Start::Offsets(BTreeMap::from([(0, (12, 1)), (1, p1)]));
    assert_eq!(r.resolve("t", &at((11, 0))), Ok(6));
    assert_eq!(r.resolve("t", &at((11, 1))), Ok(7));
    // Partition 0 has no position: it is read from its oldest batch.
    assert_eq!(
        r.resolve("t", &Start::Offsets(BTreeMap::from([(1, (11, 0))]))),
        Ok(0)
    );
    assert_eq!(
        r.resolve(
            "t",
            &Start::Offsets(BTreeMap::from([(0, (12, 0)), (1, (11, 0))]))
        ),
        Ok(6)
    );
    assert_eq!(r.resolve("t", &Start::Timestamp(2500)), Ok(6));
    assert_eq!(r.resolve("t", &Start::Timestamp(999_999)), Ok(12));
    assert_eq!(
        r.resolve("t", &Start::Offsets(BTreeMap::from([(0, (3, 0))])))
            .unwrap_err()
            .to_string(),
        "position partition 0 offset 3 of topic \"t\" is no longer retained; available: partition 0: offsets 10..=12, partition 1: offsets 10..=12"
    );
    assert_eq!(
        r.resolve("u", &Start::Earliest).unwrap_err(),
        ReadError::UnknownTopic("u".into())
    );
    let p1: Vec<i64> = r
        .read("t", 0, 100, |e| e.partition == 1)
        .unwrap()
        .0
        .iter()
        .map(|e| e.offset)
        .collect();
    assert_eq!(p1, vec![10, 10, 11, 11, 12, 12]);
}

#[test]
fn a_resume_reads_partitions_it_has_not_seen_from_their_oldest_batch() {
    // Partition 0's first three messages, then all of partition 1, then the rest of 0 (a
    // consumer that fetched the partitions unevenly). A reader that read the first three
    // batches resumes with partition 0's position only: partition 1 was not seen yet and
    // must not be skipped.
    let r = ring(1 << 30);
    let order = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (0, 3), (0, 4)];
    for (p, o) in order {
        r.push(&meta("t", p, o, None), &[batch(0..1)], 10, false);
    }
    let resume = Start::Offsets(BTreeMap::from([(0, (2, 1))]));
    assert_eq!(r.resolve("t", &resume), Ok(3));
    let keep = |e: &LiveBatch| e.partition != 0 || e.offset >= 3;
    let (rest, _) = r.read("t", 3, 10, keep).unwrap();
    let got: Vec<(i32, i64)> = rest.iter().map(|e| (e.partition, e.offset)).collect();
    assert_eq!(got, vec![(1, 0), (1, 1), (0, 3), (0, 4)]);
    // Positions of every partition: the earliest of them.
    let both = Start::Offsets(BTreeMap::from([(0, (2, 1)), (1, (1, 0))]));
    assert_eq!(r.resolve("t", &both), Ok(4));
}

#[test]
fn batches_that_own_their_memory_are_never_compacted() {
    let r = ring(1 << 30);
    let b = batch(0..100);
    r.push(&meta("t", 0, 5, None), std::slice::from_ref(&b), 100, false);
    let copied = r.compact("t", 0, 6);
    assert_eq!(copied, 0);
    assert_eq!(r.compacted_bytes(), 0);
    let (after, _) = r.read("t", 0, 10, |_| true).unwrap();
    assert!(!after[0].pinned);
    assert_eq!(after[0].bytes, 100);
    assert_eq!(
        after[0].batch.column(0).to_data().buffers()[0].as_ptr(),
        b.column(0).to_data().buffers()[0].as_ptr(),
        "the batch is the one pushed, not a copy"
    );
}

#[test]
fn compaction_copies_once_and_keeps_values() {
    let r = ring(1 << 30);
    let b = batch(0..100);
    r.push(&meta("t", 0, 5, None), std::slice::from_ref(&b), 100, true);
    r.push(&meta("t", 0, 6, None), std::slice::from_ref(&b), 100, true);
    let (before, _) = r.read("t", 0, 10, |_| true).unwrap();
    let copied = r.compact("t", 0, 6);
    // Only offset 5 is below the committed offset 6; every buffer of it is copied.
    let expected: u64 = {
        fn sum(d: &ArrayData) -> u64 {
            d.buffers().iter().map(|b| b.len() as u64).sum::<u64>()
                + d.nulls().map_or(0, |n| n.buffer().len() as u64)
                + d.child_data().iter().map(sum).sum::<u64>()
        }
        b.columns().iter().map(|c| sum(&c.to_data())).sum()
    };
    assert_eq!(copied, expected);
    assert_eq!(r.compact("t", 0, 6), 0, "compaction happens once");
    let (after, _) = r.read("t", 0, 10, |_| true).unwrap();
    assert_eq!(after[0].batch, b);
    assert!(!after[0].pinned && after[1].pinned);
    let old = before[0].batch.column(0).to_data().buffers()[0].as_ptr();
    let new = after[0].batch.column(0).to_data().buffers()[0].as_ptr();
    assert_ne!(old, new, "the compacted batch owns new memory");
    assert_eq!(r.compacted_bytes(), expected);
    // The compacted batch is now accounted at the bytes it owns, the pinned one as pushed.
    assert_eq!(after[0].bytes, expected);
    assert_eq!(r.retained_bytes(), expected + 100);
    assert_eq!(r.describe("t").unwrap().bytes, expected + 100);
}

#[test]
fn age_retention() {
    let r = Ring::new(Retention {
        max_bytes: 1 << 30,
        max_age: Duration::from_millis(30),
        max_uncommitted: 1 << 30,
    });
    r.push(&meta("t", 0, 0, None), &[batch(0..1)], 10, false);
    std::thread::sleep(Duration::from_millis(60));
    // Not committed yet: kept past its age.
    assert_eq!(r.expire(), 10);
    r.compact("t", 0, 1);
    r.push(&meta("t", 0, 1, None), &[batch(1..2)], 10, false);
    assert_eq!(r.resolve("t", &Start::Earliest), Ok(1));
    let v = r.describe("t").unwrap();
    assert_eq!((v.rows, v.bytes), (1, 10));
    // An idle topic loses its old batches by age too, without a new push.
    r.push(&meta("u", 0, 0, None), &[batch(0..1)], 7, false);
    r.compact("t", 0, 2);
    r.compact("u", 0, 1);
    assert_eq!(r.retained_bytes(), 17);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(r.expire(), 0);
    assert_eq!(r.retained_bytes(), 0);
    assert_eq!(r.resolve("t", &Start::Earliest), Ok(2));
    assert_eq!(r.describe("u").unwrap().rows, 0);
}

fn offsets_of(u: &Uncommitted) -> Vec<(i32, i64)> {
    u.batches.iter().map(|b| (b.partition, b.offset)).collect()
}

#[test]
fn the_uncommitted_tail_survives_retention_until_its_commit_and_a_rewind_replaces_it() {
    let r = ring_with(25, 1000);
    for o in 0..4 {
        r.push(&meta("t", 0, o, None), &[batch(0..1)], 10, false);
    }
    r.push(&meta("t", 1, 0, None), &[batch(0..1)], 10, false);
    // 50 bytes over a 25-byte retention: nothing is committed, so all of it stays.
    assert_eq!(r.retained_bytes(), 50);
    let u = r.uncommitted("t").unwrap().unwrap();
    assert_eq!(offsets_of(&u), [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]);
    // Partition 0 committed up to 2: offsets 0 and 1 leave the tail and are evicted.
    r.compact("t", 0, 2);
    assert_eq!(r.retained_bytes(), 30);
    let u = r.uncommitted("t").unwrap().unwrap();
    assert_eq!(offsets_of(&u), [(0, 2), (0, 3), (1, 0)]);
    // Partition 0 is read again from offset 3 (a rewind): the first reading of 3 is replaced.
    r.push(&meta("t", 0, 3, None), &[batch(5..6)], 10, false);
    let u = r.uncommitted("t").unwrap().unwrap();
    assert_eq!(offsets_of(&u), [(0, 2), (1, 0), (0, 3)]);
    assert_eq!(u.batches[2].batch.num_rows(), 1);
    // Partition 1 revoked: it leaves the tail.
    r.release("t", 1);
    let u = r.uncommitted("t").unwrap().unwrap();
    assert_eq!(offsets_of(&u), [(0, 2), (0, 3)]);
    assert_eq!(
        r.uncommitted("nope").unwrap().map(|u| u.batches.len()),
        None
    );
}

#[test]
fn a_ring_past_retention_plus_the_uncommitted_allowance_evicts_and_says_the_tail_is_incomplete() {
    let r = ring_with(20, 10);
    for o in 0..4 {
        r.push(&meta("t", 2, o, None), &[batch(0..1)], 10, false);
    }
    // 40 bytes > 20 + 10: offset 0 went, uncommitted.
    assert_eq!(r.retained_bytes(), 30);
    assert_eq!(
        r.uncommitted("t").unwrap_err().to_string(),
        "the live ring of topic \"t\" dropped batches of partition 2 not yet committed (below offset 1; it outgrew live.retention_bytes plus the pending flush's share): its real-time view is incomplete until the lake commits them"
    );
    // Once the lake committed past it, the tail is whole again.
    r.compact("t", 2, 1);
    let u = r.uncommitted("t").unwrap().unwrap();
    assert_eq!(offsets_of(&u), [(2, 1), (2, 2), (2, 3)]);
}

#[test]
fn a_hold_keeps_what_was_uncommitted_when_it_was_taken_until_it_is_dropped() {
    let r = ring_with(10, 1000);
    for o in 0..3 {
        r.push(&meta("t", 0, o, None), &[batch(0..1)], 10, false);
    }
    let hold = r.hold();
    // A commit up to 2 lands while the hold lives: 0 and 1 stay, and stay in the tail.
    r.compact("t", 0, 2);
    assert_eq!(r.retained_bytes(), 30);
    let u = r.uncommitted("t").unwrap().unwrap();
    assert_eq!(offsets_of(&u), [(0, 0), (0, 1), (0, 2)]);
    drop(hold);
    assert_eq!(r.retained_bytes(), 10);
    let u = r.uncommitted("t").unwrap().unwrap();
    assert_eq!(offsets_of(&u), [(0, 2)]);
}
