//! `sluice_ring(topic)`: a DuckDB table function over the live ring's batches of `topic` not
//! yet committed ([`Ring::uncommitted`]), each row with its Kafka partition and offset
//! ([`PARTITION_COLUMN`], [`OFFSET_COLUMN`]) so that a real-time view keeps exactly those the
//! lake's snapshot has not committed. Every scan takes its own snapshot of the ring at bind
//! time, so a view may name it any number of times (DuckDB's Arrow scan of a stream can be read
//! only once). The rows are copied into DuckDB's vectors as they are scanned, 2,048 at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use duckdb::core::DataChunkHandle;
use duckdb::vtab::arrow::{record_batch_to_duckdb_data_chunk, to_duckdb_logical_type_for_field};
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab};

use crate::live::ring::Ring;

/// The table function's name.
pub const FUNCTION: &str = "sluice_ring";
/// The column holding each row's Kafka partition.
pub const PARTITION_COLUMN: &str = "_sluice_partition";
/// The column holding each row's Kafka offset.
pub const OFFSET_COLUMN: &str = "_sluice_offset";

/// DuckDB's vector size: the most rows one output chunk takes.
const CHUNK_ROWS: usize = 2048;

/// The ring the function reads (DuckDB keeps a clone as the function's extra info).
#[derive(Clone)]
pub struct RingHandle(pub Arc<Ring>);

/// The table function (registered with [`duckdb::Connection::register_table_function_with_extra_info`]).
pub struct RingScan;

/// One scan's snapshot: batches of at most [`CHUNK_ROWS`] rows, in the scan's schema.
pub struct Snapshot {
    batches: Vec<RecordBatch>,
}

/// One scan's position.
pub struct Cursor {
    next: AtomicUsize,
}

impl VTab for RingScan {
    type InitData = Cursor;
    type BindData = Snapshot;

    fn bind(bind: &BindInfo) -> Result<Snapshot, Box<dyn std::error::Error>> {
        let topic = bind.get_parameter(0).to_string();
        // SAFETY: registered with a `RingHandle` as extra info, which DuckDB keeps alive as
        // long as the function exists.
        let ring = unsafe { &*bind.get_extra_info::<RingHandle>() };
        let tail = ring
            .0
            .uncommitted(&topic)?
            .ok_or_else(|| format!("topic {topic:?} has no live ring in this sluice"))?;
        let Some(newest) = tail.schema else {
            return Err(format!("topic {topic:?} has no batches in the live ring yet").into());
        };
        let schema = scan_schema(&newest, tail.batches.iter().map(|b| b.batch.schema()));
        for f in schema.fields() {
            let t = to_duckdb_logical_type_for_field(f)
                .map_err(|e| format!("column {:?} of topic {topic:?}: {e}", f.name()))?;
            bind.add_result_column(f.name(), t);
        }
        let mut batches = Vec::new();
        let mut rows = 0;
        for e in &tail.batches {
            let b = conform(&schema, &e.batch, e.partition, e.offset)
                .map_err(|err| format!("topic {topic:?} offset {}: {err}", e.offset))?;
            rows += b.num_rows();
            let mut at = 0;
            while at < b.num_rows() {
                let n = CHUNK_ROWS.min(b.num_rows() - at);
                batches.push(b.slice(at, n));
                at += n;
            }
        }
        bind.set_cardinality(rows as u64, true);
        Ok(Snapshot { batches })
    }

    fn init(_: &InitInfo) -> Result<Cursor, Box<dyn std::error::Error>> {
        Ok(Cursor {
            next: AtomicUsize::new(0),
        })
    }

    fn func(
        func: &TableFunctionInfo<Self>,
        output: &mut DataChunkHandle,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let snapshot = func.get_bind_data();
        let i = func.get_init_data().next.fetch_add(1, Relaxed);
        match snapshot.batches.get(i) {
            Some(b) => record_batch_to_duckdb_data_chunk(b, output)?,
            None => output.set_len(0),
        }
        Ok(())
    }

    fn parameters() -> Option<Vec<duckdb::core::LogicalTypeHandle>> {
        Some(vec![duckdb::core::LogicalTypeHandle::from(
            duckdb::core::LogicalTypeId::Varchar,
        )])
    }
}

/// The columns of a scan: the newest schema's, then columns only older batches have (by name,
/// in order of appearance), then partition and offset. A column's type is its newest.
fn scan_schema(newest: &SchemaRef, older: impl Iterator<Item = SchemaRef>) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = newest.fields().iter().cloned().collect();
    for s in older {
        for f in s.fields() {
            if !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(f.clone());
            }
        }
    }
    fields.retain(|f| f.name() != PARTITION_COLUMN && f.name() != OFFSET_COLUMN);
    // Dictionary-encoded columns are scanned decoded (as the lake stores them: DuckDB decodes
    // them on insert), so every value is written as its own.
    let mut fields: Vec<Field> = fields
        .into_iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Dictionary(_, v) => v.as_ref().clone(),
                t => t.clone(),
            };
            f.as_ref().clone().with_data_type(t).with_nullable(true)
        })
        .collect();
    fields.push(Field::new(PARTITION_COLUMN, DataType::Int32, false));
    fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// `batch` in `schema`: its columns by name (cast where the type changed since), nulls for
/// columns it lacks, and its partition and offset on every row.
fn conform(
    schema: &SchemaRef,
    batch: &RecordBatch,
    partition: i32,
    offset: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let rows = batch.num_rows();
    let n = schema.fields().len();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(n);
    for f in &schema.fields()[..n - 2] {
        let c = match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            Some(c) => cast(c.as_ref(), f.data_type())?,
            None => new_null_array(f.data_type(), rows),
        };
        columns.push(c);
    }
    columns.push(Arc::new(Int32Array::from(vec![partition; rows])));
    columns.push(Arc::new(Int64Array::from(vec![offset; rows])));
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(cols: &[(&str, ArrayRef)]) -> RecordBatch {
        RecordBatch::try_from_iter(cols.iter().map(|(n, c)| (*n, c.clone()))).unwrap()
    }

    #[test]
    fn a_scan_takes_the_newest_types_keeps_older_columns_and_adds_partition_and_offset() {
        let old = batch(&[
            ("a", Arc::new(Int32Array::from(vec![1, 2]))),
            ("gone", Arc::new(Int32Array::from(vec![7, 8]))),
        ]);
        let new = batch(&[
            ("b", Arc::new(Int32Array::from(vec![5]))),
            ("a", Arc::new(Int64Array::from(vec![3]))),
        ]);
        let schema = scan_schema(&new.schema(), [old.schema()].into_iter());
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["b", "a", "gone", PARTITION_COLUMN, OFFSET_COLUMN]);
        let o = conform(&schema, &old, 3, 41).unwrap();
        assert_eq!(o.column(0).null_count(), 2);
        let a = o.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(a.values(), &[1, 2]);
        let p = o.column(3).as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(p.values(), &[3, 3]);
        let off = o.column(4).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(off.values(), &[41, 41]);
        let n = conform(&schema, &new, 0, 42).unwrap();
        assert_eq!(n.column(2).null_count(), 1);
    }

    #[test]
    fn dictionary_columns_are_scanned_decoded() {
        use arrow::array::{DictionaryArray, StringArray};
        use arrow::datatypes::Int8Type;
        let d: DictionaryArray<Int8Type> = vec!["a", "b", "a"].into_iter().collect();
        let b = batch(&[("s", Arc::new(d))]);
        let schema = scan_schema(&b.schema(), std::iter::empty());
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        let c = conform(&schema, &b, 1, 7).unwrap();
        let s = c.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [Some("a"), Some("b"), Some("a")]
        );
    }
}
