//! Monitoring with the real tools (Debian's `prometheus` and `promtool`): a Prometheus process
//! scrapes a running `sluice run` and answers exact values; promtool lints the live exposition,
//! checks `deploy/prometheus/` and runs its rule tests; and every series the alerts and the
//! Grafana dashboard (`deploy/grafana/sluice.json`) query is one the running instance exports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::services::{Owned, SluiceProc};
use common::*;
use serde_json::Value;
use sluice_producer::Encoding;

/// `deploy/<rel>` of this checkout.
fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

/// A Prometheus binary (`$SLUICEDEV_<VAR>` or `/usr/bin/<name>`, Debian's package
/// `prometheus`); panics with the fix if it is missing.
fn tool(var: &str, name: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/usr/bin").join(name));
    assert!(
        p.exists(),
        "{name} is missing at {}: apt-get install prometheus (scripts/setup does)",
        p.display()
    );
    p
}

fn promtool() -> PathBuf {
    tool("SLUICEDEV_PROMTOOL", "promtool")
}

/// Runs promtool with `args` (and `stdin`): (exit code, stdout and stderr).
fn run_promtool(args: &[&str], stdin: Option<&str>) -> (Option<i32>, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Percent-encodes `s` for a URL query (RFC 3986: all but unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET `path` from `addr`: (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    http_get(addr, path, "")
}

/// A throwaway Prometheus on a loopback port, its TSDB in a temporary directory, scraping
/// `target` (job `sluice`) every second and evaluating `deploy/prometheus/alerts.yml`.
struct Prometheus {
    child: Owned,
    dir: tempfile::TempDir,
    addr: String,
}

impl Prometheus {
    /// Prometheus binds the port it is given, so the port is one the kernel just handed out;
    /// if another process took it first, Prometheus exits and starts again on another.
    fn start(target: &str) -> Prometheus {
        let bin = tool("SLUICEDEV_PROMETHEUS", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: [\"{target}\"]\n",
                deploy("prometheus/alerts.yml").display()
            ),
        )
        .unwrap();
        for attempt in 1..=5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a port from the kernel")
                .port();
            let addr = format!("127.0.0.1:{port}");
            let log = dir.path().join(format!("prometheus-{attempt}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let mut child = Owned(
                Command::new(&bin)
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.path().join("data").display()
                    ))
                    .arg(format!("--web.listen-address={addr}"))
                    .stdin(Stdio::null())
                    .stdout(out.try_clone().unwrap())
                    .stderr(out)
                    .spawn()
                    .expect("spawn prometheus"),
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let text = || std::fs::read_to_string(&log).unwrap_or_default();
                if let Ok(Some(status)) = child.0.try_wait() {
                    assert!(
                        text().contains("address already in use"),
                        "prometheus exited with {status}:\n{}",
                        text()
                    );
                    break;
                }
                if TcpStream::connect(&addr).is_ok() && get(&addr, "/-/ready").0 == 200 {
                    return Prometheus { child, dir, addr };
                }
                assert!(
                    Instant::now() < deadline,
                    "prometheus was not ready on {addr} within 60 s:\n{}",
                    text()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("prometheus found its port taken 5 times");
    }

    fn log(&self) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        logs.last()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .unwrap_or_default()
    }

    /// `GET /api/v1/<path>`'s `data`, asserting the status is success.
    fn api(&self, path: &str) -> Value {
        let (code, body) = get(&self.addr, &format!("/api/v1/{path}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: {e} in {code} {body:?}"));
        assert_eq!(
            (code, &v["status"]),
            (200, &Value::from("success")),
            "{body}"
        );
        v["data"].clone()
    }

    /// An instant query's vector: each series' labels (without `__name__`) and value.
    fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let data = self.api(&format!("query?query={}", encode(promql)));
        assert_eq!(data["resultType"], "vector", "{promql}: {data}");
        let mut out: Vec<_> = data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels: BTreeMap<String, String> = s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| *k != "__name__")
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value = s["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The value of a query answering one series.
    fn one(&self, promql: &str) -> Option<f64> {
        let v = self.query(promql);
        assert!(v.len() <= 1, "{promql} answered {v:?}");
        v.first().map(|(_, x)| *x)
    }

    /// Values of `promql` by the `partition` label.
    fn by_partition(&self, promql: &str) -> Vec<(String, f64)> {
        self.query(promql)
            .into_iter()
            .map(|(l, v)| (l["partition"].clone(), v))
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SIGTERM (Prometheus shuts its TSDB down cleanly); `Owned` kills and reaps it after.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The metric names a PromQL expression selects: its identifiers that start with `sluice_`,
/// outside string literals (label values), sorted and without repeats.
fn promql_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.chars().peekable();
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if word.starts_with("sluice_") {
            names.insert(word.clone());
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                flush(&mut word);
                // Skip to the closing quote (backslash escapes in "" and '').
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == ':' => word.push(c),
            _ => flush(&mut word),
        }
    }
    flush(&mut word);
    names
}

/// The exposition's families: name → (type, whether it has at least one sample).
fn families(text: &str) -> BTreeMap<String, (String, bool)> {
    let mut out: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.insert(name.to_string(), (kind.to_string(), false));
        }
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = histogram_family(name, &out).unwrap_or(name).to_string();
        if let Some(f) = out.get_mut(&family) {
            f.1 = true;
        }
    }
    out
}

/// The histogram family of a `_bucket`, `_sum` or `_count` series name.
fn histogram_family<'a>(
    name: &'a str,
    families: &BTreeMap<String, (String, bool)>,
) -> Option<&'a str> {
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find(|base| families.get(*base).is_some_and(|(k, _)| k == "histogram"))
}

/// The names of `names` that are not a family of `exposition` with a sample (a histogram's
/// `_bucket`, `_sum` and `_count` count as its family).
fn unknown(names: &BTreeSet<String>, exposition: &str) -> Vec<String> {
    let fams = families(exposition);
    names
        .iter()
        .filter(|n| {
            let family = histogram_family(n, &fams).unwrap_or(n);
            !fams.get(family).is_some_and(|(_, sampled)| *sampled)
        })
        .cloned()
        .collect()
}

/// Every `expr` of the dashboard's panels (rows' nested panels too), by panel title; panics
/// naming a panel without a query.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            if p["type"] == "row" {
                walk(&p["panels"], out);
                continue;
            }
            let title = p["title"].as_str().unwrap_or("(untitled)").to_string();
            let exprs: Vec<&str> = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str())
                .collect();
            assert!(!exprs.is_empty(), "panel {title:?} has no query target");
            out.extend(exprs.iter().map(|e| (title.clone(), e.to_string())));
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The rules of alerts.yml: (alert name, expr).
fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    y["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| {
            (
                r["alert"].as_str().expect("an alerting rule").to_string(),
                r["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn promql_names_are_the_sluice_identifiers_outside_strings() {
    let expr = "histogram_quantile(0.99, sum by (le) (rate(sluice_flush_duration_seconds_bucket\
                {instance=~\"$instance\",job='sluice_x'}[$__rate_interval]))) / \
                on(instance) sluice_memory_limit_bytes + sluice:recorded unless up{x=\"a\\\"sluice_y\"} \
                and sluice_ready";
    assert_eq!(
        promql_names(expr).into_iter().collect::<Vec<_>>(),
        [
            "sluice_flush_duration_seconds_bucket",
            "sluice_memory_limit_bytes",
            "sluice_ready"
        ]
    );
    let text = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n\
                # TYPE sluice_g gauge\n# TYPE sluice_c counter\nsluice_c{topic=\"t\"} 3\n";
    let names: BTreeSet<String> = [
        "h_bucket",
        "h_count",
        "sluice_g",
        "sluice_c",
        "sluice_c_sum",
    ]
    .map(String::from)
    .into();
    // sluice_g has no sample, sluice_c is not a histogram.
    assert_eq!(unknown(&names, text), ["sluice_c_sum", "sluice_g"]);
}

/// promtool accepts deploy/prometheus (the rules, the example config) and its rule tests pass;
/// every alert of alerts.yml has a test case in which it fires and one in which it does not.
#[test]
fn promtool_checks_and_tests_the_shipped_rules() {
    let rules = deploy("prometheus/alerts.yml");
    let (code, out) = run_promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{out}");
    let n = alert_rules().len();
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");

    let config = deploy("prometheus/prometheus.yml");
    let (code, out) = run_promtool(&["check", "config", config.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("SUCCESS: 1 rule files found")
            && out.contains(&format!("SUCCESS: {n} rules found")),
        "{out}"
    );

    let tests = deploy("prometheus/alerts.test.yml");
    let (code, out) = run_promtool(&["test", "rules", tests.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // Which alerts the tests see fire, and which they see stay silent.
    let text = std::fs::read_to_string(&tests).unwrap();
    let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in y["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().unwrap())
    {
        let name = case["alertname"].as_str().unwrap().to_string();
        match case["exp_alerts"].as_sequence() {
            Some(a) if !a.is_empty() => fires.insert(name),
            _ => silent.insert(name),
        };
    }
    let names: BTreeSet<String> = alert_rules().into_iter().map(|(a, _)| a).collect();
    assert_eq!(names.len(), n, "alert names repeat in alerts.yml");
    let untested = |seen: &BTreeSet<String>| -> Vec<String> {
        names.difference(seen).cloned().collect::<Vec<_>>()
    };
    assert_eq!(
        untested(&fires),
        Vec::<String>::new(),
        "alerts never seen firing"
    );
    assert_eq!(
        untested(&silent),
        Vec::<String>::new(),
        "alerts never seen silent"
    );
    assert_eq!(
        fires.union(&silent).cloned().collect::<BTreeSet<_>>(),
        names,
        "tests of alerts alerts.yml does not define"
    );
}

/// A real Prometheus scrapes a running `sluice run` after a known ingest (20 messages of 100
/// rows over 2 partitions) and answers the exact values; promtool finds nothing to lint in the
/// live exposition; the alerts load and evaluate against it, and every series they and the
/// dashboard query is one the instance exports.
#[test]
fn a_real_prometheus_scrapes_a_running_instance() {
    const LIMIT: u64 = 1 << 30;
    let (kafka, topic, dir, mut cfg) = setup("prom", 2);
    cfg.kafka
        .properties
        .insert("statistics.interval.ms".into(), "300".into());
    cfg.memory.limit_bytes = Some(LIMIT);
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let mut proc = SluiceProc::start(&path, dir.path().join("sluice.log"), &[]);
    let log = proc.wait_for_log("metrics endpoint", 1, Duration::from_secs(30));
    let target = address_after(&log, "url=http://");
    let prom = Prometheus::start(&target);

    let p = kafka.producer(&topic, Encoding::default());
    produce_events(&p, 2, 0, 20, 100);
    let t = format!("topic=\"{topic}\"");
    let deadline = Instant::now() + Duration::from_secs(90);
    // Until a scrape shows every row committed and both partitions caught up.
    loop {
        let rows = prom.one(&format!("sluice_committed_rows_total{{{t}}}"));
        let lag = prom.by_partition(&format!("sluice_consumer_lag_messages{{{t}}}"));
        if rows == Some(2000.0) && lag == [("0".to_string(), 0.0), ("1".to_string(), 0.0)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never showed 2000 committed rows and lag 0 (rows {rows:?}, lag {lag:?}):\n\
             {}\n{}",
            prom.log(),
            proc.output()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let series = |name: &str, labels: &str| format!("{name}{{job=\"sluice\",{labels}}}");
    let none = "instance!=\"\"";
    for (promql, want) in [
        (series("up", none), 1.0),
        (series("sluice_consumed_messages_total", &t), 20.0),
        (series("sluice_consumed_rows_total", &t), 2000.0),
        (series("sluice_committed_messages_total", &t), 20.0),
        (series("sluice_committed_rows_total", &t), 2000.0),
        (series("sluice_quarantined_messages_total", &t), 0.0),
        (series("sluice_flush_failures_total", none), 0.0),
        (series("sluice_commit_conflicts_total", none), 0.0),
        (series("sluice_offset_conflicts_total", none), 0.0),
        (series("sluice_assigned_partitions", none), 2.0),
        (series("sluice_paused_partitions", none), 0.0),
        (series("sluice_pending_bytes", none), 0.0),
        (series("sluice_flight_readers", none), 0.0),
        (series("sluice_memory_limit_bytes", none), LIMIT as f64),
        (series("sluice_ready", none), 1.0),
        (
            format!(
                "sum(sluice_committed_bytes_total{{{t}}}) - sum(sluice_consumed_bytes_total{{{t}}})"
            ),
            0.0,
        ),
        (
            "sum(sluice_flushes_total) - sum(sluice_flush_duration_seconds_count)".into(),
            0.0,
        ),
    ] {
        assert_eq!(prom.one(&promql), Some(want), "{promql}");
    }
    for name in ["sluice_lake_offset", "sluice_high_watermark_offset"] {
        assert_eq!(
            prom.by_partition(&series(name, &t)),
            [("0".to_string(), 10.0), ("1".to_string(), 10.0)],
            "{name}"
        );
    }
    // The pending cap is what the memory limit leaves (the configuration as `sluice run`
    // loads it, the limit applied).
    let loaded = sluice::config::Config::load(Some(&path)).unwrap();
    assert_eq!(
        prom.one("sluice_pending_cap_bytes"),
        Some(loaded.memory_budget().pending as f64)
    );
    // Prometheus read the exposition's types.
    let meta = prom.api("metadata");
    for (name, kind) in [
        ("sluice_committed_rows_total", "counter"),
        ("sluice_consumer_lag_messages", "gauge"),
        ("sluice_flush_duration_seconds", "histogram"),
        ("sluice_ready", "gauge"),
    ] {
        assert_eq!(meta[name][0]["type"], kind, "{name}: {meta}");
    }

    // The alerts loaded and evaluate against the scraped series without an error; none fires,
    // or is pending, once the instance has caught up.
    let wanted: Vec<String> = alert_rules().into_iter().map(|(a, _)| a).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let groups = prom.api("rules");
        let rules: Vec<&Value> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        let names: Vec<String> = rules
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, wanted);
        // A rule's health is "unknown" until its first evaluation.
        let evaluated = rules.iter().all(|r| r["health"] != "unknown");
        for r in rules.iter().filter(|r| r["health"] != "unknown") {
            assert_eq!(r["health"], "ok", "{r}");
        }
        if evaluated && rules.iter().all(|r| r["state"] == "inactive") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rules were not all evaluated and inactive within 30 s: {groups}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // promtool lints the live exposition: exit 0, and nothing printed.
    let (code, exposition) = get(&target, "/metrics");
    assert_eq!(code, 200);
    let (code, out) = run_promtool(&["check", "metrics"], Some(&exposition));
    assert_eq!((code, out.as_str()), (Some(0), ""), "{exposition}");

    // Every series the alerts and the dashboard query is one this instance exports.
    let mut unknown_by = Vec::new();
    for (alert, expr) in alert_rules() {
        let names = promql_names(&expr);
        assert!(!names.is_empty() || expr.contains("up{"), "{alert}: {expr}");
        for n in unknown(&names, &exposition) {
            unknown_by.push(format!("alert {alert}: {n}"));
        }
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/sluice.json")).unwrap())
            .expect("the dashboard is JSON");
    let exprs = dashboard_exprs(&dashboard);
    assert!(!exprs.is_empty());
    let mut queried = BTreeSet::new();
    for (title, expr) in &exprs {
        let names = promql_names(expr);
        assert!(
            !names.is_empty(),
            "panel {title:?} queries no sluice series: {expr}"
        );
        for n in unknown(&names, &exposition) {
            unknown_by.push(format!("panel {title:?}: {n}"));
        }
        queried.extend(names);
    }
    assert_eq!(
        unknown_by,
        Vec::<String>::new(),
        "series sluice does not export"
    );
    // The panels the dashboard promises are there (and query what they say).
    for name in [
        "sluice_committed_rows_total",
        "sluice_consumed_bytes_total",
        "sluice_consumer_lag_messages",
        "sluice_flush_duration_seconds_bucket",
        "sluice_flush_size_bytes_bucket",
        "sluice_pending_cap_bytes",
        "sluice_decoded_bytes_total",
        "sluice_quarantined_messages_total",
        "sluice_flight_readers",
        "sluice_resident_memory_bytes",
        "sluice_memory_limit_bytes",
    ] {
        assert!(queried.contains(name), "no panel queries {name}");
    }
    // Every panel's query runs on this Prometheus (with Grafana's variables filled in).
    for (_, expr) in &exprs {
        let promql = expr
            .replace("$instance", ".*")
            .replace("$__rate_interval", "1m");
        prom.query(&promql);
    }

    drop(prom);
    assert_eq!(proc.terminate(Duration::from_secs(30)), Some(0));
}
