//! The `sluice` binary: config errors name the key, `check` reports what is unreachable,
//! SIGTERM stops cleanly with everything committed.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::services::SluiceProc;
use common::*;
use sluice_producer::Encoding;

fn sluice(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run sluice")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn config_errors_name_the_key_and_exit_non_zero() {
    let dir = lake_dir();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[kafka]\ntopics = [\"t\"]\nbrokers = \"x:1\"\nbatch_size = 5\n",
    )
    .unwrap();
    let o = sluice(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("unknown field: found `batch_size`"), "{e}");
    assert!(e.contains("kafka.batch_size"), "{e}");

    std::fs::write(&path, "[kafka]\ntopics = [\"t\"]\n").unwrap();
    let o = sluice(
        &["run", "--config", path.to_str().unwrap()],
        &[("SLUICE_FLUSH__MAX_AGE_MS", "soon")],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.to_lowercase().contains("flush.max_age_ms"), "{e}");
    assert!(e.contains("invalid type: found string \"soon\""), "{e}");

    let o = sluice(
        &["run", "--config", path.to_str().unwrap()],
        &[("SLUICE_FLUSH__MEMORY_CAP_BYTES", "0")],
    );
    assert_eq!(
        stderr(&o).trim_end(),
        "sluice: configuration error: `flush.memory_cap_bytes` must be greater than 0"
    );
}

#[test]
fn check_passes_on_a_reachable_setup_and_names_an_unreachable_broker() {
    let (_kafka, topic, dir, cfg) = setup("check", 2);
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let o = sluice(&["check", "--config", path.to_str().unwrap()], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}{}", out, stderr(&o));
    assert!(
        out.contains(&format!("kafka: topic \"{topic}\" has 2 partitions")),
        "{out}"
    );
    assert!(out.contains("lake: attached (sqlite catalog"), "{out}");
    // 1024 MiB: 256 MiB of live retention for the one topic, 64 MiB + 50 MiB of prefetch.
    assert!(
        out.contains("memory budget: 1024 MiB = 654 MiB pending + 256 MiB live retention + 114 MiB librdkafka prefetch"),
        "{out}"
    );
    assert!(!out.contains("memory limit:"), "{out}");
    // One limit for the process: its split (config/tests.rs checks the exact bytes), and the
    // Arrow budget that follows from it.
    let o = sluice(
        &["check", "--config", path.to_str().unwrap()],
        &[("SLUICE_MEMORY__LIMIT_BYTES", "536870912")],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}{}", out, stderr(&o));
    assert!(
        out.contains("memory limit: 512 MiB = 51 MiB allocator headroom + 96 MiB base + 32 MiB librdkafka prefetch + 166 MiB Arrow data (41 MiB of it live retention; flushes of at most 55 MiB) + 166 MiB DuckDB (memory_limit 166MiB, threads 1, row groups of about 20 MiB)\n"),
        "{out}"
    );
    assert!(
        out.contains("memory budget: 198 MiB = 124 MiB pending + 41 MiB live retention + 32 MiB librdkafka prefetch\n"),
        "{out}"
    );

    let o = sluice(
        &["check", "--config", path.to_str().unwrap()],
        &[("SLUICE_KAFKA__BROKERS", "127.0.0.1:1")],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("kafka brokers unreachable"), "{e}");
    assert!(e.contains("127.0.0.1:1"), "{e}");
}

#[test]
fn sigterm_flushes_commits_and_exits_zero() {
    let (kafka, topic, dir, mut cfg) = setup("sigterm", 2);
    // Nothing would be flushed by size or age before the signal.
    cfg.flush.max_rows = 1_000_000;
    cfg.flush.max_age_ms = 600_000;
    let path = dir.path().join("run.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let p = kafka.producer(&topic, Encoding::default());
    produce_events(&p, 2, 0, 30, 100);
    let mut child = SluiceProc::start(&path, dir.path().join("sluice.log"), &[]);
    // Wait until both partitions are assigned, then let it consume for a moment.
    child.wait_for_log("partition assigned", 2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let code = child.terminate(Duration::from_secs(60));
    let log = child.output();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("trigger=\"shutdown\""), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    // What was consumed is committed, with offsets that match the rows exactly.
    let table = sluice::config::table_name_from_topic(&topic);
    let (rows, _, _) = events_summary(&cfg, &table);
    let offsets = query(
        &cfg,
        "SELECT sum(next_offset) FROM lake.main.sluice_offsets WHERE topic <> '' AND next_offset > 0",
    );
    let messages: i64 = offsets[0][0].as_deref().unwrap().parse().unwrap();
    assert!(rows > 0, "{log}");
    assert_eq!(rows, messages * 100);
    // A restart finishes the rest, exactly.
    cfg.flush.max_age_ms = 200;
    let run = Running::start(&cfg);
    run.wait("the rest", Duration::from_secs(60), |s| {
        s.committed_rows.load(std::sync::atomic::Ordering::Relaxed) as i64 + rows >= 3_000
    });
    run.stop().unwrap();
    assert_eq!(events_summary(&cfg, &table), expected_summary(3_000));
}

/// The commands `sluice demo` prints under the line containing `header`: the lines after it
/// indented deeper than it.
fn printed_commands(out: &str, header: &str) -> Vec<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut lines = out.lines().skip_while(|l| !l.contains(header));
    let Some(head) = lines.next() else {
        return Vec::new();
    };
    lines
        .take_while(|l| !l.trim().is_empty() && indent(l) > indent(head))
        .map(|l| l.trim().to_string())
        .collect()
}

/// Runs a printed shell line; returns its stdout.
fn run_printed(line: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(line).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{line}\n{out}{}", stderr(&o));
    out
}

#[test]
fn demo_ingests_reads_back_exactly_and_its_lake_is_readable_as_printed_while_it_runs() {
    use std::io::{BufRead, BufReader};
    let dir = lake_dir();
    let demo_dir = dir.path().join("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "demo",
            "--rows",
            "600000",
            "--dir",
            demo_dir.to_str().unwrap(),
        ])
        // The printed commands name the venv's DuckDB CLI and Python (as under scripts/demo).
        .env(
            "SLUICEDEV_VENV",
            python().parent().unwrap().parent().unwrap(),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    while !banner.ends_with("\n\n") {
        assert!(stdout.read_line(&mut banner).unwrap() > 0, "{banner}");
    }
    let live = printed_commands(
        &banner,
        "query the lake with stock DuckDB while the demo runs",
    );
    let attach = format!(
        "ATTACH 'ducklake:sqlite:{}/demo.sqlite' AS lake (DATA_PATH '{}/data/', READ_ONLY)",
        demo_dir.display(),
        demo_dir.display()
    );
    assert_eq!(live.len(), 2, "{banner}");
    assert!(live.iter().all(|c| c.contains(&attach)), "{banner}");

    // The lake is read with the printed commands while the demo ingests, from its first commit
    // on (the demo's progress lines say when).
    let mut out = banner.clone();
    loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "{out}");
        out.push_str(&line);
        let committed = line
            .split_once("| committed ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok());
        if committed.is_some_and(|n| n > 0) {
            break;
        }
    }
    // The live Flight line, as printed: the next batch produced after it connects. It connects
    // now, at the first commit, while the demo still produces, and waits beside the lake
    // queries: run after them, it could connect once the producer was done on a loaded
    // machine, and the next batch would never come.
    let flight = printed_commands(&banner, "read it with pyarrow");
    assert_eq!(flight.len(), 1, "{banner}");
    let flight_line = flight[0].clone();
    let reader = std::thread::spawn(move || run_printed(&flight_line));
    for c in &live {
        run_printed(c);
    }
    let batch = reader.join().expect("the Flight reader");
    assert!(batch.starts_with("pyarrow.RecordBatch\n"), "{batch}");
    for field in ["seq: int64", "event: string", "distinct_id: string"] {
        assert!(batch.contains(field), "{field} not in {batch}");
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the demo ended before the lake was read while it ran"
    );
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("ingested 600000 rows"), "{out}");
    assert!(
        out.contains("check: count=600000 distinct seq=600000 sum(seq)=179999700000 (expected 179999700000) min=0 max=599999"),
        "{out}"
    );
    assert!(out.contains("| purchase "), "{out}");
    let after = printed_commands(&out, "open the lake with the DuckDB CLI");
    assert_eq!(after.first(), live.first(), "{out}");
    assert_eq!(
        printed_commands(&out, "or with the DuckDB Python client").first(),
        live.get(1),
        "{out}"
    );
    for c in &live {
        assert!(run_printed(c).contains("600000"), "{c}");
    }
}

/// Kafka SASL credentials pass through `[kafka.properties]` and never reach an output line, an
/// error or a debug log. (No broker that speaks SASL runs here: librdkafka's mock cluster
/// has no SaslHandshake and tansu 0.6's SCRAM cannot store users in its memory engine, so the
/// connection fails, which is the path whose errors could carry them.)
#[test]
fn kafka_sasl_credentials_never_reach_output_errors_or_debug_logs() {
    const PASSWORD: &str = "kafka-pw-never-shown";
    let (_kafka, _topic, dir, mut cfg) = setup("sasl", 1);
    for (k, v) in [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "sluice"),
        ("sasl.password", PASSWORD),
    ] {
        cfg.kafka.properties.insert(k.into(), v.into());
    }
    let path = dir.path().join("sasl.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let o = sluice(&["check", "--config", path.to_str().unwrap()], &[]);
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("kafka brokers unreachable"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");

    // `sluice run` with every librdkafka debug context and debug logs, for a few seconds.
    let log = dir.path().join("run.log");
    let mut run = SluiceProc::start(
        &path,
        log,
        &[
            ("SLUICE_KAFKA__PROPERTIES__DEBUG", "all"),
            ("SLUICE_LOG__LEVEL", "debug"),
        ],
    );
    let seen = run.wait_for_log("SASL", 1, Duration::from_secs(30));
    assert_eq!(
        run.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        run.output()
    );
    let text = run.output();
    assert!(
        text.contains("sasl.password"),
        "the debug log should list the configuration: {seen}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
}

#[test]
fn config_defaults_prints_the_example_config_byte_for_byte() {
    let o = sluice(&["config", "--defaults"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let example = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/sluice.example.toml"))
        .expect("read sluice.example.toml");
    assert!(
        o.stdout == example,
        "sluice.example.toml is not what `sluice config --defaults` prints; regenerate it: \
         `{}`",
        sluice::cli::config::REGENERATE
    );
    // `config` does one thing so far, and says so.
    let o = sluice(&["config"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("the following required arguments were not provided:\n  --defaults"),
        "{}",
        stderr(&o)
    );
}
