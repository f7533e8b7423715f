//! `decode`: Arrow IPC (stream or file format, optionally LZ4/ZSTD body-compressed) decoded in
//! place from a [`Buffer`] that wraps the Kafka payload. Batches reference the payload; buffers
//! arrow-rs had to copy (realignment, decompression) are measured per payload, never assumed.

mod limits;
mod stream;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayData, AsArray, GenericByteArray, RecordBatch, downcast_primitive_array,
};
use arrow::buffer::Buffer;
use arrow::datatypes::{ByteArrayType, DataType};
use arrow::error::ArrowError;
use arrow::ipc::convert::fb_to_schema;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::root_as_footer;

#[cfg(test)]
use arrow::ipc::root_as_message;
#[cfg(test)]
use limits::message_spans;
pub use limits::{MAX_DECOMPRESSED_BUFFER, MAX_EXPANSION_LZ4, MAX_EXPANSION_ZSTD};
pub use stream::{MAX_REMEMBERED_SCHEMA_BYTES, REMEMBERED_SCHEMAS, Schemas};

/// The IPC file format's leading magic.
const FILE_MAGIC: &[u8; 6] = b"ARROW1";

/// Why a payload could not be decoded (the text goes to the quarantine table).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message has no value.
    #[error("empty payload (no Arrow IPC data)")]
    Empty,
    /// Neither IPC stream nor IPC file format.
    #[error("not Arrow IPC: payload of {len} bytes starts with {head}")]
    NotArrow {
        /// Payload length.
        len: usize,
        /// The first bytes, in hex.
        head: String,
    },
    /// Arrow IPC framing, but the content is truncated or corrupt.
    #[error("corrupt Arrow IPC {format}: {message}")]
    Corrupt {
        /// `stream` or `file`.
        format: &'static str,
        /// arrow-rs's message.
        message: String,
    },
}

pub use crate::observe::Copies;

/// The batches of one payload and where their bytes live.
#[derive(Debug)]
pub struct Decoded {
    /// Record batches, in payload order.
    pub batches: Vec<RecordBatch>,
    /// Where the batches' buffer bytes live.
    pub copies: Copies,
}

impl Decoded {
    /// Total rows.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Decodes payloads, remembering the schema messages it has parsed ([`Schemas`]): one per
/// pipeline, so that the schema a producer repeats in every payload is parsed once.
#[derive(Debug, Default)]
pub struct Decoder {
    schemas: Schemas,
}

impl Decoder {
    /// A decoder that remembers no schema yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The schemas it remembers.
    pub fn schemas(&self) -> &Schemas {
        &self.schemas
    }

    /// Decodes a Kafka payload the way that costs less for its schema: in place, unless a
    /// payload of its schema decoded in place at an address that breaks 8-byte alignment had
    /// more than [`COPY_ABOVE_REALIGNED_SHARE`] of its bytes realigned by arrow-rs (a schema of
    /// mostly fixed-width columns); from then on every payload of that schema, aligned or not,
    /// is decoded from one aligned copy ([`Decoder::decode_copy`]). Returns the buffer the
    /// batches live in (the payload or its copy) and the result.
    pub fn decode_payload(&mut self, payload: Buffer) -> (Buffer, Result<Decoded, DecodeError>) {
        if self.schemas.copies(payload.as_slice()) {
            return self.decode_copy(payload.as_slice());
        }
        let decoded = self.decode(&payload);
        if let Ok(d) = &decoded
            && let Some(b) = d.batches.first()
            && d.copies.decompressed == 0
            && !(payload.as_ptr() as usize).is_multiple_of(8)
        {
            let total = d.copies.in_place + d.copies.realigned;
            if d.copies.realigned as f32 > COPY_ABOVE_REALIGNED_SHARE * total as f32 {
                self.schemas.copy_schema(&b.schema());
            }
        }
        (payload, decoded)
    }

    /// Copies `payload` into a new 64-byte aligned buffer and decodes that in place: every
    /// buffer is aligned, so arrow-rs copies nothing more, and the caller can release the
    /// payload at once. The copy's buffers are counted as [`Copies::payload_copy`].
    pub fn decode_copy(&mut self, payload: &[u8]) -> (Buffer, Result<Decoded, DecodeError>) {
        let copy = Buffer::from_slice_ref(payload);
        let decoded = self.decode(&copy).map(|mut d| {
            d.copies.payload_copy = std::mem::take(&mut d.copies.in_place);
            d
        });
        (copy, decoded)
    }

    /// Decodes a payload in place. Accepts IPC stream and IPC file format, any number of
    /// batches, with or without body compression. Never panics on bad input.
    pub fn decode(&mut self, payload: &Buffer) -> Result<Decoded, DecodeError> {
        if payload.is_empty() {
            return Err(DecodeError::Empty);
        }
        let is_file = payload.as_slice().starts_with(FILE_MAGIC);
        let is_stream = payload.len() >= 8 && {
            let first = i32::from_le_bytes(payload.as_slice()[0..4].try_into().unwrap_or_default());
            // Continuation marker (IPC ≥ 0.15) or a legacy positive metadata length.
            first == -1 || (first > 0 && (first as usize) < payload.len())
        };
        if !is_file && !is_stream {
            return Err(not_arrow(payload.as_slice()));
        }
        let format = if is_file { "file" } else { "stream" };
        let schemas = &mut self.schemas;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if is_file {
                decode_file(payload)
            } else {
                stream::decode(payload, schemas)
            }
        }));
        let message = match result {
            Ok(Ok((batches, compressed))) => {
                let copies = measure(&batches, payload, compressed);
                return Ok(Decoded { batches, copies });
            }
            Ok(Err(e)) => e,
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "decoder panicked".to_string()),
        };
        // arrow-rs realigns the buffers it finds misaligned, but not all of them (a dense
        // union's offsets: it panics), so a payload that fails in place where an aligned copy
        // would not is decoded once more from such a copy: whether it decodes does not depend
        // on its address.
        if payload.as_ptr().align_offset(arrow::alloc::ALIGNMENT) != 0
            && let (_, Ok(decoded)) = self.decode_copy(payload.as_slice())
        {
            return Ok(decoded);
        }
        Err(DecodeError::Corrupt { format, message })
    }
}

/// See [`Decoder::decode_payload`]. Above this share, arrow-rs copies most of a misaligned
/// payload anyway, one allocation per buffer, and the batches decoded in place keep
/// librdkafka's whole fetch buffer alive until their flush (the buffer is freed only when no
/// message of it is held, so the aligned payloads of such a schema are copied too). One
/// aligned copy is one allocation and releases the message at once. On the narrow benchmark
/// topic, below the memory cap (400 MB), every payload copied held 0.72× the peak RSS of every
/// payload in place, at 1.11× its rows/s; above the cap (1.2 GB) both were equal within the
/// spread.
pub const COPY_ABOVE_REALIGNED_SHARE: f32 = 0.5;

/// [`Decoder::decode_copy`] by a decoder that remembers no schema.
pub fn decode_copy(payload: &[u8]) -> (Buffer, Result<Decoded, DecodeError>) {
    Decoder::new().decode_copy(payload)
}

/// [`Decoder::decode`] by a decoder that remembers no schema.
pub fn decode(payload: &Buffer) -> Result<Decoded, DecodeError> {
    Decoder::new().decode(payload)
}

fn not_arrow(bytes: &[u8]) -> DecodeError {
    let head = bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    DecodeError::NotArrow {
        len: bytes.len(),
        head,
    }
}

/// Decodes the file-format payload `payload` with arrow-rs's `FileDecoder`, after checking its
/// compressed buffers; returns the batches and whether any was body-compressed.
fn decode_file(payload: &Buffer) -> Result<(Vec<RecordBatch>, bool), String> {
    let bytes = payload.as_slice();
    let compressed = limits::check_all(bytes, true)?;
    decode_file_checked(payload)
        .map(|batches| (batches, compressed))
        .map_err(|e| e.to_string())
}

fn decode_file_checked(payload: &Buffer) -> Result<Vec<RecordBatch>, ArrowError> {
    let bytes = payload.as_slice();
    if bytes.len() < 8 + 10 {
        return Err(ArrowError::IpcError(format!(
            "file of {} bytes is too short for magic and footer",
            bytes.len()
        )));
    }
    let trailer_start = bytes.len() - 10;
    let trailer: [u8; 10] = bytes[trailer_start..]
        .try_into()
        .map_err(|_| ArrowError::IpcError("short trailer".into()))?;
    let footer_len = read_footer_length(trailer)?;
    if footer_len > trailer_start {
        return Err(ArrowError::IpcError(format!(
            "footer length {footer_len} exceeds the file of {} bytes",
            bytes.len()
        )));
    }
    let footer = root_as_footer(&bytes[trailer_start - footer_len..trailer_start])
        .map_err(|e| ArrowError::IpcError(format!("bad footer: {e}")))?;
    let schema = footer
        .schema()
        .ok_or_else(|| ArrowError::IpcError("footer has no schema".into()))?;
    let mut decoder = FileDecoder::new(Arc::new(fb_to_schema(schema)), footer.version());
    let block_buffer = |offset: i64, meta: i32, body: i64| -> Result<Buffer, ArrowError> {
        let start = usize::try_from(offset)
            .map_err(|_| ArrowError::IpcError("negative block offset".into()))?;
        // The file format puts every block on an 8-byte boundary (Arrow C++ refuses the rest:
        // "Unaligned block in IPC file"). arrow-rs reads one anyway, realigning most buffers
        // but panicking on some (a dense union's offsets), so whether such a block decoded
        // would depend on where the payload lies in memory.
        if offset % 8 != 0 || meta % 8 != 0 || body % 8 != 0 {
            return Err(ArrowError::IpcError(format!(
                "unaligned block in IPC file: offset {offset}, metadata {meta} bytes, body \
                 {body} bytes (each must be a multiple of 8)"
            )));
        }
        let len = (meta as i64 + body) as usize;
        if meta < 0 || body < 0 || start.checked_add(len).is_none_or(|end| end > bytes.len()) {
            return Err(ArrowError::IpcError(format!(
                "block at {offset} of {len} bytes lies outside the file of {} bytes",
                bytes.len()
            )));
        }
        Ok(payload.slice_with_length(start, len))
    };
    for block in footer.dictionaries().iter().flatten() {
        let buf = block_buffer(block.offset(), block.metaDataLength(), block.bodyLength())?;
        decoder.read_dictionary(block, &buf)?;
    }
    let mut batches = Vec::new();
    for block in footer.recordBatches().iter().flatten() {
        let buf = block_buffer(block.offset(), block.metaDataLength(), block.bodyLength())?;
        if let Some(b) = decoder.read_record_batch(block, &buf)? {
            batches.push(b);
        }
    }
    Ok(batches)
}

/// Classifies every buffer of `batches` as in the payload or copied.
fn measure(batches: &[RecordBatch], payload: &Buffer, compressed: bool) -> Copies {
    let base = payload.as_ptr() as usize;
    let range = base..base + payload.len();
    // Every buffer once, though batches and columns may share one (a dictionary, a slice):
    // (address, length) pairs, sorted and deduplicated.
    let mut spans = Vec::with_capacity(4 * batches.first().map_or(0, |b| b.num_columns()));
    for b in batches {
        for col in b.columns() {
            collect_array(col.as_ref(), &mut spans);
        }
    }
    spans.sort_unstable();
    spans.dedup();
    let (mut inside, mut outside) = (0u64, 0u64);
    for (p, len) in spans {
        if p >= range.start && p + len <= range.end {
            inside += len as u64;
        } else {
            outside += len as u64;
        }
    }
    let mut copies = Copies {
        in_place: inside,
        ..Default::default()
    };
    if outside > 0 {
        if compressed {
            copies.decompressed = outside;
        } else {
            copies.realigned = outside;
        }
    }
    copies
}

/// The (address, length) of every non-empty buffer of `array`, as [`collect`] finds them in
/// its `ArrayData`: read from the array itself for the types that make up most payloads
/// (building each column's `ArrayData` cost ~5,000 of the ~50,000 instructions decoding a
/// 16-row events message takes), through `ArrayData` for the others.
fn collect_array(array: &dyn Array, spans: &mut Vec<(usize, usize)>) {
    let mut add = |b: &Buffer| {
        if !b.is_empty() {
            spans.push((b.as_ptr() as usize, b.len()));
        }
    };
    match array.data_type() {
        DataType::Boolean => add(array.as_boolean().values().inner()),
        DataType::Utf8 => add_bytes(array.as_string::<i32>(), &mut add),
        DataType::LargeUtf8 => add_bytes(array.as_string::<i64>(), &mut add),
        DataType::Binary => add_bytes(array.as_binary::<i32>(), &mut add),
        DataType::LargeBinary => add_bytes(array.as_binary::<i64>(), &mut add),
        _ => downcast_primitive_array!(
            array => add(array.values().inner()),
            _ => return collect(&array.to_data(), spans)
        ),
    }
    // ArrayData keeps a validity bitmap only where a row is null.
    if let Some(n) = array.nulls().filter(|n| n.null_count() > 0) {
        add(n.buffer());
    }
}

fn add_bytes<T: ByteArrayType>(array: &GenericByteArray<T>, add: &mut impl FnMut(&Buffer)) {
    add(array.offsets().inner().inner());
    add(array.values());
}

/// The (address, length) of every non-empty buffer of `data` and its children.
fn collect(data: &ArrayData, spans: &mut Vec<(usize, usize)>) {
    let mut add = |ptr: *const u8, len: usize| {
        if len > 0 {
            spans.push((ptr as usize, len));
        }
    };
    for b in data.buffers() {
        add(b.as_ptr(), b.len());
    }
    if let Some(n) = data.nulls() {
        add(n.buffer().as_ptr(), n.buffer().len());
    }
    for child in data.child_data() {
        collect(child, spans);
    }
}

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
