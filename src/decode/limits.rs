//! Limits on what a payload may make sluice allocate: the sizes its compressed buffers
//! declare, checked before arrow-rs allocates them (a failed allocation aborts the process).
//! And its layout: every buffer on the 8-byte grid the IPC format puts it on, so that whether a
//! payload decodes does not depend on its address.

use std::ops::Range;

use arrow::error::ArrowError;
use arrow::ipc::reader::read_footer_length;
use arrow::ipc::{CompressionType, RecordBatch, root_as_footer, root_as_message};

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
pub(super) fn message_spans(bytes: &[u8], is_file: bool) -> Vec<(Range<usize>, usize)> {
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

/// The sizes the compressed buffers of one payload declare, checked batch by batch before
/// arrow-rs decompresses them: a buffer may not declare a negative size (other than the "stored
/// uncompressed" marker -1), more than [`MAX_DECOMPRESSED_BUFFER`], or more than its codec can
/// expand its compressed bytes to; the payload's buffers together may not declare more than
/// [`MAX_DECOMPRESSED_BUFFER`] or [`MAX_EXPANSION_ZSTD`] × the payload's length.
pub(super) struct Budget {
    total: i64,
    limit: i64,
    compressed: bool,
}

impl Budget {
    /// The budget of a payload of `len` bytes.
    pub(super) fn new(len: usize) -> Self {
        Budget {
            total: 0,
            limit: MAX_DECOMPRESSED_BUFFER
                .min(MAX_EXPANSION_ZSTD.saturating_mul(i64::try_from(len).unwrap_or(i64::MAX))),
            compressed: false,
        }
    }

    /// Whether any batch checked so far declared body compression.
    pub(super) fn compressed(&self) -> bool {
        self.compressed
    }

    /// Checks the record (or dictionary) batch `rb` of `bytes`, whose body starts at `body`.
    pub(super) fn check(
        &mut self,
        bytes: &[u8],
        rb: RecordBatch<'_>,
        body: usize,
    ) -> Result<(), String> {
        let Some(codec) = rb.compression().map(|c| c.codec()) else {
            return Ok(());
        };
        // arrow-rs refuses other codecs before decompressing anything.
        let (codec_name, expansion) = match codec {
            CompressionType::LZ4_FRAME => ("LZ4_FRAME", MAX_EXPANSION_LZ4),
            _ => ("ZSTD", MAX_EXPANSION_ZSTD),
        };
        self.compressed = true;
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
                return Err(format!(
                    "compressed buffer at body offset {} declares {declared} uncompressed bytes (limit {MAX_DECOMPRESSED_BUFFER})",
                    buf.offset()
                ));
            }
            // The compressed bytes after the prefix, as far as the payload has them.
            let available = at.map_or(0, |a| bytes.len().saturating_sub(a + 8));
            let compressed_len = (buf.length() - 8).min(available as i64);
            if declared > expansion.saturating_mul(compressed_len) {
                return Err(format!(
                    "compressed buffer at body offset {} declares {declared} uncompressed bytes from {compressed_len} compressed ({codec_name} expands at most {expansion}-fold)",
                    buf.offset()
                ));
            }
            self.total += declared.max(0);
            if self.total > self.limit {
                return Err(format!(
                    "compressed buffers declare {} uncompressed bytes or more in all (limit {})",
                    self.total, self.limit
                ));
            }
        }
        Ok(())
    }
}

/// Checks that every buffer of the record (or dictionary) batch `rb` starts a multiple of 8
/// bytes into its body, as the IPC format requires (Arrow C++ refuses the rest: "Buffer 4 did
/// not start on 8-byte aligned offset: 25"). arrow-rs reads such a buffer anyway, realigning
/// most but panicking on some (a dense union's offsets), so whether it decoded would depend on
/// where the payload lies in memory. Arrow C++ lets an empty buffer lie anywhere; sluice
/// refuses that too (arrow-rs slices an empty buffer at its offset like any other, and no
/// writer puts one off the grid).
pub(super) fn check_buffer_offsets(rb: RecordBatch<'_>) -> Result<(), String> {
    for (i, buf) in rb.buffers().iter().flatten().enumerate() {
        if buf.offset() % 8 != 0 {
            return Err(ArrowError::IpcError(format!(
                "unaligned buffer in IPC batch: buffer {i} at body offset {} (each must start \
                 at a multiple of 8)",
                buf.offset()
            ))
            .to_string());
        }
    }
    Ok(())
}

/// Checks every record and dictionary batch of the payload `bytes` (its layout on the 8-byte
/// grid, [`check_buffer_offsets`], and its compressed sizes, [`Budget`]) where arrow-rs will
/// read it, before anything is decoded; returns whether any is compressed. The
/// file format is checked so; the stream format batch by batch as sluice decodes it (and this
/// way only in the tests, as the reference the stream walker replaced).
pub(super) fn check_all(bytes: &[u8], is_file: bool) -> Result<bool, String> {
    let mut budget = Budget::new(bytes.len());
    for (meta, body) in message_spans(bytes, is_file) {
        let Ok(message) = root_as_message(&bytes[meta]) else {
            continue;
        };
        let batch = message
            .header_as_record_batch()
            .or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()));
        if let Some(rb) = batch {
            check_buffer_offsets(rb)?;
            budget.check(bytes, rb, body)?;
        }
    }
    Ok(budget.compressed())
}
