//! The Flight DoGet ticket parser on arbitrary bytes.
#![no_main]

use sluice::live::ticket::parse_ticket;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match parse_ticket(data) {
        Ok(t) => {
            // A bare name (not a JSON object) is the topic, trimmed.
            let text = std::str::from_utf8(data).expect("an accepted ticket is UTF-8");
            if !text.trim().starts_with('{') {
                assert_eq!(t.topic, text.trim());
            }
            assert_eq!(parse_ticket(data), Ok(t), "parsing is not deterministic");
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
