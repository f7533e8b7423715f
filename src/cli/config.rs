//! `sluice config --defaults`: the complete default configuration, annotated, generated from the
//! config types so that `sluice.example.toml` (which is this output) cannot drift from them.
//!
//! Three sources, none kept by hand beside the types:
//! - each key's explanation is its doc comment in `config/src/` (the `description` the
//!   [`JsonSchema`](schemars::JsonSchema) derive gives it), and an enum key lists its values
//!   with their doc comments;
//! - each key's value is `Config::default()` written by `toml`, read back by `toml_edit` to keep
//!   the types' declaration order;
//! - a key unset by default (an `Option`, an empty list or map) is written commented out with its
//!   `#[schemars(example = …)]` value, so the output loads to exactly `Config::default()`.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::{Map, Value as Json};
use toml_edit::{DocumentMut, Item, Key, Table};

use crate::config::Config;

/// The command that regenerates `sluice.example.toml` (named in the file itself).
pub const REGENERATE: &str = "sluice config --defaults > sluice.example.toml";

/// Prints [`defaults_toml`] to standard output.
pub fn print_defaults() -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(defaults_toml().as_bytes())
        .and_then(|()| out.flush())
        .context("writing the default configuration to standard output")
}

/// The complete default configuration as TOML: every key set to its default, or commented out
/// with an example where it is unset by default, each under its doc comment.
pub fn defaults_toml() -> String {
    render(Examples::Commented)
}

/// How keys unset by default are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Examples {
    /// Commented out (`# key = example`): the output loads to the defaults.
    Commented,
    /// Set (`key = example`): every key has a value (what the tests load to check the examples).
    #[cfg_attr(not(test), allow(dead_code))]
    Set,
}

fn render(examples: Examples) -> String {
    let schema = schemars::schema_for!(Config);
    let root = schema.as_value();
    let docs = Docs {
        defs: root
            .get("$defs")
            .and_then(Json::as_object)
            .expect("the schema of Config defines its sections"),
    };
    let default = Config::default();
    let mut filled = serde_json::to_value(&default).expect("Config serializes to JSON");
    docs.fill_examples(root, &mut filled);
    let filled: Config = serde_json::from_value(filled)
        .expect("every #[schemars(example = …)] is a value of its key");
    let default = toml_document(&default);
    let filled = toml_document(&filled);

    let mut r = Render {
        docs,
        examples,
        out: String::new(),
    };
    r.out.push_str(
        "# sluice configuration: every key at its default, or commented out with an example where\n\
         # it has none.\n",
    );
    r.comment(description(root).unwrap_or_default());
    r.out.push_str(&format!(
        "#\n# Generated from the doc comments in config/src/ by `{REGENERATE}`:\n\
         # edit those, not this file.\n"
    ));
    r.table(
        &mut Vec::new(),
        filled.as_table(),
        Some(default.as_table()),
        Some(root),
        false,
    );
    r.out
}

/// `cfg` as a TOML document, its keys in the types' declaration order.
fn toml_document(cfg: &Config) -> DocumentMut {
    toml::to_string(cfg)
        .expect("Config serializes to TOML")
        .parse()
        .expect("toml's output parses")
}

/// Whether a JSON value is what an unset key serializes to.
fn is_unset(v: &Json) -> bool {
    v.is_null()
        || v.as_array().is_some_and(Vec::is_empty)
        || v.as_object().is_some_and(Map::is_empty)
}

fn description(schema: &Json) -> Option<&str> {
    schema
        .get("description")
        .and_then(Json::as_str)
        .filter(|d| !d.is_empty())
}

/// The JSON schema of `Config`.
struct Docs<'a> {
    defs: &'a Map<String, Json>,
}

impl<'a> Docs<'a> {
    /// The schema a property stands for: its `$ref`, or the non-null branch of an `Option`.
    fn resolve(&self, s: &'a Json) -> &'a Json {
        if let Some(name) = s
            .get("$ref")
            .and_then(Json::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
            && let Some(def) = self.defs.get(name)
        {
            return self.resolve(def);
        }
        if let Some(branch) = s.get("anyOf").and_then(Json::as_array).and_then(|a| {
            a.iter()
                .find(|b| b.get("type") != Some(&Json::from("null")))
        }) {
            return self.resolve(branch);
        }
        s
    }

    /// The properties of a struct's schema (`None` for a map or a value).
    fn properties(&self, s: &'a Json) -> Option<&'a Map<String, Json>> {
        self.resolve(s).get("properties").and_then(Json::as_object)
    }

    /// Sets every unset key of `value` (a struct of schema `s`) to its first example.
    fn fill_examples(&self, s: &Json, value: &mut Json) {
        let Some(props) = self.resolve(s).get("properties").and_then(Json::as_object) else {
            return;
        };
        for (key, prop) in props {
            let Some(v) = value.get_mut(key) else {
                continue;
            };
            if self.properties(prop).is_some() {
                self.fill_examples(prop, v);
            } else if is_unset(v)
                && let Some(example) = prop.get("examples").and_then(|e| e.get(0))
            {
                *v = example.clone();
            }
        }
    }
}

struct Render<'a> {
    docs: Docs<'a>,
    examples: Examples,
    out: String,
}

impl Render<'_> {
    fn comment(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim_end();
            self.out.push('#');
            if !line.is_empty() {
                self.out.push(' ');
                self.out.push_str(line);
            }
            self.out.push('\n');
        }
    }

    /// The values an enum key takes, each with its doc comment.
    fn variants(&mut self, prop: &Json) {
        let Some(variants) = self
            .docs
            .resolve(prop)
            .get("oneOf")
            .and_then(Json::as_array)
        else {
            return;
        };
        for v in variants {
            let (Some(name), Some(doc)) = (v.get("const"), description(v)) else {
                continue;
            };
            let mut lines = doc.lines();
            self.out.push_str(&format!(
                "# - {name}: {}\n",
                lines.next().unwrap_or_default()
            ));
            for line in lines {
                self.out.push_str(&format!("#   {line}\n"));
            }
        }
    }

    /// One key: set to its default, or (unset by default, or an example entry of a map)
    /// commented out with its example.
    fn key(&mut self, key: &str, value: &toml_edit::Value, set: bool) {
        let prefix = if set || self.examples == Examples::Set {
            ""
        } else {
            "# "
        };
        self.out.push_str(&format!(
            "{prefix}{} = {}\n",
            Key::new(key).display_repr(),
            value.to_string().trim()
        ));
    }

    /// The table at `path`: its keys (each after its doc comment), then its sub-tables.
    /// `schema` is the struct's schema (`None` for a map, whose entries are the user's keys);
    /// `example` says the table is an example entry of a map (absent from the defaults).
    fn table(
        &mut self,
        path: &mut Vec<String>,
        filled: &Table,
        default: Option<&Table>,
        schema: Option<&Json>,
        example: bool,
    ) {
        let props = schema.and_then(|s| self.docs.properties(s));
        let prop = |key: &str| props.and_then(|p| p.get(key));
        for (key, item) in filled.iter() {
            let Item::Value(value) = item else {
                continue;
            };
            if let Some(p) = prop(key) {
                self.out.push('\n');
                self.comment(description(p).unwrap_or_default());
                self.variants(p);
            }
            let set_default = (!example)
                .then(|| default.and_then(|t| t.get(key)).and_then(Item::as_value))
                .flatten()
                .filter(|v| !v.as_array().is_some_and(|a| a.is_empty()));
            match set_default {
                Some(d) => self.key(key, d, true),
                None => self.key(key, value, false),
            }
        }
        for (key, item) in filled.iter() {
            let Item::Table(child) = item else {
                continue;
            };
            let child_default = default.and_then(|t| t.get(key)).and_then(Item::as_table);
            let (child_schema, child_example) = match prop(key) {
                // A field of a struct.
                Some(p) => (self.docs.properties(p).map(|_| p), example),
                // An entry of a map: an example where the defaults do not have it.
                None => (None, example || child_default.is_none()),
            };
            path.push(key.to_string());
            self.out.push('\n');
            if let Some(p) = prop(key) {
                self.comment(description(p).unwrap_or_default());
            }
            let header = path
                .iter()
                .map(|k| Key::new(k.as_str()).display_repr().into_owned())
                .collect::<Vec<_>>()
                .join(".");
            let prefix = if child_example && self.examples == Examples::Commented {
                "# "
            } else {
                ""
            };
            self.out.push_str(&format!("{prefix}[{header}]\n"));
            self.table(path, child, child_default, child_schema, child_example);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests;
