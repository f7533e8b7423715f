//! `decode`: Arrow IPC (stream or file format, optionally LZ4/ZSTD body-compressed) decoded in
//! place from a [`Buffer`] that wraps the Kafka payload. Batches reference the payload; buffers
//! arrow-rs had to copy (realignment, decompression) are measured per payload, never assumed.

use std::collections::HashSet;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arrow::array::{Array, ArrayData, RecordBatch};
use arrow::buffer::Buffer;
use arrow::error::ArrowError;
use arrow::ipc::convert::fb_to_schema;
use arrow::ipc::reader::{FileDecoder, StreamDecoder, read_footer_length};
use arrow::ipc::{CompressionType, root_as_footer, root_as_message};

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

/// Copies `payload` into a new 64-byte aligned buffer and decodes that in place: every buffer
/// is aligned, so arrow-rs copies nothing more, and the caller can release the payload at
/// once. The copy's buffers are counted as [`Copies::payload_copy`].
pub fn decode_copy(payload: &[u8]) -> (Buffer, Result<Decoded, DecodeError>) {
    let mut copy = arrow::buffer::MutableBuffer::with_capacity(payload.len());
    copy.extend_from_slice(payload);
    let copy: Buffer = copy.into();
    let decoded = decode(&copy).map(|mut d| {
        d.copies.payload_copy = std::mem::take(&mut d.copies.in_place);
        d
    });
    (copy, decoded)
}

/// Decodes a payload in place. Accepts IPC stream and IPC file format, any number of batches,
/// with or without body compression. Never panics on bad input.
pub fn decode(payload: &Buffer) -> Result<Decoded, DecodeError> {
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
    let compressed = check_compression(payload.as_slice(), is_file, format)?;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if is_file {
            decode_file(payload)
        } else {
            decode_stream(payload)
        }
    }));
    let message = match result {
        Ok(Ok(batches)) => {
            let copies = measure(&batches, payload, compressed);
            return Ok(Decoded { batches, copies });
        }
        Ok(Err(e)) => e.to_string(),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "decoder panicked".to_string()),
    };
    // arrow-rs realigns the buffers it finds misaligned, but not all of them (a dense union's
    // offsets: it panics), so a payload that fails in place where an aligned copy would not lie
    // is decoded once more from such a copy: whether it decodes does not depend on its address.
    if payload.as_ptr().align_offset(arrow::alloc::ALIGNMENT) != 0
        && let (_, Ok(decoded)) = decode_copy(payload.as_slice())
    {
        return Ok(decoded);
    }
    Err(DecodeError::Corrupt { format, message })
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

fn decode_stream(payload: &Buffer) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut decoder = StreamDecoder::new();
    let mut rest = payload.clone();
    let mut batches = Vec::new();
    while !rest.is_empty() {
        let before = rest.len();
        match decoder.decode(&mut rest)? {
            Some(b) => batches.push(b),
            // No progress: trailing bytes after the end-of-stream marker.
            None if rest.len() == before => break,
            None => {}
        }
    }
    decoder.finish()?;
    Ok(batches)
}

fn decode_file(payload: &Buffer) -> Result<Vec<RecordBatch>, ArrowError> {
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
    let mut seen = HashSet::new();
    let (mut inside, mut outside) = (0u64, 0u64);
    for b in batches {
        for col in b.columns() {
            walk(&col.to_data(), &range, &mut seen, &mut inside, &mut outside);
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

fn walk(
    data: &ArrayData,
    payload: &Range<usize>,
    seen: &mut HashSet<(usize, usize)>,
    inside: &mut u64,
    outside: &mut u64,
) {
    let mut classify = |ptr: *const u8, len: usize| {
        if len == 0 || !seen.insert((ptr as usize, len)) {
            return;
        }
        let p = ptr as usize;
        if p >= payload.start && p + len <= payload.end {
            *inside += len as u64;
        } else {
            *outside += len as u64;
        }
    };
    for b in data.buffers() {
        classify(b.as_ptr(), b.len());
    }
    if let Some(n) = data.nulls() {
        classify(n.buffer().as_ptr(), n.buffer().len());
    }
    for child in data.child_data() {
        walk(child, payload, seen, inside, outside);
    }
}

/// Largest uncompressed size a compressed buffer may declare, and all the compressed buffers
/// of a payload together. arrow-rs allocates the declared size before decompressing, and a
/// failed allocation aborts the process, so a corrupt length must be rejected before decoding.
pub const MAX_DECOMPRESSED_BUFFER: i64 = 1 << 30;

/// The most a compressed buffer can expand, by codec: an LZ4 frame just under 255-fold (a
/// match-length byte stands for at most 255 bytes), a ZSTD frame 32,768-fold (an RLE block of 4
/// bytes stands for at most 128 KiB). A buffer declaring more is corrupt; the declared sizes of
/// a payload add up to at most [`MAX_EXPANSION_ZSTD`] × its length (and
/// [`MAX_DECOMPRESSED_BUFFER`]).
pub const MAX_EXPANSION_LZ4: i64 = 255;
/// See [`MAX_EXPANSION_LZ4`].
pub const MAX_EXPANSION_ZSTD: i64 = 32_768;

/// Where the IPC messages of a payload are: (metadata flatbuffer range, body start). For the
/// file format the footer's blocks are authoritative; a stream is walked message by message.
/// Framing errors end the list early; the decoder reports them.
fn message_spans(bytes: &[u8], is_file: bool) -> Vec<(Range<usize>, usize)> {
    let word = |at: usize| -> Option<i32> {
        bytes
            .get(at..at.checked_add(4)?)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    // One message at `pos`: (metadata range, body start), if its framing is in bounds.
    let frame = |pos: usize| -> Option<(Range<usize>, usize)> {
        let (len, header) = match word(pos)? {
            -1 => (word(pos + 4)?, 8),
            n => (n, 4),
        };
        let start = pos.checked_add(header)?;
        let end = start.checked_add(usize::try_from(len).ok().filter(|l| *l > 0)?)?;
        (end <= bytes.len()).then_some((start..end, end))
    };
    let mut spans = Vec::new();
    if is_file {
        let Some(trailer_start) = bytes.len().checked_sub(10) else {
            return spans;
        };
        let Ok(footer_len) =
            read_footer_length(bytes[trailer_start..].try_into().unwrap_or([0; 10]))
        else {
            return spans;
        };
        let Some(footer) = trailer_start
            .checked_sub(footer_len)
            .and_then(|s| root_as_footer(&bytes[s..trailer_start]).ok())
        else {
            return spans;
        };
        let blocks = footer
            .dictionaries()
            .into_iter()
            .flatten()
            .chain(footer.recordBatches().into_iter().flatten());
        for block in blocks {
            // The message and its body where arrow-rs's FileDecoder takes them from: the
            // metadata flatbuffer is read from after the block's length prefix to the block's
            // end (the prefix's length is not used, so a crafted file can make the flatbuffer
            // reach into the body), and the body starts at the block's offset plus the footer's
            // metadata length. Blocks outside the file are decode_file's error.
            let (Ok(start), Ok(meta), Ok(body)) = (
                usize::try_from(block.offset()),
                usize::try_from(block.metaDataLength()),
                usize::try_from(block.bodyLength()),
            ) else {
                continue;
            };
            let Some(end) = start
                .checked_add(meta)
                .and_then(|m| m.checked_add(body))
                .filter(|e| *e <= bytes.len())
            else {
                continue;
            };
            let header = match word(start) {
                Some(-1) => 8,
                Some(_) => 4,
                None => continue,
            };
            if start + header <= end {
                spans.push((start + header..end, start + meta));
            }
        }
    } else {
        let mut pos = 0;
        while let Some((meta, body)) = frame(pos) {
            let Ok(message) = root_as_message(&bytes[meta.clone()]) else {
                break;
            };
            spans.push((meta, body));
            pos = body.saturating_add(message.bodyLength().max(0) as usize);
        }
    }
    spans
}

/// Returns whether any record or dictionary batch declares body compression, and rejects
/// compressed buffers whose declared uncompressed size is negative (other than the "stored
/// uncompressed" marker -1), above [`MAX_DECOMPRESSED_BUFFER`] or more than their codec can
/// expand their compressed bytes to, and payloads whose buffers declare more in all than
/// [`MAX_DECOMPRESSED_BUFFER`] or [`MAX_EXPANSION_ZSTD`] × the payload's length.
fn check_compression(
    bytes: &[u8],
    is_file: bool,
    format: &'static str,
) -> Result<bool, DecodeError> {
    let mut compressed = false;
    let mut total: i64 = 0;
    let total_limit = MAX_DECOMPRESSED_BUFFER
        .min(MAX_EXPANSION_ZSTD.saturating_mul(i64::try_from(bytes.len()).unwrap_or(i64::MAX)));
    for (meta, body) in message_spans(bytes, is_file) {
        let Ok(message) = root_as_message(&bytes[meta]) else {
            continue;
        };
        let batch = message
            .header_as_record_batch()
            .or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()));
        let Some((rb, codec)) = batch.and_then(|rb| Some((rb, rb.compression()?.codec()))) else {
            continue;
        };
        // arrow-rs refuses other codecs before decompressing anything.
        let (codec_name, expansion) = match codec {
            CompressionType::LZ4_FRAME => ("LZ4_FRAME", MAX_EXPANSION_LZ4),
            _ => ("ZSTD", MAX_EXPANSION_ZSTD),
        };
        compressed = true;
        for buf in rb.buffers().iter().flatten() {
            if buf.length() < 8 {
                continue;
            }
            let at = usize::try_from(buf.offset())
                .ok()
                .and_then(|o| body.checked_add(o));
            let Some(prefix) = at.and_then(|a| bytes.get(a..a.checked_add(8)?)) else {
                continue;
            };
            let declared = i64::from_le_bytes(prefix.try_into().unwrap_or_default());
            if !(-1..=MAX_DECOMPRESSED_BUFFER).contains(&declared) {
                return Err(DecodeError::Corrupt {
                    format,
                    message: format!(
                        "compressed buffer at body offset {} declares {declared} uncompressed bytes (limit {MAX_DECOMPRESSED_BUFFER})",
                        buf.offset()
                    ),
                });
            }
            // The compressed bytes after the prefix, as far as the payload has them.
            let available = at.map_or(0, |a| bytes.len().saturating_sub(a + 8));
            let compressed_len = (buf.length() - 8).min(available as i64);
            if declared > expansion.saturating_mul(compressed_len) {
                return Err(DecodeError::Corrupt {
                    format,
                    message: format!(
                        "compressed buffer at body offset {} declares {declared} uncompressed bytes from {compressed_len} compressed ({codec_name} expands at most {expansion}-fold)",
                        buf.offset()
                    ),
                });
            }
            total += declared.max(0);
            if total > total_limit {
                return Err(DecodeError::Corrupt {
                    format,
                    message: format!(
                        "compressed buffers declare {total} uncompressed bytes or more in all (limit {total_limit})"
                    ),
                });
            }
        }
    }
    Ok(compressed)
}

#[cfg(test)]
mod tests;
