//! DoGet tickets: JSON, e.g. `{"topic": "events", "from": "earliest" | "latest" |
//! {"offsets": {"0": 1234}} | {"timestamp_ms": 1700000000000}, "follow": true,
//! "partitions": [0, 3]}`; a bare topic name means earliest, no follow.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ring::Start;

/// A parsed DoGet ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketSpec {
    /// Topic to read.
    pub topic: String,
    /// Where to start.
    pub start: Start,
    /// Keep streaming new batches until the client cancels.
    pub follow: bool,
    /// Only these partitions (all if `None`).
    pub partitions: Option<Vec<i32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketJson {
    topic: String,
    #[serde(default)]
    from: Option<serde_json::Value>,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    partitions: Option<Vec<i32>>,
}

/// Parses a ticket; the error text says what is wrong with it.
pub fn parse_ticket(bytes: &[u8]) -> Result<TicketSpec, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "ticket is not UTF-8".to_string())?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("ticket is empty; give a topic name or a JSON ticket".into());
    }
    if !trimmed.starts_with('{') {
        return Ok(TicketSpec {
            topic: trimmed.to_string(),
            start: Start::Earliest,
            follow: false,
            partitions: None,
        });
    }
    let t: TicketJson =
        serde_json::from_str(trimmed).map_err(|e| format!("ticket is not valid: {e}"))?;
    let start = match &t.from {
        None => Start::Earliest,
        Some(v) => parse_from(v)?,
    };
    Ok(TicketSpec {
        topic: t.topic,
        start,
        follow: t.follow,
        partitions: t.partitions,
    })
}

fn parse_from(v: &serde_json::Value) -> Result<Start, String> {
    use serde_json::Value;
    let bad = || {
        format!(
            "\"from\" must be \"earliest\", \"latest\", {{\"offsets\": {{\"<partition>\": <offset> | [<offset>, <batch>]}}}} or {{\"timestamp_ms\": <ms>}}; got {v}"
        )
    };
    match v {
        Value::String(s) if s == "earliest" => Ok(Start::Earliest),
        Value::String(s) if s == "latest" => Ok(Start::Latest),
        Value::Object(m) if m.len() == 1 && m.contains_key("timestamp_ms") => m["timestamp_ms"]
            .as_i64()
            .map(Start::Timestamp)
            .ok_or_else(bad),
        Value::Object(m) if m.len() == 1 && m.contains_key("offsets") => {
            let Value::Object(per) = &m["offsets"] else {
                return Err(bad());
            };
            let mut out = BTreeMap::new();
            for (p, pos) in per {
                let partition: i32 = p
                    .parse()
                    .map_err(|_| format!("partition {p:?} is not a number"))?;
                let position = match pos {
                    Value::Number(n) => (n.as_i64().ok_or_else(bad)?, 0),
                    Value::Array(a) if a.len() == 2 => (
                        a[0].as_i64().ok_or_else(bad)?,
                        a[1].as_u64()
                            .and_then(|b| u32::try_from(b).ok())
                            .ok_or_else(bad)?,
                    ),
                    _ => return Err(bad()),
                };
                out.insert(partition, position);
            }
            Ok(Start::Offsets(out))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_ticket(b"events").unwrap(),
            TicketSpec {
                topic: "events".into(),
                start: Start::Earliest,
                follow: false,
                partitions: None
            }
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "from": {"offsets": {"0": 12, "3": [7, 1]}}, "follow": true, "partitions": [0, 3]}"#).unwrap(),
            TicketSpec {
                topic: "e".into(),
                start: Start::Offsets(BTreeMap::from([(0, (12, 0)), (3, (7, 1))])),
                follow: true,
                partitions: Some(vec![0, 3])
            }
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "from": {"timestamp_ms": 1700000000000}}"#)
                .unwrap()
                .start,
            Start::Timestamp(1_700_000_000_000)
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "from": "latest"}"#)
                .unwrap()
                .start,
            Start::Latest
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "from": "middle"}"#).unwrap_err(),
            "\"from\" must be \"earliest\", \"latest\", {\"offsets\": {\"<partition>\": <offset> | [<offset>, <batch>]}} or {\"timestamp_ms\": <ms>}; got \"middle\""
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "form": "latest"}"#).unwrap_err(),
            "ticket is not valid: unknown field `form`, expected one of `topic`, `from`, `follow`, `partitions` at line 1 column 21"
        );
        assert_eq!(
            parse_ticket(br#"{"topic": "e", "from": {"offsets": {"x": 1}}}"#).unwrap_err(),
            "partition \"x\" is not a number"
        );
        assert_eq!(
            parse_ticket(b"  ").unwrap_err(),
            "ticket is empty; give a topic name or a JSON ticket"
        );
    }
}
