//! The payload decoder on body-compressed payloads (seeds: LZ4 frame and ZSTD, stream and file
//! format). Any input is decoded; the seeds steer it to the decompression paths and sluice's
//! declared-size checks.
#![no_main]

libfuzzer_sys::fuzz_target!(init: sluice_fuzz::report_caught_panics(), |data: &[u8]| {
    sluice_fuzz::decode_payload(data);
});
