//! sluice's quarantine table: payloads that are not Arrow, are corrupt, or do not fit their
//! table, with where they came from and why, committed with the flush of their partitions.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;

use super::QuarantineRow;

/// The quarantine table's columns (`CREATE TABLE`): [`batch`]'s, then when it was quarantined.
pub(super) const COLUMNS_SQL: &str = "consumer_group VARCHAR, topic VARCHAR, \"partition\" INTEGER, \"offset\" BIGINT, kafka_timestamp TIMESTAMP WITH TIME ZONE, error VARCHAR, payload BLOB, quarantined_at TIMESTAMP WITH TIME ZONE";

/// The quarantine rows as one Arrow batch (raw bytes travel through Arrow too, no escaping).
pub(super) fn batch(group: &str, rows: &[QuarantineRow]) -> Result<RecordBatch, ArrowError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("consumer_group", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "kafka_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("error", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![group; rows.len()])),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &*r.meta.topic),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.meta.partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.meta.offset),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter(rows.iter().map(|r| r.meta.timestamp_ms))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.error.as_str()),
        )),
        Arc::new(BinaryArray::from_iter_values(
            rows.iter().map(|r| r.payload.as_slice()),
        )),
    ];
    RecordBatch::try_new(schema, cols)
}
