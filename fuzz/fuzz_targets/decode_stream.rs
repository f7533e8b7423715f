//! The payload decoder on IPC stream-format payloads (seeds: uncompressed streams).
#![no_main]

libfuzzer_sys::fuzz_target!(init: sluice_fuzz::report_caught_panics(), |data: &[u8]| {
    // Payloads with the file magic are decode_file's.
    if data.starts_with(b"ARROW1") {
        return;
    }
    sluice_fuzz::decode_payload(data);
});
