use super::*;
use arrow::array::{Int64Array, StringArray};
use arrow::buffer::MutableBuffer;
use arrow::datatypes::{DataType, Field, Schema};
use sluice_producer::{BodyCompression, Encoding, IpcFormat, encode};

/// 100 rows: Int64 values (800 bytes) and Utf8 "abc" strings (404 bytes of offsets, 300 bytes of
/// values). No nulls, so no validity buffers: 1504 buffer bytes in all.
fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..100)),
            Arc::new(StringArray::from(vec!["abc"; 100])),
        ],
    )
    .unwrap()
}

/// `bytes` placed at `offset` bytes past a 64-byte aligned address.
fn placed(bytes: &[u8], offset: usize) -> Buffer {
    let mut m = MutableBuffer::new(bytes.len() + offset);
    m.extend_from_slice(&vec![0u8; offset]);
    m.extend_from_slice(bytes);
    Buffer::from(m).slice(offset)
}

fn enc(format: IpcFormat, compression: BodyCompression, batches: &[RecordBatch]) -> Vec<u8> {
    encode(
        batches,
        Encoding {
            format,
            compression,
        },
    )
    .unwrap()
}

#[test]
fn aligned_payload_decodes_entirely_in_place() {
    for format in [IpcFormat::Stream, IpcFormat::File] {
        let bytes = enc(format, BodyCompression::None, &[batch()]);
        let d = decode(&placed(&bytes, 0)).unwrap();
        assert_eq!(d.batches, vec![batch()], "{format:?}");
        assert_eq!(
            d.copies,
            Copies {
                in_place: 1504,
                realigned: 0,
                decompressed: 0,
                payload_copy: 0,
            },
            "{format:?}"
        );
    }
}

#[test]
fn misaligned_payload_realigns_only_what_needs_alignment() {
    for format in [IpcFormat::Stream, IpcFormat::File] {
        let bytes = enc(format, BodyCompression::None, &[batch()]);
        let d = decode(&placed(&bytes, 1)).unwrap();
        assert_eq!(d.batches, vec![batch()], "{format:?}");
        // Int64 values (800) and i32 offsets (404) are copied; UTF-8 bytes (300) stay put.
        assert_eq!(
            d.copies,
            Copies {
                in_place: 300,
                realigned: 1204,
                decompressed: 0,
                payload_copy: 0,
            },
            "{format:?}"
        );
    }
}

#[test]
fn a_copied_misaligned_payload_is_decoded_whole_from_the_aligned_copy() {
    for format in [IpcFormat::Stream, IpcFormat::File] {
        let bytes = enc(format, BodyCompression::None, &[batch()]);
        let misplaced = placed(&bytes, 1);
        let (copy, d) = decode_copy(misplaced.as_slice());
        let d = d.unwrap();
        assert_eq!(d.batches, vec![batch()], "{format:?}");
        assert_eq!(copy.as_slice(), &bytes[..], "{format:?}");
        assert_eq!(copy.as_ptr() as usize % 64, 0, "{format:?}");
        // Every buffer lives in the copy: nothing realigned, nothing in the original payload.
        assert_eq!(
            d.copies,
            Copies {
                in_place: 0,
                realigned: 0,
                decompressed: 0,
                payload_copy: 1504,
            },
            "{format:?}"
        );
        assert_eq!(d.copies.data(), 1504);
        assert_eq!(d.copies.copied(), 0);
    }
    // Bad input keeps its error text.
    let (_, e) = decode_copy(b"not arrow at all");
    assert_eq!(
        e.unwrap_err().to_string(),
        "not Arrow IPC: payload of 16 bytes starts with 6e 6f 74 20 61 72 72 6f"
    );
}

#[test]
fn compressed_payload_counts_decompressed_bytes() {
    // arrow-rs's writer stores a buffer uncompressed when compressing would not shrink it (the
    // i32 offsets under LZ4 here); such a buffer is decoded in place like any other.
    for format in [IpcFormat::Stream, IpcFormat::File] {
        for compression in [BodyCompression::Lz4, BodyCompression::Zstd] {
            let bytes = enc(format, compression, &[batch()]);
            let d = decode(&placed(&bytes, 0)).unwrap();
            assert_eq!(d.batches, vec![batch()], "{format:?} {compression:?}");
            let want = match compression {
                BodyCompression::Lz4 => Copies {
                    in_place: 404,
                    realigned: 0,
                    decompressed: 1100,
                    payload_copy: 0,
                },
                _ => Copies {
                    in_place: 0,
                    realigned: 0,
                    decompressed: 1504,
                    payload_copy: 0,
                },
            };
            assert_eq!(d.copies, want, "{format:?} {compression:?}");
        }
    }
}

#[test]
fn several_batches_per_message() {
    let b = batch();
    for format in [IpcFormat::Stream, IpcFormat::File] {
        let bytes = enc(
            format,
            BodyCompression::None,
            &[b.clone(), b.slice(10, 5), b.clone()],
        );
        let d = decode(&placed(&bytes, 0)).unwrap();
        assert_eq!(d.batches.len(), 3);
        assert_eq!(d.rows(), 205);
        assert_eq!(d.batches[1], b.slice(10, 5));
    }
}

#[test]
fn empty_and_non_arrow_payloads_are_named() {
    assert_eq!(
        decode(&Buffer::from(Vec::<u8>::new())).unwrap_err(),
        DecodeError::Empty
    );
    let e = decode(&Buffer::from(b"{\"event\": \"x\"}".to_vec())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not Arrow IPC: payload of 14 bytes starts with 7b 22 65 76 65 6e 74 22"
    );
    assert_eq!(
        decode(&Buffer::from(b"hi".to_vec()))
            .unwrap_err()
            .to_string(),
        "not Arrow IPC: payload of 2 bytes starts with 68 69"
    );
}

#[test]
fn absurd_decompressed_length_is_rejected_before_allocating() {
    let mut bytes = enc(IpcFormat::Stream, BodyCompression::Zstd, &[batch()]);
    // The first compressed buffer's 8-byte length prefix starts the record batch body.
    let spans = message_spans(&bytes, false);
    let body = spans[1].1;
    bytes[body..body + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
    assert_eq!(
        decode(&placed(&bytes, 0)).unwrap_err().to_string(),
        "corrupt Arrow IPC stream: compressed buffer at body offset 0 declares 1099511627776 uncompressed bytes (limit 1073741824)"
    );
}

#[test]
fn a_file_whose_footer_moves_the_body_is_checked_where_arrow_reads_it() {
    // The footer's block says the metadata is 8 bytes longer than the message's own length
    // prefix does: arrow-rs reads the body 8 bytes later, where a huge length now waits.
    let mut bytes = enc(IpcFormat::File, BodyCompression::Zstd, &[batch()]);
    let trailer = bytes.len() - 10;
    let footer_len = read_footer_length(bytes[trailer..].try_into().unwrap()).unwrap();
    let (offset, meta, body) = {
        let footer = root_as_footer(&bytes[trailer - footer_len..trailer]).unwrap();
        let block = footer.recordBatches().unwrap().get(0);
        (block.offset(), block.metaDataLength(), block.bodyLength())
    };
    let mut pattern = offset.to_le_bytes().to_vec();
    pattern.extend(meta.to_le_bytes());
    let at = (trailer - footer_len..trailer)
        .find(|&i| bytes[i..].starts_with(&pattern))
        .expect("the block struct in the footer");
    bytes[at + 8..at + 12].copy_from_slice(&(meta + 8).to_le_bytes());
    bytes[at + 16..at + 24].copy_from_slice(&(body - 8).to_le_bytes());
    let moved = offset as usize + meta as usize + 8;
    bytes[moved..moved + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
    assert_eq!(
        decode(&placed(&bytes, 0)).unwrap_err().to_string(),
        "corrupt Arrow IPC file: compressed buffer at body offset 0 declares 1099511627776 uncompressed bytes (limit 1073741824)"
    );
}

#[test]
fn a_file_message_is_checked_as_arrow_reads_it_whatever_its_length_prefix_says() {
    // Found by the decode_compressed fuzz target: arrow-rs's FileDecoder reads a block's message
    // flatbuffer from after the length prefix to the block's end and never uses the prefix's
    // length; the check read only as far as the prefix said, so a file whose prefix said 8 bytes
    // hid its record batch from the check, and a declared size of 0x5404000000000000 bytes
    // reached the allocator, which aborted the process.
    let mut bytes = enc(IpcFormat::File, BodyCompression::Zstd, &[batch()]);
    let trailer = bytes.len() - 10;
    let footer_len = read_footer_length(bytes[trailer..].try_into().unwrap()).unwrap();
    let (start, meta) = {
        let footer = root_as_footer(&bytes[trailer - footer_len..trailer]).unwrap();
        let block = footer.recordBatches().unwrap().get(0);
        (block.offset() as usize, block.metaDataLength() as usize)
    };
    assert_eq!(bytes[start..start + 4], [0xff; 4], "continuation marker");
    let (first, _) = compressed_buffers(&bytes[start + 8..start + meta])[0];
    bytes[start + 4..start + 8].copy_from_slice(&8i32.to_le_bytes());
    let at = start + meta + first;
    bytes[at..at + 8].copy_from_slice(&(MAX_DECOMPRESSED_BUFFER + 1).to_le_bytes());
    assert_eq!(
        decode(&placed(&bytes, 0)).unwrap_err().to_string(),
        format!(
            "corrupt Arrow IPC file: compressed buffer at body offset {first} declares 1073741825 uncompressed bytes (limit 1073741824)"
        )
    );
}

#[test]
fn compressed_buffers_may_not_declare_more_than_the_limit_together() {
    // Two columns of 100,000 random integers: ZSTD cannot shrink them, so each is stored raw
    // (length prefix -1) in a buffer of 800,008 bytes, long enough for 1 GiB under ZSTD's
    // expansion bound (32,768 × 800,000).
    let mut rng = fastrand::Rng::with_seed(14);
    let column = |rng: &mut fastrand::Rng| -> Arc<dyn Array> {
        Arc::new(Int64Array::from_iter_values(
            (0..100_000).map(|_| rng.i64(..)),
        ))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Int64, false),
    ]));
    let big = RecordBatch::try_new(schema, vec![column(&mut rng), column(&mut rng)]).unwrap();
    let mut bytes = enc(IpcFormat::Stream, BodyCompression::Zstd, &[big]);
    let spans = message_spans(&bytes, false);
    let body = spans[1].1;
    // Each at the limit: the second one's pushes the payload's total over it.
    for (o, _) in compressed_buffers(&bytes[spans[1].0.clone()]) {
        let at = body + o;
        bytes[at..at + 8].copy_from_slice(&MAX_DECOMPRESSED_BUFFER.to_le_bytes());
    }
    assert_eq!(
        decode(&placed(&bytes, 0)).unwrap_err().to_string(),
        "corrupt Arrow IPC stream: compressed buffers declare 2147483648 uncompressed bytes or more in all (limit 1073741824)"
    );
}

/// (body offset, length) of each buffer of the record batch message `meta` (its flatbuffer)
/// that is long enough to hold a compressed buffer's 8-byte length prefix.
fn compressed_buffers(meta: &[u8]) -> Vec<(usize, usize)> {
    let message = root_as_message(meta).unwrap();
    let rb = message.header_as_record_batch().unwrap();
    (rb.buffers().unwrap().iter())
        .filter(|b| b.length() >= 8)
        .map(|b| (b.offset() as usize, b.length() as usize))
        .collect()
}

/// The payload offset of the first compressed buffer of the stream's record batch, and its
/// length.
fn first_compressed_buffer(bytes: &[u8]) -> (usize, usize) {
    let spans = message_spans(bytes, false);
    let (offset, length) = compressed_buffers(&bytes[spans[1].0.clone()])[0];
    (spans[1].1 + offset, length)
}

#[test]
fn a_buffer_may_not_declare_more_than_its_codec_can_expand_to() {
    // Found by the decode_compressed fuzz target: a payload of 2 KiB could declare 1 GiB
    // (the old limit, which held for any payload length), and arrow-rs allocated it whole
    // before decompressing. Now a buffer may declare at most 255 × its compressed length under
    // LZ4 and 32,768 × under ZSTD, the most either codec can expand.
    for (compression, codec, ratio) in [
        (BodyCompression::Lz4, "LZ4_FRAME", 255),
        (BodyCompression::Zstd, "ZSTD", 32_768),
    ] {
        let mut bytes = enc(IpcFormat::Stream, compression, &[batch()]);
        let (at, len) = first_compressed_buffer(&bytes);
        let compressed = len as i64 - 8;
        let most = ratio * compressed;
        bytes[at..at + 8].copy_from_slice(&(most + 1).to_le_bytes());
        assert_eq!(
            decode(&placed(&bytes, 0)).unwrap_err().to_string(),
            format!(
                "corrupt Arrow IPC stream: compressed buffer at body offset 0 declares {} uncompressed bytes from {compressed} compressed ({codec} expands at most {ratio}-fold)",
                most + 1
            ),
            "{compression:?}"
        );
        // 1 GiB from a few hundred bytes: refused before anything is allocated.
        bytes[at..at + 8].copy_from_slice(&MAX_DECOMPRESSED_BUFFER.to_le_bytes());
        assert_eq!(
            decode(&placed(&bytes, 0)).unwrap_err().to_string(),
            format!(
                "corrupt Arrow IPC stream: compressed buffer at body offset 0 declares 1073741824 uncompressed bytes from {compressed} compressed ({codec} expands at most {ratio}-fold)"
            ),
            "{compression:?}"
        );
    }
}

#[test]
fn a_misaligned_dense_union_decodes_as_an_aligned_one_does() {
    // Found by the decode_stream fuzz target (the seed itself): arrow-rs 58 realigns misaligned
    // buffers but takes a dense union's i32 offsets as they lie, and panics ("Memory pointer is
    // not aligned with the specified scalar type") when they are not 4-byte aligned. In place at
    // an odd address the payload was quarantined as corrupt; as a copy it decoded.
    use arrow::array::UnionArray;
    use arrow::buffer::ScalarBuffer;
    use arrow::datatypes::UnionFields;
    let fields = UnionFields::try_new(
        [0, 1],
        [
            Field::new("i", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ],
    )
    .unwrap();
    let union = UnionArray::try_new(
        fields,
        ScalarBuffer::from(vec![0i8, 1, 0, 1, 1]),
        Some(ScalarBuffer::from(vec![0i32, 0, 1, 1, 2])),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "u",
        union.data_type().clone(),
        false,
    )]));
    let b = RecordBatch::try_new(schema, vec![Arc::new(union)]).unwrap();
    for format in [IpcFormat::Stream, IpcFormat::File] {
        let bytes = enc(format, BodyCompression::None, std::slice::from_ref(&b));
        for offset in [0, 1] {
            let d = decode(&placed(&bytes, offset)).unwrap();
            assert_eq!(d.batches, vec![b.clone()], "{format:?} at offset {offset}");
            // In place, or (misaligned) decoded from an aligned copy of the payload.
            let in_payload = if offset == 0 {
                d.copies.in_place
            } else {
                d.copies.payload_copy
            };
            assert_eq!(
                in_payload,
                5 + 20 + 16 + 16 + 3,
                "{format:?} at offset {offset}"
            );
        }
    }
}

#[test]
fn truncated_and_corrupt_payloads_error_without_panicking() {
    for format in [IpcFormat::Stream, IpcFormat::File] {
        let bytes = enc(format, BodyCompression::Zstd, &[batch(), batch()]);
        let mut errors = 0;
        // Every strict prefix, and every single-byte corruption, decodes to Ok or Err: no panic.
        for cut in 1..bytes.len() {
            if decode(&placed(&bytes[..cut], 0)).is_err() {
                errors += 1;
            }
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            let _ = decode(&placed(&b, 0));
        }
        // A file cut anywhere loses its trailer; a stream cut inside a message is incomplete.
        assert!(
            errors > bytes.len() / 2,
            "{format:?}: only {errors} of {} prefixes failed",
            bytes.len()
        );
    }
    let bytes = enc(IpcFormat::Stream, BodyCompression::None, &[batch()]);
    let cut = bytes.len() - 100;
    match decode(&placed(&bytes[..cut], 0)).unwrap_err() {
        DecodeError::Corrupt { format, .. } => assert_eq!(format, "stream"),
        other => panic!("unexpected {other:?}"),
    }
    let bytes = enc(IpcFormat::File, BodyCompression::None, &[batch()]);
    match decode(&placed(&bytes[..bytes.len() - 3], 0)).unwrap_err() {
        DecodeError::Corrupt { format, .. } => assert_eq!(format, "file"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn payloads_of_a_schema_found_mostly_realigned_are_decoded_from_an_aligned_copy() {
    let ints = |n: i64| {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
    };
    let texts = |n: usize| {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
        let long = "x".repeat(100);
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![long; n]))]).unwrap()
    };
    let mut decoder = Decoder::new();
    // 100 Int64 values. Aligned: in place, and nothing learnt (nothing to realign).
    let bytes = enc(IpcFormat::Stream, BodyCompression::None, &[ints(100)]);
    let aligned = placed(&bytes, 0);
    let (held, d) = decoder.decode_payload(aligned.clone());
    assert_eq!(held.as_ptr(), aligned.as_ptr());
    assert_eq!(d.unwrap().copies.in_place, 800);
    // 4 bytes past an aligned address all 800 bytes are realigned: in place this once.
    let first = placed(&bytes, 4);
    let (held, d) = decoder.decode_payload(first.clone());
    assert_eq!(held.as_ptr(), first.as_ptr());
    assert_eq!(d.unwrap().copies.realigned, 800);
    // From then on every payload of the schema is decoded from a copy, aligned ones too.
    for offset in [4, 0, 1] {
        let p = placed(&bytes, offset);
        let (held, d) = decoder.decode_payload(p.clone());
        let d = d.unwrap();
        assert_ne!(held.as_ptr(), p.as_ptr(), "offset {offset}");
        assert_eq!(held.as_ptr().align_offset(64), 0);
        assert_eq!(
            d.copies,
            Copies {
                payload_copy: 800,
                ..Default::default()
            }
        );
        assert_eq!(d.batches, vec![ints(100)]);
    }
    // 50 strings of 100 bytes: at an odd address only the 204 bytes of offsets are realigned
    // (4%), so such payloads stay in place.
    let bytes = enc(IpcFormat::Stream, BodyCompression::None, &[texts(50)]);
    for _ in 0..2 {
        let p = placed(&bytes, 1);
        let (held, d) = decoder.decode_payload(p.clone());
        assert_eq!(held.as_ptr(), p.as_ptr());
        let c = d.unwrap().copies;
        assert_eq!((c.in_place, c.realigned), (5000, 204));
    }
}

#[test]
fn buffers_read_from_the_arrays_are_those_their_array_data_holds() {
    use arrow::array::{ArrayRef, BooleanArray, DictionaryArray, LargeBinaryArray, ListArray};
    use arrow::datatypes::{Int8Type, Int32Type};
    use sluice_producer::events::{Dataset, EventGen};
    let spans = |batches: &[RecordBatch], fast: bool| {
        let mut spans = Vec::new();
        for col in batches.iter().flat_map(|b| b.columns()) {
            if fast {
                collect_array(col.as_ref(), &mut spans);
            } else {
                collect(&col.to_data(), &mut spans);
            }
        }
        spans.sort_unstable();
        spans
    };
    let mut g = EventGen::new(3);
    // Events (Int64, Utf8, timestamps, Int32, nullable Int64 and Float64, Boolean) and narrow
    // rows, decoded in place at aligned and misaligned addresses, whole and sliced.
    for batch in [
        Dataset::Events.generate(&mut g, 16),
        Dataset::Narrow.generate(&mut g, 1000),
    ] {
        let bytes = enc(IpcFormat::Stream, BodyCompression::None, &[batch]);
        for offset in [0, 1, 4] {
            let d = decode(&placed(&bytes, offset)).unwrap();
            assert_eq!(
                spans(&d.batches, true),
                spans(&d.batches, false),
                "{offset}"
            );
            let sliced: Vec<RecordBatch> = d.batches.iter().map(|b| b.slice(3, 9)).collect();
            assert_eq!(spans(&sliced, true), spans(&sliced, false), "{offset}");
        }
    }
    // Types read through ArrayData, and a boolean and large binary column with nulls.
    let other = RecordBatch::try_from_iter([
        (
            "list",
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
                (0..50).map(|i| Some(vec![Some(i); i as usize % 3])),
            )) as ArrayRef,
        ),
        (
            "dict",
            Arc::new(DictionaryArray::<Int8Type>::from_iter(
                (0..50).map(|i| (i % 4 != 0).then_some(["a", "b"][i % 2])),
            )),
        ),
        (
            "flag",
            Arc::new(BooleanArray::from_iter(
                (0..50).map(|i| (i % 3 != 0).then_some(i % 2 == 0)),
            )),
        ),
        (
            "blob",
            Arc::new(LargeBinaryArray::from_iter(
                (0..50).map(|i| (i % 5 != 0).then(|| vec![1u8; i])),
            )),
        ),
    ])
    .unwrap();
    let bytes = enc(IpcFormat::Stream, BodyCompression::None, &[other]);
    let d = decode(&placed(&bytes, 4)).unwrap();
    assert_eq!(spans(&d.batches, true), spans(&d.batches, false));
    // Validity bitmaps count only where a row is null (as ArrayData keeps them).
    let no_nulls = d.batches[0].slice(1, 2);
    let no_nulls = std::slice::from_ref(&no_nulls);
    assert_eq!(spans(no_nulls, true), spans(no_nulls, false));
}

#[test]
fn a_file_block_off_the_8_byte_grid_is_corrupt_wherever_the_payload_lies() {
    // A valid file with 4 bytes inserted before its record batch, and the footer's block
    // offset moved with it: every byte arrow-rs reads is still there, 4 bytes later. The fuzzer
    // found such a file (with a dense union) that decoded at an odd address but not from an
    // aligned copy; Arrow C++ refuses it ("Unaligned block in IPC file").
    let bytes = enc(IpcFormat::File, BodyCompression::None, &[batch()]);
    let footer_len = read_footer_length(bytes[bytes.len() - 10..].try_into().unwrap()).unwrap();
    let footer_start = bytes.len() - 10 - footer_len;
    let block = root_as_footer(&bytes[footer_start..bytes.len() - 10])
        .unwrap()
        .recordBatches()
        .unwrap()
        .get(0);
    let (offset, meta) = (block.offset() as usize, block.metaDataLength());
    assert_eq!(offset % 8, 0);
    // The block struct in the footer: offset (i64), metadata length (i32).
    let mut needle = (offset as i64).to_le_bytes().to_vec();
    needle.extend_from_slice(&meta.to_le_bytes());
    let at = footer_start
        + bytes[footer_start..]
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
    let mut moved = bytes[..offset].to_vec();
    moved.extend_from_slice(&[0; 4]);
    moved.extend_from_slice(&bytes[offset..]);
    moved[at + 4..at + 12].copy_from_slice(&(offset as i64 + 4).to_le_bytes());
    let expected = DecodeError::Corrupt {
        format: "file",
        message: format!(
            "Ipc error: unaligned block in IPC file: offset {}, metadata {meta} bytes, body {} \
             bytes (each must be a multiple of 8)",
            offset + 4,
            block.bodyLength()
        ),
    };
    let mut decoder = Decoder::new();
    for place in [0, 1, 4] {
        assert_eq!(
            decode(&placed(&moved, place)).unwrap_err(),
            expected,
            "{place}"
        );
    }
    assert_eq!(decoder.decode_copy(&moved).1.unwrap_err(), expected);
    // The same file with its block where the footer first said decodes.
    assert_eq!(decode(&placed(&bytes, 1)).unwrap().batches, vec![batch()]);
}

/// `bytes` with the 16-byte Buffer struct (offset, length) `from` in its metadata made `to`.
fn move_buffer(bytes: &[u8], from: (i64, i64), to: (i64, i64)) -> Vec<u8> {
    let needle = [from.0.to_le_bytes(), from.1.to_le_bytes()].concat();
    let at = bytes.windows(16).position(|w| w == needle).unwrap();
    assert_eq!(
        bytes[at + 1..].windows(16).position(|w| w == needle),
        None,
        "one such buffer"
    );
    let mut moved = bytes.to_vec();
    moved[at..at + 16].copy_from_slice(&[to.0.to_le_bytes(), to.1.to_le_bytes()].concat());
    moved
}

#[test]
fn a_buffer_off_the_8_byte_grid_is_corrupt_wherever_the_payload_lies() {
    // Found by the decode_file fuzz target: a block on the grid, but a (dense union) buffer in it
    // at body offset 3, which decoded at an odd address but not from an aligned copy. Arrow C++
    // refuses it ("Buffer 0 did not start on 8-byte aligned offset: 3"). Here the strings'
    // values (300 bytes, the batch's fifth buffer) are said to start one byte later: arrow-rs
    // reads "bca…" from there, still valid UTF-8 within the body's padding.
    for (format, name) in [(IpcFormat::Stream, "stream"), (IpcFormat::File, "file")] {
        let bytes = enc(format, BodyCompression::None, &[batch()]);
        let values = {
            // The record batch: the last message of either format.
            let spans = message_spans(&bytes, format == IpcFormat::File);
            let meta = &bytes[spans.last().unwrap().0.clone()];
            let message = root_as_message(meta).unwrap();
            let buffers = message.header_as_record_batch().unwrap().buffers().unwrap();
            assert_eq!(buffers.len(), 5);
            (buffers.get(4).offset(), buffers.get(4).length())
        };
        assert_eq!((values.0 % 8, values.1), (0, 300));
        let moved = move_buffer(&bytes, values, (values.0 + 1, 300));
        let expected = DecodeError::Corrupt {
            format: name,
            message: format!(
                "Ipc error: unaligned buffer in IPC batch: buffer 4 at body offset {} (each \
                 must start at a multiple of 8)",
                values.0 + 1
            ),
        };
        for place in [0, 1, 3, 4] {
            assert_eq!(
                decode(&placed(&moved, place)).unwrap_err(),
                expected,
                "{name} at {place}"
            );
        }
        assert_eq!(Decoder::new().decode_copy(&moved).1.unwrap_err(), expected);
        // Where the buffer was, it decodes.
        let back = move_buffer(&moved, (values.0 + 1, 300), values);
        assert_eq!(decode(&placed(&back, 1)).unwrap().batches, vec![batch()]);
    }
}

#[test]
fn a_stream_body_off_the_8_byte_grid_is_read_from_an_aligned_copy_wherever_the_payload_lies() {
    // The record batch's flatbuffer with 4 bytes after it, and its length prefix saying so: the
    // body starts 4 bytes off the grid, so every buffer in it does. Arrow C++ reads such a stream
    // (pyarrow 26 does); sluice reads the body from an aligned copy, wherever the payload lies,
    // rather than in place where the address happens to make up for the 4 bytes.
    let bytes = enc(IpcFormat::Stream, BodyCompression::None, &[batch()]);
    let spans = message_spans(&bytes, false);
    let (meta, body) = spans[1].clone();
    assert_eq!(body % 8, 0);
    let mut moved = bytes[..meta.start - 4].to_vec();
    moved.extend_from_slice(&(meta.len() as i32 + 4).to_le_bytes());
    moved.extend_from_slice(&bytes[meta.clone()]);
    moved.extend_from_slice(&[0; 4]);
    moved.extend_from_slice(&bytes[body..]);
    let copied = Copies {
        in_place: 0,
        realigned: 1504,
        decompressed: 0,
        payload_copy: 0,
    };
    for place in [0, 1, 4] {
        let d = decode(&placed(&moved, place)).unwrap();
        assert_eq!(d.batches, vec![batch()], "{place}");
        assert_eq!(d.copies, copied, "{place}");
    }
    let d = Decoder::new().decode_copy(&moved).1.unwrap();
    assert_eq!((d.batches, d.copies), (vec![batch()], copied));
}
