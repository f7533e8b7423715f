//! The payload decoder on IPC file-format payloads (seeds: uncompressed files).
#![no_main]

libfuzzer_sys::fuzz_target!(init: sluice_fuzz::report_caught_panics(), |data: &[u8]| {
    // Only payloads with the file magic take the file path; the rest are decode_stream's.
    if !data.starts_with(b"ARROW1") {
        return;
    }
    sluice_fuzz::decode_payload(data);
});
