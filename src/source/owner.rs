//! The owner of a librdkafka message: it keeps the message (and the consumer that produced it)
//! alive for as long as any Arrow buffer references its payload, and destroys it on drop.

use std::ptr::NonNull;
use std::sync::Arc;

use arrow::buffer::Buffer;
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;

use super::SharedConsumer;

/// A Kafka message whose payload can back Arrow buffers without a copy.
pub struct KafkaMessage {
    inner: Arc<Owner>,
}

struct Owner {
    // Field order matters: the message is destroyed before the consumer reference is released.
    message: BorrowedMessage<'static>,
    _consumer: SharedConsumer,
}

impl KafkaMessage {
    pub(super) fn new(message: BorrowedMessage<'_>, consumer: &SharedConsumer) -> Self {
        // SAFETY: a BorrowedMessage borrows the consumer only to guarantee that the client
        // outlives the message (librdkafka requires every message to be destroyed before
        // rd_kafka_destroy). The owner holds an Arc of that very consumer in a field dropped after
        // the message, which gives the same guarantee for as long as the owner lives.
        let message: BorrowedMessage<'static> = unsafe { std::mem::transmute(message) };
        KafkaMessage {
            inner: Arc::new(Owner {
                message,
                _consumer: Arc::clone(consumer),
            }),
        }
    }

    /// Topic, partition, offset and timestamp.
    pub fn meta(&self) -> super::MessageMeta {
        super::MessageMeta {
            topic: self.topic().into(),
            partition: self.partition(),
            offset: self.offset(),
            timestamp_ms: self.timestamp_ms(),
        }
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        self.inner.message.topic()
    }

    /// Partition.
    pub fn partition(&self) -> i32 {
        self.inner.message.partition()
    }

    /// Offset.
    pub fn offset(&self) -> i64 {
        self.inner.message.offset()
    }

    /// Message timestamp in milliseconds since the epoch, if the broker/producer set one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.inner.message.timestamp().to_millis()
    }

    /// The key bytes, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.inner.message.key()
    }

    /// Payload length in bytes (0 if there is none).
    pub fn payload_len(&self) -> usize {
        self.payload().len()
    }

    /// Whether anything besides this handle references the message (Arrow buffers made by
    /// [`KafkaMessage::payload_buffer`], or slices of them, still alive).
    pub fn is_referenced(&self) -> bool {
        Arc::strong_count(&self.inner) > 1
    }

    /// The payload bytes (empty if there is none).
    pub fn payload(&self) -> &[u8] {
        self.inner.message.payload().unwrap_or(&[])
    }

    /// The payload as an Arrow buffer backed by the librdkafka message itself (no copy).
    pub fn payload_buffer(&self) -> Buffer {
        let payload = self.payload();
        match NonNull::new(payload.as_ptr() as *mut u8) {
            Some(ptr) if !payload.is_empty() => {
                // SAFETY: `ptr` points to `payload.len()` initialized bytes owned by the librdkafka
                // message, which lives until the last clone of `inner` (the Allocation passed
                // here) is dropped; librdkafka never writes to a delivered message's payload.
                unsafe { Buffer::from_custom_allocation(ptr, payload.len(), self.inner.clone()) }
            }
            _ => Buffer::from(Vec::<u8>::new()),
        }
    }
}

impl std::fmt::Debug for KafkaMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaMessage")
            .field("topic", &self.topic())
            .field("partition", &self.partition())
            .field("offset", &self.offset())
            .field("len", &self.payload_len())
            .finish()
    }
}

// The owner is shared by buffers that may move between threads (the sink, Flight readers).
// BorrowedMessage is Send + Sync (rdkafka declares it), and so is the consumer.
impl std::panic::RefUnwindSafe for Owner {}
