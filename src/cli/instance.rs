//! A running instance as its operators' endpoint shows it (for `sluice status`): `/readyz`, and
//! from `/metrics` the pending bytes and the partitions it has assigned with their lake
//! offsets. Plain HTTP/1.1 over a `TcpStream`: two small GETs to a loopback address need no
//! HTTP client library.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::MetricsConfig;
use crate::observe::http::basic;

/// How long connecting to, and each read from, the endpoint may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// What the instance at the configured `[metrics]` address says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `/readyz` answered 200.
    pub ready: bool,
    /// `/readyz`'s body (`ready`, or `not ready: …` naming what is missing).
    pub readiness: String,
    /// `sluice_pending_bytes`: bytes pending in memory, including the flush in flight.
    pub pending_bytes: u64,
    /// `sluice_inflight_bytes`: bytes of the flush being committed.
    pub inflight_bytes: u64,
    /// `sluice_assigned_partitions`.
    pub assigned_partitions: u64,
    /// `sluice_lake_offset` of each assigned (topic, partition): the lake's next offset as the
    /// instance last committed or read it (-1: nothing committed yet).
    pub lake_offsets: BTreeMap<(String, i32), i64>,
}

/// The outcome of asking the configured endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// `[metrics] enabled = false`: nothing to ask.
    Disabled,
    /// The configured port is 0 (a free one picked at start): the instance's is unknown.
    UnknownPort,
    /// Nothing answers at the address (why: connection refused, timed out, …).
    NotAnswering(String),
    /// Something answers but not as a sluice instance does (why).
    Refused(String),
    /// An instance answers.
    Answering(Instance),
}

/// The address to ask for `cfg`'s endpoint: the configured one, with an unspecified IP (a
/// listener on every interface) asked on loopback.
pub fn target(cfg: &MetricsConfig) -> Option<SocketAddr> {
    let mut addr: SocketAddr = cfg.address.parse().ok()?;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => {}
    }
    Some(addr)
}

/// Asks the instance at `cfg`'s address for `/readyz` and `/metrics` (with basic
/// authentication if `cfg` has credentials).
pub fn probe(cfg: &MetricsConfig) -> Probe {
    if !cfg.enabled {
        return Probe::Disabled;
    }
    let Some(addr) = target(cfg) else {
        return Probe::NotAnswering(format!(
            "metrics.address {:?} is not host:port",
            cfg.address
        ));
    };
    if addr.port() == 0 {
        return Probe::UnknownPort;
    }
    let (code, readiness) = match get(addr, "/readyz", None) {
        Ok(r) => r,
        Err(e) => return Probe::NotAnswering(io_reason(&e)),
    };
    let auth = cfg
        .username
        .as_deref()
        .zip(cfg.password.as_ref())
        .map(|(u, p)| basic(u, p));
    let text = match get(addr, "/metrics", auth.as_deref()) {
        Ok((200, text)) => text,
        Ok((401, _)) => {
            return Probe::Refused(if auth.is_some() {
                "/metrics refused metrics.username and metrics.password (HTTP 401)".into()
            } else {
                "/metrics asks for HTTP basic authentication (HTTP 401): set metrics.username and metrics.password".into()
            });
        }
        Ok((code, _)) => return Probe::Refused(format!("/metrics answered HTTP {code}")),
        Err(e) => return Probe::NotAnswering(io_reason(&e)),
    };
    match parse(&text) {
        Some(mut i) => {
            i.ready = code == 200;
            i.readiness = readiness.trim().to_string();
            Probe::Answering(i)
        }
        None => Probe::Refused(
            "its /metrics has no sluice_pending_bytes (not a sluice instance?)".into(),
        ),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        TimedOut | WouldBlock => format!("no answer within {} s", TIMEOUT.as_secs()),
        _ => e.to_string(),
    }
}

/// The values `sluice status` shows from an exposition; `None` if it has no
/// `sluice_pending_bytes` (not sluice's).
pub fn parse(text: &str) -> Option<Instance> {
    let mut pending = None;
    let mut inflight = 0;
    let mut assigned = 0;
    let mut lake_offsets = BTreeMap::new();
    for (name, labels, value) in text.lines().filter_map(sample) {
        let count = || value.max(0.0) as u64;
        match name {
            "sluice_pending_bytes" => pending = Some(count()),
            "sluice_inflight_bytes" => inflight = count(),
            "sluice_assigned_partitions" => assigned = count(),
            "sluice_lake_offset" => {
                let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v);
                if let (Some(t), Some(p)) = (get("topic"), get("partition"))
                    && let Ok(p) = p.parse::<i32>()
                {
                    lake_offsets.insert((t.clone(), p), value as i64);
                }
            }
            _ => {}
        }
    }
    Some(Instance {
        ready: false,
        readiness: String::new(),
        pending_bytes: pending?,
        inflight_bytes: inflight,
        assigned_partitions: assigned,
        lake_offsets,
    })
}

/// A sample's labels: (name, value) in their order.
type Labels = Vec<(String, String)>;

/// One sample line of the text format: (name, labels, value); `None` for comments and lines
/// that are not samples.
fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            c => value.push(c),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                c => key.push(c),
            }
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// GET `path` from `addr` (HTTP/1.1, `Connection: close`): (status code, body).
fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP response to GET {path}"),
        )
    })
}

/// (status code, body) of a whole HTTP/1.1 response (a `Content-Length` or chunked body, or
/// one that ends with the connection).
fn response(raw: &[u8]) -> Option<(u16, String)> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let code = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = &raw[head_end + 4..];
    let mut chunked = false;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            body = body.get(..v.parse::<usize>().ok()?)?;
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break out;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
    } else {
        body.to_vec()
    };
    Some((code, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_values_status_shows_are_read_from_an_exposition() {
        let text = "# HELP sluice_pending_bytes Bytes pending.\n\
                    # TYPE sluice_pending_bytes gauge\n\
                    sluice_pending_bytes 12345\n\
                    sluice_inflight_bytes 45\n\
                    sluice_assigned_partitions 2\n\
                    sluice_lake_offset{topic=\"a\\\"b\",partition=\"3\"} 10\n\
                    sluice_lake_offset{topic=\"ev\",partition=\"0\"} -1\n\
                    sluice_consumer_lag_messages{topic=\"ev\",partition=\"0\"} 7\n";
        let i = parse(text).unwrap();
        assert_eq!(
            i,
            Instance {
                ready: false,
                readiness: String::new(),
                pending_bytes: 12345,
                inflight_bytes: 45,
                assigned_partitions: 2,
                lake_offsets: [(("a\"b".to_string(), 3), 10), (("ev".to_string(), 0), -1)]
                    .into_iter()
                    .collect(),
            }
        );
        assert_eq!(parse("node_cpu_seconds_total 3\n"), None);
    }

    #[test]
    fn responses_with_a_length_chunks_or_neither_give_their_body() {
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nready\nextra"),
            Some((200, "ready\n".to_string()))
        );
        assert_eq!(
            response(
                b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n6;x=y\r\nready\n\r\n0\r\n\r\n"
            ),
            Some((503, "not ready\n".to_string()))
        );
        assert_eq!(
            response(b"HTTP/1.0 401 Unauthorized\r\n\r\nno"),
            Some((401, "no".to_string()))
        );
        assert_eq!(response(b"SSH-2.0-OpenSSH_9.2\r\n"), None);
    }
}
