//! One message's way into pending data: decode the payload in place (or from one aligned copy),
//! add the configured Kafka metadata columns, check that the batches fit the table. The result
//! is a value: the batches with what they cost, or the quarantine row that replaces them.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, TimestampMillisecondArray,
};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::config::MetadataColumns;
use crate::decode::{self, Copies};
use crate::sink::{Fit, Lake, QuarantineRow, SinkError};
use crate::source::{KafkaMessage, MessageMeta};

/// What decoding one message produced.
pub enum Ingested {
    /// Batches that fit the table.
    Batches {
        /// The batches, in payload order.
        batches: Vec<RecordBatch>,
        /// Their rows.
        rows: u64,
        /// Where their bytes live.
        copies: Copies,
    },
    /// The payload is not Arrow, is corrupt, or does not fit the table.
    Quarantined(QuarantineRow),
}

/// How messages are decoded.
#[derive(Debug)]
pub struct Decoding {
    /// The decoder, with the schemas it has parsed.
    pub decoder: decode::Decoder,
    /// `kafka.copy_payloads`: decode one aligned copy and release the message at once.
    pub copy_payloads: bool,
    /// `tables.metadata`: Kafka metadata columns added to every row.
    pub metadata: MetadataColumns,
}

/// Decodes `msg` for `table` (whose schema `lake` checks the batches against).
pub fn ingest(
    msg: &KafkaMessage,
    meta: &MessageMeta,
    table: &str,
    how: &mut Decoding,
    lake: &mut Lake,
) -> Result<Ingested, SinkError> {
    let (payload, decoded) = if how.copy_payloads {
        // The copy owns its bytes: `msg`, and librdkafka's fetch buffer once no other message
        // holds it, is released when the caller drops it.
        how.decoder.decode_copy(msg.payload())
    } else {
        // In place, or from one aligned copy where that costs less (see decode_payload).
        how.decoder.decode_payload(msg.payload_buffer())
    };
    let quarantine = |payload: Buffer, error: String| {
        tracing::warn!(topic = %meta.topic, partition = meta.partition, offset = meta.offset, %error, "payload quarantined");
        Ok(Ingested::Quarantined(QuarantineRow {
            meta: meta.clone(),
            error,
            payload,
        }))
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) => return quarantine(payload, e.to_string()),
    };
    let batches = match with_metadata(msg, &how.metadata, decoded.batches) {
        Ok(b) => b,
        Err(e) => return quarantine(payload, e),
    };
    for b in &batches {
        if let Fit::Misfit(misfit) = lake.check_fit(table, &b.schema())? {
            return quarantine(payload, misfit.to_string());
        }
    }
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    Ok(Ingested::Batches {
        batches,
        rows,
        copies: decoded.copies,
    })
}

/// Adds the configured Kafka metadata columns (constant per batch).
fn with_metadata(
    msg: &KafkaMessage,
    m: &MetadataColumns,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, String> {
    if !(m.partition || m.offset || m.batch || m.timestamp || m.key) {
        return Ok(batches);
    }
    batches
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let n = b.num_rows();
            let mut fields: Vec<Arc<Field>> = b.schema().fields().iter().cloned().collect();
            let mut cols: Vec<ArrayRef> = b.columns().to_vec();
            let mut add = |name: &str, ty: DataType, col: ArrayRef| -> Result<(), String> {
                if fields.iter().any(|f| f.name() == name) {
                    return Err(format!("the message already has a column named {name:?}, which sluice adds as Kafka metadata"));
                }
                fields.push(Arc::new(Field::new(name, ty, true)));
                cols.push(col);
                Ok(())
            };
            if m.partition {
                let col = Int32Array::from_value(msg.partition(), n);
                add("_kafka_partition", DataType::Int32, Arc::new(col))?;
            }
            if m.offset {
                let col = Int64Array::from_value(msg.offset(), n);
                add("_kafka_offset", DataType::Int64, Arc::new(col))?;
            }
            if m.batch {
                let col = Int32Array::from_value(i as i32, n);
                add("_kafka_batch", DataType::Int32, Arc::new(col))?;
            }
            if m.timestamp {
                let utc = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
                let col = TimestampMillisecondArray::from(vec![msg.timestamp_ms(); n]);
                add("_kafka_timestamp", utc, Arc::new(col.with_timezone("UTC")))?;
            }
            if m.key {
                let col = BinaryArray::from_opt_vec(vec![msg.key(); n]);
                add("_kafka_key", DataType::Binary, Arc::new(col))?;
            }
            RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())
        })
        .collect()
}
