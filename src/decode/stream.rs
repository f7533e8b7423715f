//! The IPC stream format, walked message by message over one whole payload: each message's
//! flatbuffer is verified once, a batch's compressed buffers are checked ([`Budget`]) before
//! arrow-rs decompresses them, and each batch is decoded in place by arrow-rs's
//! `read_record_batch`. The schema message is parsed once per distinct bytes ([`Schemas`]):
//! producers send the same schema at the head of every payload, and parsing it was most of the
//! cost of a small message that did not depend on its rows.
//!
//! What is accepted and what is refused, with arrow-rs's words, is what arrow-rs's
//! `StreamDecoder` does when given the whole payload and then `finish`ed, except a buffer off
//! the 8-byte grid of its body, which arrow-rs reads and sluice refuses as Arrow C++ does
//! ([`check_buffer_offsets`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::convert::fb_to_schema;
use arrow::ipc::reader::{read_dictionary, read_record_batch};
use arrow::ipc::{MessageHeader, root_as_message};

use super::limits::{Budget, check_buffer_offsets};

/// How many distinct schema messages a [`Schemas`] remembers (most recently used first). One
/// pipeline decodes every topic it consumes; a topic's producers rarely send more than a few
/// schemas at once.
pub const REMEMBERED_SCHEMAS: usize = 16;

/// Schema messages longer than this are parsed every time rather than remembered, so the
/// memory the cache holds stays below [`REMEMBERED_SCHEMAS`] × this.
pub const MAX_REMEMBERED_SCHEMA_BYTES: usize = 64 * 1024;

/// Schema messages already verified and parsed, by their exact flatbuffer bytes. A payload
/// whose schema message is byte for byte one of these gets the same `Arc<Schema>` without
/// verifying or parsing it again; any other schema, a new one included, is parsed as usual.
#[derive(Debug, Default)]
pub struct Schemas {
    known: Vec<Known>,
    hits: u64,
}

#[derive(Debug)]
struct Known {
    /// The schema message's flatbuffer (after its length prefix).
    message: Box<[u8]>,
    /// The body length that message declares.
    body_len: usize,
    schema: SchemaRef,
    /// Whether payloads of this schema are decoded from an aligned copy (see
    /// [`Schemas::copy_schema`]).
    copy: bool,
}

impl Schemas {
    /// Payloads whose schema was found here rather than parsed.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Whether payloads whose first message is `payload`'s are decoded from an aligned copy.
    pub fn copies(&self, payload: &[u8]) -> bool {
        // Most topics have no such schema: no comparison per payload then.
        if !self.known.iter().any(|k| k.copy) {
            return false;
        }
        first_message(payload)
            .and_then(|m| self.known.iter().find(|k| *k.message == *m))
            .is_some_and(|k| k.copy)
    }

    /// From now on, payloads of `schema` (if remembered) are decoded from an aligned copy.
    pub fn copy_schema(&mut self, schema: &SchemaRef) {
        if let Some(k) = self
            .known
            .iter_mut()
            .find(|k| Arc::ptr_eq(&k.schema, schema))
        {
            k.copy = true;
        }
    }

    fn find(&mut self, message: &[u8]) -> Option<(SchemaRef, usize)> {
        let i = self.known.iter().position(|k| *k.message == *message)?;
        // Most recently used first: a topic's schema is found at the first comparison.
        self.known[..=i].rotate_right(1);
        self.hits += 1;
        let k = &self.known[0];
        Some((Arc::clone(&k.schema), k.body_len))
    }

    fn remember(&mut self, message: &[u8], body_len: usize, schema: &SchemaRef) {
        if message.len() > MAX_REMEMBERED_SCHEMA_BYTES {
            return;
        }
        self.known.truncate(REMEMBERED_SCHEMAS - 1);
        self.known.insert(
            0,
            Known {
                message: message.into(),
                body_len,
                schema: Arc::clone(schema),
                copy: false,
            },
        );
    }
}

/// The flatbuffer of a stream payload's first message, if its framing is in bounds.
fn first_message(payload: &[u8]) -> Option<&[u8]> {
    let (len, at) = match le_u32(payload, 0)? {
        u32::MAX => (le_u32(payload, 4)?, 8usize),
        n => (n, 4),
    };
    payload.get(at..at.checked_add(len as usize)?)
}

/// The little-endian u32 at `at` of `bytes`, if it is there.
fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn ipc(message: impl Into<String>) -> String {
    ArrowError::IpcError(message.into()).to_string()
}

fn unreadable(e: impl std::fmt::Debug) -> String {
    ArrowError::ParseError(format!("Unable to get root as message: {e:?}")).to_string()
}

/// Decodes the stream-format payload `payload`, whose buffers stay in it where aligned. Returns
/// the batches and whether any of them was body-compressed, or what is wrong with the payload.
pub fn decode(payload: &Buffer, schemas: &mut Schemas) -> Result<(Vec<RecordBatch>, bool), String> {
    let bytes = payload.as_slice();
    let mut budget = Budget::new(bytes.len());
    let mut schema: Option<SchemaRef> = None;
    let mut dictionaries: HashMap<i64, ArrayRef> = HashMap::new();
    let mut batches = Vec::new();
    let truncated = || ipc("Unexpected End of Stream");
    let mut pos = 0;
    while pos < bytes.len() {
        // The length prefix: a continuation marker then the length (IPC ≥ 0.15), or the length.
        let mut len = le_u32(bytes, pos).ok_or_else(truncated)?;
        pos += 4;
        if len == u32::MAX {
            len = le_u32(bytes, pos).ok_or_else(truncated)?;
            pos += 4;
        }
        if len == 0 {
            // The end-of-stream marker ends the payload.
            if pos < bytes.len() {
                return Err(ipc("Unexpected EOS"));
            }
            break;
        }
        let len = len as usize;
        // arrow-rs takes a message only if more bytes follow it: a message ending the payload
        // is verified, then waits for its body.
        if bytes.len() - pos <= len {
            if bytes.len() - pos == len {
                root_as_message(&bytes[pos..]).map_err(unreadable)?;
            }
            return Err(truncated());
        }
        let meta = &bytes[pos..pos + len];
        pos += len;
        if schema.is_none()
            && let Some((known, body_len)) = schemas.find(meta)
        {
            if bytes.len() - pos < body_len {
                return Err(truncated());
            }
            pos += body_len;
            schema = Some(known);
            continue;
        }
        let message = root_as_message(meta).map_err(unreadable)?;
        let body_len = message.bodyLength() as usize;
        if bytes.len() - pos < body_len {
            return Err(truncated());
        }
        let body_at = pos;
        let body = if body_at % 8 == 0 {
            payload.slice_with_length(pos, body_len)
        } else {
            // A message not padded to a multiple of 8 bytes puts the next body off the grid the
            // buffers' offsets are on. Arrow C++ reads such a stream (pyarrow 26 does); sluice
            // reads the body from an aligned copy (counted as realigned), so that every buffer
            // in it lies on the grid wherever the payload lies, not just where its address
            // happens to make up for it.
            Buffer::from_slice_ref(&bytes[pos..pos + body_len])
        };
        pos += body_len;
        let version = message.version();
        let missing = || {
            ipc(format!(
                "{:?} message without its header",
                message.header_type()
            ))
        };
        match message.header_type() {
            MessageHeader::Schema => {
                if schema.is_some() {
                    return Err(ipc("Not expecting a schema when messages are read"));
                }
                let parsed = Arc::new(fb_to_schema(
                    message.header_as_schema().ok_or_else(missing)?,
                ));
                schemas.remember(meta, body_len, &parsed);
                schema = Some(parsed);
            }
            MessageHeader::RecordBatch => {
                let schema = schema.clone().ok_or_else(|| ipc("Missing schema"))?;
                let batch = message.header_as_record_batch().ok_or_else(missing)?;
                check_buffer_offsets(batch)?;
                budget.check(bytes, batch, body_at)?;
                let decoded =
                    read_record_batch(&body, batch, schema, &dictionaries, None, &version)
                        .map_err(|e| e.to_string())?;
                batches.push(decoded);
            }
            MessageHeader::DictionaryBatch => {
                let schema = schema.as_deref().ok_or_else(|| ipc("Missing schema"))?;
                let dictionary = message.header_as_dictionary_batch().ok_or_else(missing)?;
                if let Some(data) = dictionary.data() {
                    check_buffer_offsets(data)?;
                    budget.check(bytes, data, body_at)?;
                }
                read_dictionary(&body, dictionary, schema, &mut dictionaries, &version)
                    .map_err(|e| e.to_string())?;
            }
            MessageHeader::NONE => {}
            t => {
                return Err(ipc(format!(
                    "Message type unsupported by StreamDecoder: {t:?}"
                )));
            }
        }
    }
    Ok((batches, budget.compressed()))
}
