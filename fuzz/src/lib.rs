//! What the fuzz targets share: the payload decoder driven the two ways sluice drives it, with
//! checks on what it returns (a payload either decodes to valid arrays or is named corrupt, the
//! same wherever in memory it lies).

use std::collections::BTreeSet;
use std::sync::Mutex;

use arrow::buffer::{Buffer, MutableBuffer};
use sluice::decode::{DecodeError, Decoded, Decoder};

/// Decodes `data` as sluice does with `kafka.copy_payloads = true` (a 64-byte aligned copy) and
/// in place at an odd address (librdkafka's buffers are often misaligned, so arrow-rs realigns),
/// and checks both outcomes. Panics (a fuzzer crash) when a check fails.
pub fn decode_payload(data: &[u8]) {
    // One decoder for both, as in a pipeline: the second call finds the schema message the
    // first one parsed (if it parsed one) and takes the remembered schema's path.
    let mut decoder = Decoder::new();
    let (_copy, aligned) = decoder.decode_copy(data);
    let mut m = MutableBuffer::with_capacity(data.len() + 1);
    m.push(0u8);
    m.extend_from_slice(data);
    let misaligned = decoder.decode(&Buffer::from(m).slice(1));
    check(&aligned);
    check(&misaligned);
    match (&aligned, &misaligned) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.batches.len(), b.batches.len(), "batch count differs");
            for (x, y) in a.batches.iter().zip(&b.batches) {
                assert_eq!(x.schema(), y.schema(), "schema differs");
                assert_eq!(x.num_rows(), y.num_rows(), "row count differs");
            }
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "aligned and misaligned copies of one payload disagree: {:?} vs {:?}",
            a.as_ref().map(Decoded::rows),
            b.as_ref().map(Decoded::rows)
        ),
    }
}

/// A decoded payload's arrays must be valid (they go to DuckDB through the C Data Interface,
/// which trusts offsets and lengths), and its rows add up.
fn check(result: &Result<Decoded, DecodeError>) {
    let Ok(d) = result else { return };
    let mut rows = 0;
    for b in &d.batches {
        rows += b.num_rows();
        for col in b.columns() {
            assert_eq!(
                col.len(),
                b.num_rows(),
                "column length differs from the batch's"
            );
            if let Err(e) = col.to_data().validate_full() {
                panic!("decoded an invalid array: {e}");
            }
        }
    }
    assert_eq!(d.rows(), rows);
}

/// Where panics happened so far (file:line), each printed once.
static PANIC_SITES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Replaces libfuzzer-sys's panic hook (which aborts on every panic) with one that prints the
/// first panic at each site, with its backtrace, as `sluice-fuzz: panic at <file:line>: <msg>`.
/// For the decoder: `decode` catches panics from arrow-rs (`catch_unwind`) and names the payload
/// corrupt, as it does in production, so such a panic is handled and the fuzzer goes on. A panic
/// nothing catches still ends the run: libfuzzer-sys aborts when one unwinds out of the target.
pub fn report_caught_panics() {
    std::panic::set_hook(Box::new(|info| {
        let site = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "unknown".into());
        let mut seen = PANIC_SITES.lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(site.clone()) {
            let payload = info.payload();
            let message = (payload.downcast_ref::<&str>().copied())
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            eprintln!(
                "sluice-fuzz: panic at {site}: {}\n{}",
                message.replace('\n', " "),
                std::backtrace::Backtrace::force_capture()
            );
        }
    }));
}
