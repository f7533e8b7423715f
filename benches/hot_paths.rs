//! Criterion benches of sluice's per-message hot paths (issue 17), so that a change shows up here
//! and not only in noisy end-to-end runs:
//! - `decode/*`: one Kafka payload of Arrow IPC (stream format, uncompressed) decoded in
//!   place from an 8-byte aligned address, in place from a misaligned one (librdkafka puts
//!   payloads wherever the Kafka record does: arrow-rs then copies each misaligned buffer), and
//!   from one aligned copy (`kafka.copy_payloads`), each by one decoder that remembers the
//!   schema (as a pipeline's does); `in_place_aligned_first` by a new decoder each time (the
//!   schema parsed); `chosen_misaligned` as a pipeline decodes the misaligned payload (in place,
//!   or one aligned copy where that costs less: `Decoder::decode_payload`). Shapes: events at 16 rows per message (~18 KB, what a latency-minded
//!   producer sends), events at 1,000 rows (~1 MB) and narrow at 10,000 (~400 KB).
//! - `handoff/*`: events rows handed to an in-memory DuckDB through the Arrow C Data Interface
//!   and inserted into a table: 1,024 rows as 64 batches of 16 (as they are, and joined by
//!   sluice's coalescing, the copy included) and as one batch; 4,096 rows as 64 batches of 64
//!   (~72 KB each: as they are, and all joined) and as two of 2,048. DuckDB's Arrow scan cost
//!   per batch against the cost of joining them.
//!
//! `cargo bench --bench hot_paths` (scripts/env.sh first); `-- decode` picks a group.
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::buffer::{Buffer, MutableBuffer};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::decode::{self, Decoder};
use sluice::sink::coalesce::Coalesce;
use sluice::sink::duck::Database;
use sluice::sink::ffi_stream::BatchStream;
use sluice_producer::events::{Dataset, EventGen};
use sluice_producer::{Encoding, encode};

/// `payload` at `offset` bytes past a 64-byte aligned address, as a Buffer (what sluice makes
/// of a librdkafka payload: a view of its bytes, wherever they are).
fn placed(payload: &[u8], offset: usize) -> Buffer {
    let mut m = MutableBuffer::with_capacity(payload.len() + offset);
    m.extend_from_slice(&vec![0u8; offset]);
    m.extend_from_slice(payload);
    Buffer::from(m).slice(offset)
}

fn decode_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (dataset, rows) in [
        (Dataset::Events, 16),
        (Dataset::Events, 1000),
        (Dataset::Narrow, 10_000),
    ] {
        let batch = dataset.generate(&mut EventGen::new(7), rows);
        let payload = encode(&[batch], Encoding::default()).expect("encode");
        let shape = format!("{}_{rows}_rows", format!("{dataset:?}").to_lowercase());
        g.throughput(Throughput::Bytes(payload.len() as u64));
        let aligned = placed(&payload, 0);
        // 4: misaligned for every 8-byte buffer (Int64, Float64, timestamps, offsets of
        // large types), aligned for 4-byte ones; what most librdkafka payloads look like.
        let misaligned = placed(&payload, 4);
        for (how, buf) in [
            ("in_place_aligned", &aligned),
            ("in_place_misaligned", &misaligned),
        ] {
            let decoded = decode::decode(buf).expect("decodes");
            assert_eq!(decoded.rows(), rows);
            // As a pipeline decodes: one decoder, which remembers the schema message.
            let mut decoder = Decoder::new();
            g.bench_with_input(BenchmarkId::new(how, &shape), buf, |b, buf| {
                b.iter(|| decoder.decode(buf).expect("decodes"))
            });
        }
        let mut decoder = Decoder::new();
        g.bench_with_input(
            BenchmarkId::new("aligned_copy", &shape),
            &payload,
            |b, p| b.iter(|| decoder.decode_copy(p).1.expect("decodes")),
        );
        // What a pipeline does with the misaligned payload: in place, or one aligned copy once
        // its schema is known to be mostly realigned at such an address (decode_payload).
        let mut decoder = Decoder::new();
        g.bench_with_input(
            BenchmarkId::new("chosen_misaligned", &shape),
            &misaligned,
            |b, buf| b.iter(|| decoder.decode_payload(buf.clone()).1.expect("decodes")),
        );
        // A decoder that has not seen the schema yet (every payload's first message parsed).
        let aligned = &aligned;
        g.bench_function(BenchmarkId::new("in_place_aligned_first", &shape), |b| {
            b.iter(|| decode::decode(aligned).expect("decodes"))
        });
    }
    g.finish();
}

fn handoff_benches(c: &mut Criterion) {
    let db = Database::open_in_memory(&[("threads", "1".to_string())], None).expect("duckdb");
    let conn = db.connect().expect("connection");
    let mut g = c.benchmark_group("handoff");
    // (rows in all, rows per batch, how they are handed over).
    let forced = Coalesce {
        small_bytes: usize::MAX,
        ..Coalesce::default()
    };
    let cases: [(usize, usize, &str, Option<Coalesce>); 6] = [
        (1024, 16, "as_is", None),
        (1024, 16, "coalesced", Some(Coalesce::default())),
        (1024, 1024, "as_is", None),
        // Batches of ~72 KB (above the default's small_bytes): whether joining them would pay.
        (4096, 64, "as_is", None),
        (4096, 64, "coalesced_all", Some(forced)),
        (4096, 2048, "as_is", None),
    ];
    let mut table = 0;
    for (rows, per_batch, how, policy) in cases {
        let whole = Dataset::Events.generate(&mut EventGen::new(11), rows);
        let schema = whole.schema();
        table += 1;
        let t = format!("t{table}");
        let mut first =
            BatchStream::new(Arc::clone(&schema), vec![whole.slice(0, 1)]).expect("stream");
        conn.register_arrow_view("incoming", &mut first)
            .expect("view");
        conn.execute(&format!(
            "CREATE TABLE {t} AS SELECT * FROM incoming LIMIT 0"
        ))
        .expect("table");
        conn.execute("DROP VIEW incoming").expect("drop view");
        drop(first);
        g.throughput(Throughput::Elements(rows as u64));
        let batches: Vec<RecordBatch> = (0..rows / per_batch)
            .map(|i| whole.slice(i * per_batch, per_batch))
            .collect();
        let mut n = 0u64;
        g.bench_function(
            BenchmarkId::new(
                format!("events_{rows}_rows"),
                format!("batches_of_{per_batch}_{how}"),
            ),
            |b| {
                b.iter(|| {
                    let batches = batches.clone();
                    let mut stream = match policy {
                        Some(p) => BatchStream::coalescing(Arc::clone(&schema), batches, p),
                        None => BatchStream::new(Arc::clone(&schema), batches),
                    }
                    .expect("stream");
                    conn.register_arrow_view("incoming", &mut stream)
                        .expect("view");
                    n += 1;
                    let inserted = conn
                        .execute(&format!("INSERT INTO {t} SELECT * FROM incoming"))
                        .expect("insert");
                    conn.execute("DROP VIEW incoming").expect("drop view");
                    assert_eq!(inserted, rows as u64);
                    // Keep the table small: the bench measures the handoff, not a growing table.
                    if n.is_multiple_of(64) {
                        conn.execute(&format!("DELETE FROM {t}")).expect("delete");
                    }
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(30);
    targets = decode_benches, handoff_benches
}
criterion_main!(benches);
