//! Small batches joined into larger ones on their way to DuckDB. DuckDB's Arrow scan turns each
//! Arrow array it is handed into at least one chunk, and each chunk goes through the whole
//! insert (Parquet writer included) at a cost that hardly depends on its rows: measured by
//! `benches/hot_paths.rs`, 64 batches of 16 events rows took ~41 µs more per batch than one
//! batch of 1,024. A producer that sends one message per request sends exactly such batches.
//!
//! A run of consecutive small batches ([`Coalesce`]) is copied into one batch of up to
//! [`Coalesce::rows`] rows (DuckDB's vector size: a larger array is cut into chunks of that
//! many rows anyway) as DuckDB asks for it, so at most one joined batch exists at a time
//! beside the batches it came from. Larger batches pass through untouched, in place. The
//! copy is counted ([`Coalesced`]), like every other copy sluice makes.

use std::iter::Peekable;

use arrow::array::{Array, AsArray, OffsetSizeTrait, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, SchemaRef};

/// Which batches are joined, and into how many rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalesce {
    /// Rows a joined batch holds at most.
    pub rows: usize,
    /// A batch is small, and joined with its neighbours, if its buffers hold fewer bytes than
    /// this (and it has fewer than `rows` rows): copying it costs less than the chunk it saves.
    pub small_bytes: usize,
}

impl Default for Coalesce {
    fn default() -> Self {
        Coalesce {
            // DuckDB's STANDARD_VECTOR_SIZE.
            rows: 2048,
            small_bytes: 64 * 1024,
        }
    }
}

/// What coalescing did: batches that went into joined ones, the joined batches, and the bytes
/// copied into them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Coalesced {
    /// Small batches that were joined (each counted once).
    pub batches: u64,
    /// Joined batches produced from them.
    pub joined: u64,
    /// Bytes of the small batches' rows copied into the joined batches.
    pub bytes: u64,
}

impl Coalesced {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: Coalesced) {
        self.batches += other.batches;
        self.joined += other.joined;
        self.bytes += other.bytes;
    }
}

/// The batches of one stream, in order, small runs joined under a [`Coalesce`] policy (or
/// none).
pub struct Feed {
    schema: SchemaRef,
    rest: Peekable<std::vec::IntoIter<RecordBatch>>,
    policy: Option<Coalesce>,
    done: Coalesced,
}

impl Feed {
    /// `batches` (all of `schema`), joined under `policy` if one is given.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>, policy: Option<Coalesce>) -> Self {
        Feed {
            schema,
            rest: batches.into_iter().peekable(),
            policy,
            done: Coalesced::default(),
        }
    }

    /// The batches' schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// What was joined so far.
    pub fn coalesced(&self) -> Coalesced {
        self.done
    }
}

impl Iterator for Feed {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        let first = self.rest.next()?;
        let Some(policy) = self.policy else {
            return Some(first);
        };
        // A small batch's bytes (counted once: what joining it copies).
        let small = |b: &RecordBatch| {
            Some(bytes(b)).filter(|n| b.num_rows() < policy.rows && *n < policy.small_bytes)
        };
        let Some(mut copied) = small(&first) else {
            return Some(first);
        };
        let mut run = vec![first];
        let mut rows = run[0].num_rows();
        let mut size = 0;
        while let Some(next) = self.rest.next_if(|b| {
            rows + b.num_rows() <= policy.rows && small(b).inspect(|n| size = *n).is_some()
        }) {
            rows += next.num_rows();
            copied += size;
            run.push(next);
        }
        if run.len() == 1 {
            return run.pop();
        }
        match concat_batches(&self.schema, &run) {
            Ok(joined) => {
                self.done.batches += run.len() as u64;
                self.done.joined += 1;
                self.done.bytes += copied as u64;
                Some(joined)
            }
            // Batches of one schema always concatenate; were one not to, it goes on its own
            // (nothing is lost, nothing is joined).
            Err(e) => {
                tracing::warn!(error = %e, "could not join small batches; handing them over one by one");
                self.policy = None;
                let rest: Vec<RecordBatch> = run.into_iter().chain(self.rest.by_ref()).collect();
                self.rest = rest.into_iter().peekable();
                self.rest.next()
            }
        }
    }
}

/// The bytes of `batch`'s rows: what a copy of just those rows holds (a slice of a larger
/// array counts its own rows' bytes, not its buffers' whole length). Arrow's own measure
/// (`ArrayData::get_slice_memory_size`), read from the arrays themselves for the types that
/// make up most batches: building each column's `ArrayData` to ask it cost ~9,000 instructions
/// per 10-column batch, as much as a fifth of decoding the 16-row message it came from.
pub fn bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| column_bytes(c.as_ref()))
        .sum()
}

fn column_bytes(c: &dyn Array) -> usize {
    let n = c.len();
    // Arrow's ArrayData keeps a validity bitmap only where a row is null.
    let nulls = if c.null_count() > 0 { n.div_ceil(8) } else { 0 };
    let values = match c.data_type() {
        DataType::Boolean => n.div_ceil(8),
        DataType::Utf8 => offsets_bytes(c.as_string::<i32>().value_offsets()),
        DataType::LargeUtf8 => offsets_bytes(c.as_string::<i64>().value_offsets()),
        DataType::Binary => offsets_bytes(c.as_binary::<i32>().value_offsets()),
        DataType::LargeBinary => offsets_bytes(c.as_binary::<i64>().value_offsets()),
        t => match t.primitive_width() {
            Some(width) => n * width,
            // Only a type arrow-rs cannot size (none that sluice decodes) errs: its buffers.
            None => {
                let data = c.to_data();
                return data
                    .get_slice_memory_size()
                    .unwrap_or_else(|_| data.buffers().iter().map(|b| b.len()).sum());
            }
        },
    };
    nulls + values
}

/// A variable-width column's offsets (one per row, as arrow counts them) and its rows' values.
fn offsets_bytes<O: OffsetSizeTrait>(offsets: &[O]) -> usize {
    let rows = offsets.len().saturating_sub(1);
    let values = match (offsets.first(), offsets.last()) {
        (Some(first), Some(last)) => (*last - *first).as_usize(),
        _ => 0,
    };
    rows * size_of::<O>() + values
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(from..from + rows)),
                Arc::new(StringArray::from_iter(
                    (from..from + rows).map(|i| (i % 3 != 0).then(|| format!("v{i}"))),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn runs_of_small_batches_are_joined_up_to_the_rows_and_large_ones_pass_in_place() {
        // 200 batches of 16 rows, one of 5,000, 3 of 16: 2,048 + 1,152 | 5,000 | 48.
        let mut batches: Vec<RecordBatch> = (0..200).map(|i| batch(i * 16, 16)).collect();
        batches.push(batch(3200, 5000));
        batches.extend((0..3).map(|i| batch(8200 + i * 16, 16)));
        let schema = batches[0].schema();
        let large = batches[200].clone();
        let mut feed = Feed::new(schema.clone(), batches.clone(), Some(Coalesce::default()));
        let out: Vec<RecordBatch> = feed.by_ref().collect();
        let rows: Vec<usize> = out.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(rows, vec![2048, 1152, 5000, 48]);
        // The large batch is the very same arrays, not a copy.
        assert_eq!(
            out[2].column(0).to_data().buffers()[0].as_ptr(),
            large.column(0).to_data().buffers()[0].as_ptr()
        );
        // Same rows, same order.
        let all = concat_batches(&schema, &batches).unwrap();
        assert_eq!(concat_batches(&schema, &out).unwrap(), all);
        // Every batch but the large one was copied.
        let joined_bytes: usize = (batches.iter().enumerate())
            .filter(|(i, _)| *i != 200)
            .map(|(_, b)| bytes(b))
            .sum();
        assert_eq!(
            feed.coalesced(),
            Coalesced {
                batches: 203,
                joined: 3,
                bytes: joined_bytes as u64,
            }
        );
    }

    #[test]
    fn without_a_policy_or_for_a_lone_small_batch_nothing_is_copied() {
        let batches = vec![batch(0, 16), batch(16, 16)];
        let schema = batches[0].schema();
        let mut plain = Feed::new(schema.clone(), batches.clone(), None);
        assert_eq!(plain.by_ref().collect::<Vec<_>>(), batches);
        assert_eq!(plain.coalesced(), Coalesced::default());
        // A small batch between two large ones has no neighbour to join.
        let mixed = vec![batch(0, 3000), batch(3000, 16), batch(3016, 3000)];
        let mut feed = Feed::new(schema, mixed.clone(), Some(Coalesce::default()));
        assert_eq!(feed.by_ref().collect::<Vec<_>>(), mixed);
        assert_eq!(feed.coalesced(), Coalesced::default());
    }

    #[test]
    fn bytes_are_what_arrow_measures_of_the_rows_for_every_kind_of_column() {
        use arrow::array::{
            ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array,
            Int8Array, LargeStringArray, ListArray, TimestampMillisecondArray,
        };
        use arrow::datatypes::Int32Type;
        let rows = 1000;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int8Array::from_iter(
                (0..rows).map(|i| (i % 5 != 0).then_some(i as i8)),
            )),
            Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
            Arc::new(Date32Array::from_iter_values(0..rows as i32)),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(0..rows as i64).with_timezone("UTC"),
            ),
            Arc::new(Decimal128Array::from_iter_values(0..rows as i128)),
            Arc::new(BooleanArray::from_iter(
                (0..rows).map(|i| (i % 7 != 0).then_some(i % 2 == 0)),
            )),
            Arc::new(StringArray::from_iter(
                (0..rows).map(|i| (i % 3 != 0).then(|| "s".repeat(i % 40))),
            )),
            Arc::new(LargeStringArray::from_iter_values(
                (0..rows).map(|i| "l".repeat(i % 9)),
            )),
            Arc::new(BinaryArray::from_iter_values(
                (0..rows).map(|i| vec![7u8; i % 13]),
            )),
            // Not read directly: measured through its ArrayData, as before.
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
                (0..rows).map(|i| Some(vec![Some(i as i32); i % 4])),
            )),
        ];
        let batch = RecordBatch::try_from_iter(
            cols.into_iter()
                .enumerate()
                .map(|(i, c)| (format!("c{i}"), c)),
        )
        .unwrap();
        let arrow_measure = |b: &RecordBatch| -> Vec<usize> {
            (b.columns().iter())
                .map(|c| c.to_data().get_slice_memory_size().unwrap())
                .collect()
        };
        for (offset, len) in [(0, rows), (0, 16), (333, 16), (999, 1), (500, 0)] {
            let slice = batch.slice(offset, len);
            let ours: Vec<usize> = (slice.columns().iter())
                .map(|c| column_bytes(c.as_ref()))
                .collect();
            assert_eq!(ours, arrow_measure(&slice), "rows {offset}..+{len}");
            assert_eq!(bytes(&slice), ours.iter().sum::<usize>());
        }
        // The whole batch, by hand: 1,000 rows of i8 with validity, f64, date32, timestamp,
        // decimal128 and a bitmap-with-validity boolean, the list through arrow.
        assert_eq!(
            column_bytes(batch.column(0).as_ref()) + column_bytes(batch.column(5).as_ref()),
            (1000 + 125) + (125 + 125)
        );
        assert_eq!(column_bytes(batch.column(4).as_ref()), 16_000);
    }

    #[test]
    fn a_batch_of_many_bytes_is_not_small_however_few_its_rows() {
        let policy = Coalesce {
            rows: 2048,
            small_bytes: 1000,
        };
        // 16 rows: 128 bytes of ids, 68 of offsets, 3 of validity, ~40 of strings.
        let small = batch(0, 16);
        assert!(bytes(&small) < 1000, "{}", bytes(&small));
        let wide = batch(0, 200);
        assert!(bytes(&wide) >= 1000, "{}", bytes(&wide));
        // A slice counts its own rows, not the buffers it shares with the whole.
        let slice = batch(0, 100_000).slice(50_000, 16);
        assert_eq!(bytes(&slice), bytes(&batch(50_000, 16)));
        let batches = vec![small.clone(), small.clone(), wide.clone(), small.clone()];
        let out: Vec<usize> = Feed::new(small.schema(), batches, Some(policy))
            .map(|b| b.num_rows())
            .collect();
        assert_eq!(out, vec![32, 200, 16]);
    }
}
