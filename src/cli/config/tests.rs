//! The generated configuration: it loads to the defaults, names every key of the config types
//! with its explanation, and its examples are values of their keys.
#![allow(clippy::result_large_err)] // figment::Jail's closures return figment's error type.

use std::collections::BTreeSet;
use std::path::Path;

use figment::providers::{Format, Toml};
use figment::{Figment, Jail};

use super::*;

/// Every key of the config types, as `(section, key, doc comment)` with the section dotted and a
/// table (a struct or a map) as `[key]`, found by walking the JSON schema of `Config` (a map's
/// entries are the user's keys, not the types').
fn schema_keys() -> Vec<(String, String, String)> {
    fn walk(
        defs: &Map<String, Json>,
        schema: &Json,
        section: &str,
        out: &mut Vec<(String, String, String)>,
    ) {
        let resolve = |s: &Json| -> Json {
            let mut s = s.clone();
            loop {
                if let Some(r) = s.get("$ref").and_then(Json::as_str) {
                    s = defs[r.trim_start_matches("#/$defs/")].clone();
                } else if let Some(b) = s.get("anyOf").and_then(Json::as_array) {
                    s = b.iter().find(|b| b["type"] != "null").unwrap().clone();
                } else {
                    return s;
                }
            }
        };
        let props = resolve(schema)["properties"].as_object().unwrap().clone();
        for (key, prop) in props {
            let doc = prop["description"].as_str().unwrap_or("").to_string();
            if resolve(&prop).get("properties").is_some() {
                let sub = if section.is_empty() {
                    key.clone()
                } else {
                    format!("{section}.{key}")
                };
                walk(defs, &prop, &sub, out);
                // A section is listed too: its header carries its explanation.
                out.push((section.to_string(), format!("[{key}]"), doc));
            } else if resolve(&prop)["type"] == "object" {
                // A map: a table of the user's keys.
                out.push((section.to_string(), format!("[{key}]"), doc));
            } else {
                out.push((section.to_string(), key, doc));
            }
        }
    }
    let schema = schemars::schema_for!(Config);
    let root = schema.as_value();
    let mut out = Vec::new();
    walk(root["$defs"].as_object().unwrap(), root, "", &mut out);
    out
}

/// The `(section, key)` of every line of `text` that sets a key or would when uncommented
/// (`key = …` or `# key = …`), and of every table header (`[a.b]` or `# [a.b]` gives
/// `("a", "[b]")`).
fn keys_in(text: &str) -> BTreeSet<(String, String)> {
    let mut section = String::new();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let line = line.strip_prefix("# ").unwrap_or(line);
        if let Some(h) = line.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let (parent, last) = h.rsplit_once('.').unwrap_or(("", h));
            out.insert((parent.to_string(), format!("[{last}]")));
            section = h.to_string();
        } else if let Some((key, _)) = line.split_once(" = ")
            && !key.contains(' ')
        {
            out.insert((section.clone(), key.to_string()));
        }
    }
    out
}

#[test]
fn the_defaults_load_to_exactly_the_default_config() {
    let text = defaults_toml();
    // The file alone, without the defaults layer under it.
    let cfg: Config = Figment::from(Toml::string(&text)).extract().unwrap();
    assert_eq!(cfg, Config::default());
    // Through the loader, as `sluice run --config` reads it: the one key without a default
    // (`kafka.topics`) is required, and given from the environment the file loads and validates.
    Jail::expect_with(|jail| {
        jail.create_file("sluice.toml", &text)?;
        let err = Config::load(Some(Path::new("sluice.toml"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: `kafka.topics` must list at least one topic"
        );
        jail.set_env("SLUICE_KAFKA__TOPICS", r#"["events"]"#);
        let cfg = Config::load(Some(Path::new("sluice.toml"))).unwrap();
        let mut want = Config::default();
        want.kafka.topics = vec!["events".into()];
        assert_eq!(cfg, want);
        Ok(())
    });
}

#[test]
fn every_key_of_every_section_appears_with_its_explanation() {
    let text = defaults_toml();
    let found = keys_in(&text);
    let keys = schema_keys();
    let mut missing = Vec::new();
    for (section, key, doc) in &keys {
        if !found.contains(&(section.clone(), key.clone())) {
            missing.push(format!("{section} {key}"));
        }
        assert!(!doc.is_empty(), "{section} {key} has no doc comment");
        let comment: String = doc
            .lines()
            .map(|l| match l.trim_end() {
                "" => "#\n".to_string(),
                l => format!("# {l}\n"),
            })
            .collect();
        assert!(
            text.contains(&comment),
            "{section} {key}: its doc comment is not in the output:\n{comment}"
        );
    }
    assert_eq!(missing, Vec::<String>::new());
    // What the output has beyond the types' keys: the example entries of the maps.
    let known: BTreeSet<(String, String)> = keys.into_iter().map(|(s, k, _)| (s, k)).collect();
    let extra: Vec<(String, String)> = found.difference(&known).cloned().collect();
    let pair = |s: &str, k: &str| (s.to_string(), k.to_string());
    assert_eq!(
        extra,
        vec![
            pair("kafka.properties", "\"sasl.mechanisms\""),
            pair("kafka.properties", "\"sasl.password\""),
            pair("kafka.properties", "\"sasl.username\""),
            pair("kafka.properties", "\"security.protocol\""),
            pair("tables.map", "\"web.events-v2\""),
            pair("tables.options", "[events]"),
            pair("tables.options.events", "partition_by"),
        ]
    );
    // 73 keys and 17 tables (10 sections, 7 tables within them), so a walk that found nothing
    // cannot pass.
    assert_eq!(known.len(), 90);
}

#[test]
fn every_key_unset_by_default_has_an_example_of_its_type_and_the_examples_validate() {
    let text = render(Examples::Set);
    let mut cfg: Config = Figment::from(Toml::string(&text)).extract().unwrap();
    let default = serde_json::to_value(Config::default()).unwrap();
    let set = serde_json::to_value(&cfg).unwrap();
    for (section, key, _) in schema_keys() {
        if key.starts_with('[') {
            continue;
        }
        let pointer = format!("/{}/{key}", section.replace('.', "/"));
        let (d, s) = (&default.pointer(&pointer), &set.pointer(&pointer));
        let (Some(d), Some(s)) = (d, s) else {
            panic!("{pointer} is not in the serialized config");
        };
        if is_unset(d) {
            assert!(!is_unset(s), "{pointer} has no example");
        } else {
            assert_eq!(d, s, "{pointer} is set by default: its example is not used");
        }
    }
    assert_eq!(cfg.kafka.topics, vec!["events".to_string()]);
    assert_eq!(
        cfg.kafka
            .properties
            .get("sasl.mechanisms")
            .map(String::as_str),
        Some("SCRAM-SHA-512")
    );
    assert_eq!(
        cfg.tables.options_for("events").partition_by,
        Some(vec!["day(timestamp)".to_string()])
    );
    assert_eq!(cfg.tables.table_for("web.events-v2"), "web_events");
    assert_eq!(cfg.memory.limit_bytes, Some(1 << 30));
    // The examples work together, but for the TLS files, which would have to exist.
    cfg.live.tls_cert_path = None;
    cfg.live.tls_key_path = None;
    cfg.live.tls_client_ca_path = None;
    cfg.validate().unwrap();
}
