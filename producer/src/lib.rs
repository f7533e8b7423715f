//! sluice-producer: writes Arrow RecordBatches as Arrow IPC message values to a Kafka topic
//! (stream or file format; body compression none / lz4 / zstd; any number of batches per
//! message), and generates PostHog-shaped event batches for load tests and `sluice demo`.

pub mod events;

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use arrow::ipc::CompressionType;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions, StreamWriter};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Arrow IPC framing of a message value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IpcFormat {
    /// IPC streaming format (schema message, batches, end-of-stream marker).
    Stream,
    /// IPC file format (`ARROW1` magic, footer).
    File,
}

/// Arrow IPC body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BodyCompression {
    /// Uncompressed buffers.
    None,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

/// How batches are encoded into one message value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// Stream or file format.
    pub format: IpcFormat,
    /// Body compression.
    pub compression: BodyCompression,
}

impl Default for Encoding {
    fn default() -> Self {
        Encoding {
            format: IpcFormat::Stream,
            compression: BodyCompression::None,
        }
    }
}

/// Errors of the producer library.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// Encoding the batches failed.
    #[error("arrow IPC encoding: {0}")]
    Arrow(#[from] ArrowError),
    /// Kafka rejected the message or the client could not be created.
    #[error("kafka (topic {topic}): {source}")]
    Kafka {
        /// Target topic.
        topic: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// Batches in one message must share a schema.
    #[error("batches in one message must share one schema")]
    MixedSchemas,
    /// A message needs at least one batch.
    #[error("no batches to encode")]
    NoBatches,
}

/// Encodes `batches` (one schema) as one Arrow IPC message value.
pub fn encode(batches: &[RecordBatch], encoding: Encoding) -> Result<Vec<u8>, ProduceError> {
    let first = batches.first().ok_or(ProduceError::NoBatches)?;
    let schema = first.schema();
    if batches.iter().any(|b| b.schema() != schema) {
        return Err(ProduceError::MixedSchemas);
    }
    let compression = match encoding.compression {
        BodyCompression::None => None,
        BodyCompression::Lz4 => Some(CompressionType::LZ4_FRAME),
        BodyCompression::Zstd => Some(CompressionType::ZSTD),
    };
    let options = IpcWriteOptions::default().try_with_compression(compression)?;
    let mut out = Vec::with_capacity(
        batches
            .iter()
            .map(|b| b.get_array_memory_size())
            .sum::<usize>()
            + 1024,
    );
    match encoding.format {
        IpcFormat::Stream => {
            let mut w = StreamWriter::try_new_with_options(&mut out, &schema, options)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        IpcFormat::File => {
            let mut w = FileWriter::try_new_with_options(&mut out, &schema, options)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(out)
}

/// Encodes each row of `batch` as one JSON object (nulls written explicitly, timestamps as
/// RFC 3339 strings): the message values of a JSON Kafka topic, one event per message, for the
/// JSON consumer baseline of the benchmarks.
pub fn encode_json_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ProduceError> {
    let mut lines = Vec::with_capacity(batch.num_rows() * 1100);
    let mut w = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(&mut lines);
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// A Kafka producer of Arrow IPC messages to one topic.
pub struct ArrowProducer {
    producer: BaseProducer,
    topic: String,
    encoding: Encoding,
}

impl ArrowProducer {
    /// Connects to `brokers`. `properties` are extra librdkafka settings (e.g. `batch.size`).
    pub fn new(
        brokers: &str,
        topic: &str,
        encoding: Encoding,
        properties: &[(&str, &str)],
    ) -> Result<Self, ProduceError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", brokers)
            .set("message.max.bytes", "67108864")
            .set("linger.ms", "5")
            .set("enable.idempotence", "false");
        for (k, v) in properties {
            cfg.set(*k, *v);
        }
        let producer = cfg.create().map_err(|source| ProduceError::Kafka {
            topic: topic.to_string(),
            source,
        })?;
        Ok(ArrowProducer {
            producer,
            topic: topic.to_string(),
            encoding,
        })
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Encodes `batches` into one message and enqueues it (waiting while the local queue is full).
    /// Returns the value's size in bytes.
    pub fn send(
        &self,
        partition: Option<i32>,
        key: Option<&[u8]>,
        batches: &[RecordBatch],
    ) -> Result<usize, ProduceError> {
        let value = encode(batches, self.encoding)?;
        self.send_raw(partition, key, &value)?;
        Ok(value.len())
    }

    /// Enqueues an already encoded value (or any bytes: tests send bad payloads this way).
    pub fn send_raw(
        &self,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<(), ProduceError> {
        loop {
            let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(value);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            if let Some(k) = key {
                record = record.key(k);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((source, _)) => {
                    return Err(ProduceError::Kafka {
                        topic: self.topic.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Serves delivery reports; call regularly.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until every enqueued message is delivered (or `timeout` passes).
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        let deadline = Instant::now() + timeout;
        self.producer
            .flush(deadline.saturating_duration_since(Instant::now()))
            .map_err(|source| ProduceError::Kafka {
                topic: self.topic.clone(),
                source,
            })
    }

    /// Messages still waiting for delivery.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::ipc::reader::{FileReader, StreamReader};
    use std::io::Cursor;

    #[test]
    fn encode_round_trips_every_format_and_codec() {
        let batch = events::generate(&mut events::EventGen::new(7), 100);
        for format in [IpcFormat::Stream, IpcFormat::File] {
            for compression in [
                BodyCompression::None,
                BodyCompression::Lz4,
                BodyCompression::Zstd,
            ] {
                let bytes = encode(
                    &[batch.clone(), batch.clone()],
                    Encoding {
                        format,
                        compression,
                    },
                )
                .unwrap();
                let back: Vec<RecordBatch> = match format {
                    IpcFormat::Stream => StreamReader::try_new(Cursor::new(bytes), None)
                        .unwrap()
                        .map(|b| b.unwrap())
                        .collect(),
                    IpcFormat::File => FileReader::try_new(Cursor::new(bytes), None)
                        .unwrap()
                        .map(|b| b.unwrap())
                        .collect(),
                };
                assert_eq!(
                    back,
                    vec![batch.clone(), batch.clone()],
                    "{format:?} {compression:?}"
                );
            }
        }
    }

    #[test]
    fn json_rows_are_one_object_per_row_and_read_back_to_the_batch() {
        for dataset in [events::Dataset::Events, events::Dataset::Narrow] {
            let batch = dataset.generate(&mut events::EventGen::new(3), 50);
            let rows = encode_json_rows(&batch).unwrap();
            assert_eq!(rows.len(), 50, "{dataset:?}");
            assert!(
                rows.iter()
                    .all(|r| r.starts_with(b"{\"seq\":") && r.ends_with(b"}"))
            );
            let text = rows.join(&b'\n');
            let back: Vec<RecordBatch> = arrow::json::ReaderBuilder::new(dataset.schema())
                .build(Cursor::new(text))
                .unwrap()
                .map(|b| b.unwrap())
                .collect();
            assert_eq!(
                arrow::compute::concat_batches(&dataset.schema(), &back).unwrap(),
                batch,
                "{dataset:?}"
            );
        }
        let events = events::generate(&mut events::EventGen::new(3), 50);
        let nulls = encode_json_rows(&events).unwrap();
        let null = b"\"revenue\":null";
        assert!(
            nulls
                .iter()
                .any(|r| r.windows(null.len()).any(|w| w == null))
        );
    }

    #[test]
    fn mixed_schemas_are_rejected() {
        let a = events::generate(&mut events::EventGen::new(1), 3);
        let b = a.project(&[0, 1]).unwrap();
        assert!(matches!(
            encode(&[a, b], Encoding::default()),
            Err(ProduceError::MixedSchemas)
        ));
    }
}
