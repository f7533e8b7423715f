use super::*;
use crate::config::LakeConfig;
use crate::sink::Lake;
use arrow::array::Int64Array;

/// A lake in `dir` whose table `ev` (topic `ev`) holds, for partition 0, messages at offsets
/// 0..10 of two record batches of three rows each (`seq` = offset * 10 + batch * 3 + row),
/// with `sluice_offsets` at `committed` for consumer group `g1`.
fn lake_with_messages(dir: &std::path::Path, committed: i64) -> (Lake, LakeSource) {
    lake_with_partitions(dir, committed, 1)
}

/// The same, for `partitions` partitions (`seq` + 1000 * partition), stored partition after
/// partition in reverse order, so that storage order is not position order.
fn lake_with_partitions(
    dir: &std::path::Path,
    committed: i64,
    partitions: i32,
) -> (Lake, LakeSource) {
    let cfg = LakeConfig {
        catalog: dir.join("cat.catalog").display().to_string(),
        data_path: format!("{}/data/", dir.display()),
        ..LakeConfig::default()
    };
    let lake = Lake::open(&cfg, "g1").unwrap();
    let conn = lake.database().crate_connection().unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE lake.main.ev (seq BIGINT, _kafka_partition INTEGER, _kafka_offset BIGINT, _kafka_batch INTEGER);
         INSERT INTO lake.main.ev SELECT p * 1000 + o * 10 + b * 3 + r, p, o, b, FROM range({partitions}) s(p), range(10) t(o), range(2) u(b), range(3) v(r) ORDER BY p DESC, o, b, r;
         INSERT INTO lake.main.sluice_offsets SELECT 'g1', 'ev', p, {committed}, now() FROM range({partitions}) s(p);"
    ))
    .unwrap();
    let source = LakeSource::new(
        lake.database().clone(),
        crate::config::TablesConfig::default(),
        "g1",
        "main",
    );
    (lake, source)
}

/// (offset, batch, batches, seq values) of each batch read (of partition 0).
fn described(batches: &[LakeBatch]) -> Vec<(i64, u32, u32, Vec<i64>)> {
    batches
        .iter()
        .map(|b| {
            assert_eq!(b.partition, 0);
            let seq = b.batch.column_by_name("seq").unwrap();
            let seq = seq.as_any().downcast_ref::<Int64Array>().unwrap();
            (
                b.offset,
                b.batch_index,
                b.batches_in_message,
                seq.values().to_vec(),
            )
        })
        .collect()
}

/// What a read from (2, 1) up to offset 8 must return.
fn expected_from_2_1_to_8() -> Vec<(i64, u32, u32, Vec<i64>)> {
    let mut want = Vec::new();
    for o in 2..8i64 {
        for b in 0..2u32 {
            if (o, b) >= (2, 1) {
                let first = o * 10 + i64::from(b) * 3;
                want.push((o, b, 2, vec![first, first + 1, first + 2]));
            }
        }
    }
    want
}

#[test]
fn a_round_reads_each_record_batch_from_the_position_to_the_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (_lake, source) = lake_with_messages(dir.path(), 8);
    let from = BTreeMap::from([(0, (2, 1))]);
    let round = source.read("ev", &from, &mut Windows::default()).unwrap();
    assert_eq!(described(&round.batches), expected_from_2_1_to_8());
    assert_eq!(round.committed, BTreeMap::from([(0, 8)]));
    assert_eq!(round.reached, BTreeMap::from([(0, (8, 0))]));
    // At the committed offset there is nothing more to read.
    let round = source
        .read("ev", &round.reached, &mut Windows::default())
        .unwrap();
    assert!(round.batches.is_empty());
    assert_eq!(round.reached, BTreeMap::from([(0, (8, 0))]));
}

#[test]
fn small_rounds_read_every_batch_once_and_a_batch_larger_than_a_round_whole() {
    for rows in [10, 2] {
        let dir = tempfile::tempdir().unwrap();
        let (_lake, source) = lake_with_messages(dir.path(), 8);
        let source = source.with_round_rows(rows);
        let mut windows = Windows::default();
        let mut at = BTreeMap::from([(0, (2, 1))]);
        let mut got = Vec::new();
        let mut rounds = 0;
        while at[&0] < (8, 0) {
            let round = source.read("ev", &at, &mut windows).unwrap();
            let n: usize = round.batches.iter().map(|b| b.batch.num_rows()).sum();
            assert!(n <= rows.max(3), "a round of {n} rows, over {rows}");
            got.extend(described(&round.batches));
            assert!(round.reached[&0] > at[&0], "no progress from {at:?}");
            at = round.reached;
            rounds += 1;
            assert!(rounds < 100);
        }
        assert_eq!(got, expected_from_2_1_to_8(), "rounds of {rows} rows");
        // Rounds of 10 rows take 3 batches each (11 batches); rounds of 2 rows one batch each,
        // and a last one finds nothing after (7, 1) below the committed offset 8.
        assert_eq!(
            rounds,
            if rows == 10 { 4 } else { 12 },
            "rounds of {rows} rows"
        );
    }
}

#[test]
fn a_table_without_lineage_or_shared_by_topics_is_refused_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, source) = lake_with_messages(dir.path(), 8);
    let conn = lake.database().crate_connection().unwrap();
    conn.execute_batch(
        "CREATE TABLE lake.main.plain (seq BIGINT, _kafka_partition INTEGER, _kafka_offset BIGINT);
         INSERT INTO lake.main.plain VALUES (1, 0, 0);
         INSERT INTO lake.main.sluice_offsets VALUES ('g1', 'plain', 0, 1, now());",
    )
    .unwrap();
    let from = BTreeMap::from([(0, (0, 0))]);
    let err = source
        .read("plain", &from, &mut Windows::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the lake table \"plain\" has no column _kafka_batch: reading positions older than the live ring from the lake needs [tables.metadata] partition, offset and batch = true"
    );
    // A second topic mapped to `ev`.
    let tables = crate::config::TablesConfig {
        map: BTreeMap::from([("ev2".to_string(), "ev".to_string())]),
        ..Default::default()
    };
    conn.execute_batch("INSERT INTO lake.main.sluice_offsets VALUES ('g2', 'ev2', 0, 5, now());")
        .unwrap();
    let shared = LakeSource::new(lake.database().clone(), tables, "g1", "main");
    let err = shared
        .read("ev", &from, &mut Windows::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the lake table \"ev\" takes the topics [\"ev\", \"ev2\"], and its rows do not record their topic: the lake cannot serve reads of one of them"
    );
}

#[test]
fn a_start_before_the_rows_with_lineage_is_refused_when_rows_without_it_exist() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, source) = lake_with_messages(dir.path(), 10);
    // Offsets 0..10 have lineage and no row lacks it: any start is placed.
    source
        .check_start("ev", &BTreeMap::from([(0, (0, 0))]))
        .unwrap();
    let conn = lake.database().crate_connection().unwrap();
    conn.execute_batch("DELETE FROM lake.main.ev WHERE _kafka_offset < 3; INSERT INTO lake.main.ev VALUES (-1, NULL, NULL, NULL);")
        .unwrap();
    source
        .check_start("ev", &BTreeMap::from([(0, (3, 0))]))
        .unwrap();
    let err = source
        .check_start("ev", &BTreeMap::from([(0, (1, 0))]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "partition 0 of the lake table \"ev\" has rows only from offset 3 on with a position (lineage), and 1 rows without one (ingested before [tables.metadata] partition, offset and batch were enabled): offset 1 cannot be placed"
    );
}

#[test]
fn a_round_reads_several_partitions_in_position_order_within_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (_lake, source) = lake_with_partitions(dir.path(), 8, 3);
    let source = source.with_round_rows(20);
    let mut windows = Windows::default();
    let mut at = BTreeMap::from([(0, (2, 1)), (1, (0, 0)), (2, (7, 1))]);
    let mut got: Vec<(i32, i64, u32, Vec<i64>)> = Vec::new();
    let mut rounds = 0;
    while at.values().any(|p| *p < (8, 0)) {
        let round = source.read("ev", &at, &mut windows).unwrap();
        let n: usize = round.batches.iter().map(|b| b.batch.num_rows()).sum();
        assert!(n <= 20, "a round of {n} rows");
        for b in &round.batches {
            let seq = b.batch.column_by_name("seq").unwrap();
            let seq = seq.as_any().downcast_ref::<Int64Array>().unwrap();
            got.push((b.partition, b.offset, b.batch_index, seq.values().to_vec()));
        }
        at = round.reached;
        rounds += 1;
        assert!(rounds < 100);
    }
    let mut want = Vec::new();
    for (p, from) in [(0, (2, 1)), (1, (0, 0)), (2, (7, 1))] {
        for o in 0..8i64 {
            for b in 0..2u32 {
                if (o, b) >= from {
                    let first = i64::from(p) * 1000 + o * 10 + i64::from(b) * 3;
                    want.push((p, o, b, vec![first, first + 1, first + 2]));
                }
            }
        }
    }
    // Each partition's batches once, in position order (rounds interleave partitions).
    let of = |v: &[(i32, i64, u32, Vec<i64>)], p: i32| -> Vec<(i32, i64, u32, Vec<i64>)> {
        v.iter().filter(|g| g.0 == p).cloned().collect()
    };
    for p in 0..3 {
        assert_eq!(of(&got, p), of(&want, p), "partition {p}");
    }
    assert_eq!(got.len(), want.len());
    // 11 + 16 + 1 batches of 3 rows, at most 6 per round of 20 rows (the 7th is cut): 5 rounds
    // at best; 8, as the first rounds learn each partition's rows per offset.
    assert_eq!(rounds, 8);
}
