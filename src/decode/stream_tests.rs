//! sluice's stream walker against arrow-rs's `StreamDecoder`, which it replaced: on valid
//! payloads and on thousands of truncated and corrupted ones, both must accept the same
//! payloads with the same batches and refuse the same ones with the same words; and a schema
//! found among the remembered ones must give what parsing it gives.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arrow::array::{DictionaryArray, Int64Array, RecordBatch, StringArray};
use arrow::buffer::{Buffer, MutableBuffer};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use arrow::ipc::MetadataVersion;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use sluice_producer::{BodyCompression, Encoding, IpcFormat, encode};

use super::limits::check_all;
use super::stream::{self, Schemas};

/// What sluice did before the walker: the compression check over the framing, then arrow-rs's
/// StreamDecoder fed the whole payload.
fn reference(payload: &Buffer) -> Result<Vec<RecordBatch>, String> {
    check_all(payload.as_slice(), false)?;
    let mut decoder = StreamDecoder::new();
    let mut rest = payload.clone();
    let mut batches = Vec::new();
    while !rest.is_empty() {
        if let Some(b) = decoder.decode(&mut rest).map_err(|e| e.to_string())? {
            batches.push(b);
        }
    }
    decoder.finish().map_err(|e| e.to_string())?;
    Ok(batches)
}

/// Whether `error` is one of the checks made before arrow-rs reads a batch: its compressed
/// sizes (see `Budget`) or its layout on the 8-byte grid.
fn checked_first(error: &str) -> bool {
    error.starts_with("compressed buffer") || error.starts_with("Ipc error: unaligned")
}

/// Runs `f`, turning a panic into the text "panicked".
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err("panicked".into()))
}

fn placed(bytes: &[u8]) -> Buffer {
    let mut m = MutableBuffer::new(bytes.len());
    m.extend_from_slice(bytes);
    Buffer::from(m)
}

fn events(rows: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
        Field::new(
            "kind",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ),
    ]));
    let kinds: DictionaryArray<Int32Type> = (0..rows)
        .map(|i| ["click", "view", "buy"][i as usize % 3])
        .collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows)),
            Arc::new(StringArray::from_iter(
                (0..rows).map(|i| (i % 5 != 0).then(|| format!("row {i}"))),
            )),
            Arc::new(kinds),
        ],
    )
    .unwrap()
}

/// Valid stream payloads of several kinds: one and three batches, LZ4 and ZSTD bodies, a
/// dictionary column, and the legacy framing without continuation markers (IPC < 0.15).
fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    let enc = |compression, batches: &[RecordBatch]| {
        encode(
            batches,
            Encoding {
                format: IpcFormat::Stream,
                compression,
            },
        )
        .unwrap()
    };
    let legacy = {
        let options = IpcWriteOptions::try_new(8, true, MetadataVersion::V4).unwrap();
        let batch = events(7);
        let mut w =
            StreamWriter::try_new_with_options(Vec::new(), &batch.schema(), options).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        w.into_inner().unwrap()
    };
    vec![
        ("one batch", enc(BodyCompression::None, &[events(16)])),
        (
            "three batches",
            enc(BodyCompression::None, &[events(3), events(5), events(1)]),
        ),
        ("lz4", enc(BodyCompression::Lz4, &[events(20), events(2)])),
        ("zstd", enc(BodyCompression::Zstd, &[events(20)])),
        ("legacy framing", legacy),
    ]
}

#[test]
fn valid_payloads_decode_as_arrow_rs_decodes_them_parsed_or_remembered() {
    let mut schemas = Schemas::default();
    for (name, bytes) in payloads() {
        let payload = placed(&bytes);
        let expected = reference(&payload).unwrap();
        assert!(!expected.is_empty(), "{name}");
        let parsed = stream::decode(&payload, &mut schemas).unwrap().0;
        let hits = schemas.hits();
        let remembered = stream::decode(&payload, &mut schemas).unwrap().0;
        assert_eq!(
            schemas.hits(),
            hits + 1,
            "{name}: the second decode remembered it"
        );
        assert_eq!(parsed, expected, "{name}");
        assert_eq!(remembered, expected, "{name}");
        assert!(
            Arc::ptr_eq(&parsed[0].schema(), &remembered[0].schema()),
            "{name}: one Arc<Schema> for both"
        );
    }
}

#[test]
fn corrupt_payloads_are_refused_as_arrow_rs_refuses_them() {
    let mut rng = fastrand::Rng::with_seed(17);
    let (mut compared, mut refused) = (0, 0);
    for (name, bytes) in payloads() {
        let mut cases: Vec<Vec<u8>> = (1..bytes.len()).map(|cut| bytes[..cut].to_vec()).collect();
        for _ in 0..1500 {
            let mut b = bytes.clone();
            let i = rng.usize(..b.len());
            match rng.u8(..3) {
                0 => b[i] ^= 1 << rng.u8(..8),
                1 => b[i] = rng.u8(..),
                _ => {
                    // A 4-byte little-endian word overwritten: lengths, offsets, counts.
                    let v = [0u32, 1, 7, 0xFFFF_FFFF, 0x7FFF_FFFF, rng.u32(..)][rng.usize(..6)];
                    let end = (i + 4).min(b.len());
                    b[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
                }
            }
            cases.push(b);
        }
        // Trailing bytes after the end-of-stream marker, and a stream without that marker.
        cases.push([bytes.clone(), vec![1, 2, 3, 4]].concat());
        cases.push(bytes[..bytes.len() - 8].to_vec());
        for case in cases {
            let payload = placed(&case);
            let expected = guarded(|| reference(&payload));
            // Each case once parsed (a fresh cache) and once with the schema remembered.
            let mut warm = Schemas::default();
            let _ = guarded(|| stream::decode(&placed(&bytes), &mut warm).map(drop));
            for schemas in [&mut Schemas::default(), &mut warm] {
                let got = guarded(|| stream::decode(&payload, schemas).map(|(b, _)| b));
                match (&got, &expected) {
                    // The reference checked every batch's compressed sizes and layout before
                    // decoding any; the walker checks each before decoding it, after the
                    // framing. A payload refused for both reasons is named by whichever comes
                    // first.
                    (Err(a), Err(b)) if checked_first(a) || checked_first(b) => {}
                    _ => assert_eq!(got, expected, "{name}: {} bytes", case.len()),
                }
            }
            compared += 1;
            refused += usize::from(expected.is_err());
        }
    }
    // Most of these break the payload; some (a flipped bit in a value) do not.
    assert!(
        compared > 9000 && refused > compared / 2,
        "{refused} of {compared} refused"
    );
}
