//! Config loading: defaults, then arbitrary TOML text, then extraction and validation.
#![no_main]

use std::sync::LazyLock;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use sluice::config::{Config, parse_size};

/// The defaults as figment holds them, made once: serializing `Config::default()` took a quarter
/// of each execution, and it is the same every time.
static DEFAULTS: LazyLock<Figment> =
    LazyLock::new(|| Figment::from(Serialized::defaults(Config::default())));

libfuzzer_sys::fuzz_target!(|text: &str| {
    let fig = DEFAULTS.clone().merge(Toml::string(text));
    if let Ok(cfg) = Config::from_figment(fig) {
        // What loaded also validates on its own and budgets its memory without overflow.
        cfg.validate().expect("a loaded config validates again");
        let b = cfg.memory_budget();
        assert!(b.pending <= b.total);
    }
    // The size parser the config uses (tables.*.target_file_size), on the same text.
    if let Some(n) = parse_size(text) {
        assert_eq!(parse_size(&format!(" {text} ")), Some(n));
    }
});
