//! The live Arrow Flight endpoint with a real client (pyarrow.flight).

mod common;

use std::io::BufReader;
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use sluice::live::flight::{self, LiveFlight};
use sluice::live::ring::{Retention, Ring};
use sluice::observe::server::Servers;
use sluice::pipeline::Pipeline;
use sluice::sink::Lake;
use sluice_producer::Encoding;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/flight_client.py");

/// A Flight endpoint over a ring, on a server runtime of its own.
struct FlightServer {
    servers: Servers,
    addr: std::net::SocketAddr,
}

impl FlightServer {
    fn start(ring: &std::sync::Arc<Ring>) -> FlightServer {
        let servers = Servers::new().unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        let addr = flight::serve(
            &servers,
            LiveFlight::new(ring.clone()),
            addr,
            flight::Access::default(),
        )
        .unwrap()
        .addr;
        FlightServer { servers, addr }
    }

    fn stop(self) {
        self.servers.stop();
    }
}

fn start_with_flight(
    cfg: &sluice::config::Config,
) -> (Running, FlightServer, std::sync::Arc<Ring>) {
    let ring = Ring::new(Retention {
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(600),
        max_uncommitted: 0,
    });
    let server = FlightServer::start(&ring);
    let lake = Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
    let run = Running::start_with(cfg, lake, |p: &Pipeline| p.attach_live(ring.clone()));
    (run, server, ring)
}

/// Runs the client script with `args`; returns it once it printed `first_line`, with its stdout.
fn spawn_client(
    args: &[&str],
    first_line: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    spawn_script(SCRIPT, args, first_line)
}

/// Waits for the client and returns its stderr, asserting it succeeded.
fn finish_client(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// A topic with `messages` messages of 100 events produced, a pipeline with Flight consuming
/// it, and the Flight URL, once `rows` rows were consumed.
struct Case {
    _kafka: Kafka,
    topic: String,
    _dir: tempfile::TempDir,
    cfg: sluice::config::Config,
    producer: sluice_producer::ArrowProducer,
    run: Running,
    server: FlightServer,
    ring: std::sync::Arc<Ring>,
    url: String,
}

fn started(prefix: &str, partitions: i32, messages: usize, rows: u64) -> Case {
    let (kafka, topic, dir, cfg) = setup(prefix, partitions);
    let producer = kafka.producer(&topic, Encoding::default());
    produce_events(&producer, partitions, 0, messages, 100);
    let (run, server, ring) = start_with_flight(&cfg);
    run.wait("first rows consumed", Duration::from_secs(60), |s| {
        s.rows.load(Relaxed) >= rows
    });
    let url = format!("grpc://{}", server.addr);
    Case {
        _kafka: kafka,
        topic,
        _dir: dir,
        cfg,
        producer,
        run,
        server,
        ring,
        url,
    }
}

#[test]
fn copied_payloads_are_published_live_and_never_compacted_again() {
    // With kafka.copy_payloads the batches own their memory: after the lake commit the ring
    // keeps them as they are (nothing to release), and a Flight replay still gets every row.
    let (kafka, topic, dir, mut cfg) = setup("copylive", 2);
    cfg.kafka.copy_payloads = true;
    let producer = kafka.producer(&topic, Encoding::default());
    produce_events(&producer, 2, 0, 30, 100);
    let (run, server, ring) = start_with_flight(&cfg);
    run.wait("all committed", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 3_000
    });
    let url = format!("grpc://{}", server.addr);
    let (child, _stdout) = spawn_client(&["replay", &url, &topic, "3000"], "");
    let stderr = finish_client(child);
    assert!(
        stderr.contains("replayed 3000 rows in 30 batches; resumed after 7; errors ok"),
        "{stderr}"
    );
    let stats = run.stats.clone();
    run.stop().unwrap();
    let (retained, _) = ring.read(&topic, 0, 100, |_| true).unwrap();
    assert_eq!(retained.len(), 30);
    assert!(retained.iter().all(|b| !b.pinned));
    assert_eq!(stats.compacted_bytes.load(Relaxed), 0);
    assert_eq!(ring.compacted_bytes(), 0);
    assert_eq!(stats.copies().in_place, 0);
    server.stop();
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), 3_000);
    drop(dir);
}

#[test]
fn replay_resume_filters_and_errors_with_pyarrow_flight() {
    let c = started("flight", 2, 30, 3_000);
    let (child, _stdout) = spawn_client(&["replay", &c.url, &c.topic, "3000"], "");
    let stderr = finish_client(child);
    assert!(
        stderr.contains("replayed 3000 rows in 30 batches; resumed after 7; errors ok"),
        "{stderr}"
    );
    c.run.stop().unwrap();
    c.server.stop();
}

#[test]
fn a_follower_receives_batches_produced_after_it_connects() {
    let c = started("follow", 2, 10, 1_000);
    let (child, _stdout) = spawn_client(&["follow", &c.url, &c.topic, "1000", "500"], "following");
    produce_events(&c.producer, 2, 1_000, 5, 100);
    let stderr = finish_client(child);
    assert!(stderr.contains("followed 500 rows"), "{stderr}");
    c.run.stop().unwrap();
    c.server.stop();
}

#[test]
fn twenty_followers_receive_identical_streams_and_the_lake_stays_exact() {
    let c = started("followers", 2, 4, 400);
    let (child, _stdout) = spawn_client(
        &["followers", &c.url, &c.topic, "400", "3000", "20"],
        "following",
    );
    produce_events(&c.producer, 2, 400, 30, 100);
    let stderr = finish_client(child);
    assert!(
        stderr.contains("20 followers received identical streams of 3000 rows"),
        "{stderr}"
    );
    c.run.wait("all committed", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 3_400
    });
    let stats = c.run.stats.clone();
    c.run.stop().unwrap();
    // Committed batches were copied off their Kafka messages once, and counted.
    let compacted = stats.compacted_bytes.load(Relaxed);
    assert!(compacted > 0);
    assert_eq!(compacted, c.ring.compacted_bytes());
    c.server.stop();
    assert_exact_events(
        &c.cfg,
        &sluice::config::table_name_from_topic(&c.topic),
        3_400,
    );
}

#[test]
fn a_follower_stream_ends_cleanly_at_a_schema_change_and_resumes_with_the_new_schema() {
    use arrow::datatypes::{DataType, Field, Schema};
    use sluice_producer::events::{EventGen, generate};
    let (kafka, topic, _dir, cfg) = setup("schema", 1);
    let p = kafka.producer(&topic, Encoding::default());
    produce_events(&p, 1, 0, 5, 100);
    // Then the producer switches `event` to dictionary encoding: the same DuckDB type (the lake
    // accepts it), a different Arrow schema (Flight readers see the change).
    let mut g = EventGen::starting_at(9, 500);
    for _ in 0..3 {
        let b = generate(&mut g, 100);
        let mut fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        fields[2] = Field::new("event", dict.clone(), false);
        let mut cols = b.columns().to_vec();
        cols[2] = arrow::compute::cast(&cols[2], &dict).unwrap();
        let changed =
            arrow::array::RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), cols)
                .unwrap();
        p.send(Some(0), None, &[changed]).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let (run, server, _ring) = start_with_flight(&cfg);
    run.wait("all rows", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 800
    });
    let url = format!("grpc://{}", server.addr);
    let (child, _stdout) = spawn_client(&["schema", &url, &topic, "500", "300"], "");
    let stderr = finish_client(child);
    assert!(
        stderr.contains("schema change: 500 rows, clean end, then 300 rows as dictionary<values=string, indices=int32"),
        "{stderr}"
    );
    run.stop().unwrap();
    server.stop();
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), 800);
}

#[test]
fn ingestion_and_live_publishing_continue_while_a_commit_is_held_open() {
    // Every commit is held open for 3 s; flushes run on the flush thread, so the poll loop keeps
    // decoding and publishing to the live ring meanwhile.
    let (kafka, topic, _dir, cfg) = setup("inflight", 2);
    let producer = kafka.producer(&topic, Encoding::default());
    let ring = Ring::new(Retention {
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(600),
        max_uncommitted: 0,
    });
    let mut lake = Lake::open(&cfg.lake, &cfg.kafka.group_id).unwrap();
    lake.set_commit_hook(Some(std::sync::Arc::new(|_: &str| {
        std::thread::sleep(Duration::from_secs(3))
    })));
    let run = Running::start_with(&cfg, lake, |p: &Pipeline| p.attach_live(ring.clone()));
    produce_events(&producer, 2, 0, 10, 100);
    // The 1 000 rows are flushed by age (500 ms); wait until that commit is in flight.
    run.wait("a flush in flight", Duration::from_secs(60), |s| {
        s.inflight_bytes.load(Relaxed) > 0
    });
    produce_events(&producer, 2, 1_000, 10, 100);
    run.wait(
        "the next 1 000 rows consumed",
        Duration::from_secs(60),
        |s| s.rows.load(Relaxed) >= 2_000,
    );
    // Still inside the first commit's 3 s: nothing committed, yet all 2 000 rows are live.
    assert_eq!(run.stats.flushes.load(Relaxed), 0);
    assert_eq!(run.stats.committed_rows.load(Relaxed), 0);
    assert!(run.stats.inflight_bytes.load(Relaxed) > 0);
    assert_eq!(ring.describe(&topic).unwrap().rows, 2_000);
    run.wait("everything committed", Duration::from_secs(60), |s| {
        s.committed_rows.load(Relaxed) >= 2_000
    });
    run.stop().unwrap();
    assert_exact_events(&cfg, &sluice::config::table_name_from_topic(&topic), 2_000);
}

/// `sluice run` over a topic of 400 events in 2 partitions (debug logs, Flight on a free port,
/// no metrics or maintenance), with `env` and what `configure` sets (given the test's
/// directory), once it flushed.
struct Proc {
    _kafka: Kafka,
    topic: String,
    _dir: tempfile::TempDir,
    run: common::services::SluiceProc,
    /// The Flight URL from the log's `live Arrow Flight endpoint` line.
    url: String,
}

fn sluice_run(
    prefix: &str,
    env: &[(&str, &str)],
    configure: impl FnOnce(&mut sluice::config::Config, &std::path::Path),
) -> Proc {
    let (kafka, topic, dir, mut cfg) = setup(prefix, 2);
    produce_events(&kafka.producer(&topic, Encoding::default()), 2, 0, 4, 100);
    cfg.live.enabled = true;
    cfg.live.address = "127.0.0.1:0".into();
    cfg.metrics.enabled = false;
    cfg.maintenance.enabled = false;
    configure(&mut cfg, dir.path());
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let mut env = env.to_vec();
    env.push(("SLUICE_LOG__LEVEL", "debug"));
    let mut run = common::services::SluiceProc::start(&path, dir.path().join("run.log"), &env);
    let log = run.wait_for_log("flushed", 1, Duration::from_secs(60));
    let url = log
        .lines()
        .find(|l| l.contains("live Arrow Flight endpoint"))
        .and_then(|l| l.split("url=").nth(1))
        .and_then(|u| u.split_whitespace().next())
        .unwrap_or_else(|| panic!("no Flight url in the log:\n{log}"))
        .to_string();
    Proc {
        _kafka: kafka,
        topic,
        _dir: dir,
        run,
        url,
    }
}

/// Runs the client script with `args`; returns its stderr, asserting it succeeded.
fn client(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(SCRIPT)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// Stops `p` (exit code 0) and returns its log.
fn stopped(mut p: Proc) -> String {
    assert_eq!(p.run.terminate(Duration::from_secs(30)), Some(0));
    p.run.output()
}

/// `sluice run` with `live.auth_token` on all interfaces: pyarrow.flight without the token (or
/// with a wrong one) gets UNAUTHENTICATED, with it reads every row; the token is in no log line,
/// debug included, and a warning says it travels in plaintext.
#[test]
fn a_bearer_token_guards_flight_and_never_reaches_the_logs() {
    const TOKEN: &str = "flight-token-never-logged";
    let p = sluice_run(
        "flightauth",
        &[("SLUICE_LIVE__AUTH_TOKEN", TOKEN)],
        |cfg, _| {
            cfg.live.address = "0.0.0.0:0".into();
        },
    );
    assert!(p.url.starts_with("grpc://0.0.0.0:"), "{}", p.url);
    let url = p.url.replace("0.0.0.0", "127.0.0.1");
    let stderr = client(&["auth", &url, &p.topic, "400", TOKEN]);
    assert!(
        stderr.contains("refused without and with a wrong token (Flight returned unauthenticated error, with message: this Flight endpoint needs a bearer token (header authorization: Bearer <live.auth_token>)"),
        "{stderr}"
    );
    let text = stopped(p);
    assert!(!text.contains(TOKEN), "{text}");
    assert!(
        text.contains("Flight takes live.auth_token in plaintext on a non-loopback address (set live.tls_cert_path and live.tls_key_path) address=0.0.0.0:"),
        "{text}"
    );
    assert!(!text.contains("without authentication"), "{text}");
}

/// The lines of a PEM file between its BEGIN and END markers.
fn pem_body(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

/// `sluice run` with `live.tls_cert_path`/`tls_key_path` and `live.auth_token`: the log gives a
/// `grpc+tls://` URL; pyarrow.flight in plaintext, without the CA, and over TLS without the
/// token is refused; with the CA and the token it reads every row. Neither the token nor a
/// line of the key file is in the log, debug included.
#[test]
fn flight_over_tls_with_a_token_reads_with_both_and_never_logs_the_key() {
    const TOKEN: &str = "tls-token-never-logged";
    let mut pki = None;
    let p = sluice_run(
        "flighttls",
        &[("SLUICE_LIVE__AUTH_TOKEN", TOKEN)],
        |cfg, dir| {
            let k = common::pki::Pki::generate(dir);
            cfg.live.tls_cert_path = Some(k.server.cert.clone());
            cfg.live.tls_key_path = Some(k.server.key.clone());
            pki = Some(k);
        },
    );
    let pki = pki.unwrap();
    assert!(p.url.starts_with("grpc+tls://127.0.0.1:"), "{}", p.url);
    let ca = pki.ca.to_str().unwrap();
    let stderr = client(&["tls", &p.url, &p.topic, "400", ca, TOKEN]);
    let addr = p.url.trim_start_matches("grpc+tls://");
    let unavailable = "FlightUnavailableError: Flight returned unavailable error, with message: failed to connect to all addresses; last error:";
    for want in [
        // The server's TLS layer drops a connection that does not start with a ClientHello.
        format!("plaintext: {unavailable} UNAVAILABLE: ipv4:{addr}: Socket closed\n"),
        format!("untrusted: {unavailable} UNKNOWN: ipv4:{addr}: Ssl handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:0A000086:SSL routines::certificate verify failed: unable to get local issuer certificate\n"),
        "no token: FlightUnauthenticatedError: Flight returned unauthenticated error, with message: this Flight endpoint needs a bearer token (header authorization: Bearer <live.auth_token>)\n".into(),
        "read 400 rows over TLS with the token\n".into(),
    ] {
        assert!(stderr.contains(&want), "no {want:?} in:\n{stderr}");
    }
    let key = pem_body(&pki.server.key);
    let text = stopped(p);
    assert!(
        text.contains(&format!(
            "Flight serves TLS cert={} client_ca=None",
            pki.server.cert.display()
        )),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(key.len(), 3);
    for line in key {
        assert!(
            !text.contains(&line),
            "a line of the key is in the log:\n{text}"
        );
    }
}

/// `sluice run` with `live.tls_client_ca_path` (no token) on all interfaces: a pyarrow.flight
/// client without a certificate, and one with a certificate of another CA, are refused at the
/// handshake; with a certificate of the CA it reads every row. No warning about a missing
/// authentication.
#[test]
fn flight_with_client_certificates_reads_only_with_one_of_the_ca() {
    let mut pki = None;
    let p = sluice_run("flightmtls", &[], |cfg, dir| {
        cfg.live.address = "0.0.0.0:0".into();
        let k = common::pki::Pki::generate(dir);
        cfg.live.tls_cert_path = Some(k.server.cert.clone());
        cfg.live.tls_key_path = Some(k.server.key.clone());
        cfg.live.tls_client_ca_path = Some(k.ca.clone());
        pki = Some(k);
    });
    let pki = pki.unwrap();
    assert!(p.url.starts_with("grpc+tls://0.0.0.0:"), "{}", p.url);
    let url = p.url.replace("0.0.0.0", "127.0.0.1");
    let path = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    let stderr = client(&[
        "mtls",
        &url,
        &p.topic,
        "400",
        &path(&pki.ca),
        &path(&pki.client.cert),
        &path(&pki.client.key),
        &path(&pki.stranger.cert),
        &path(&pki.stranger.key),
    ]);
    // pyarrow reports both as a failed read of the connection; its gRPC log names the alert
    // the server sent (the other CA has the CA's name, so its signature is what fails).
    let addr = url.trim_start_matches("grpc+tls://");
    let refused = format!(
        "FlightUnavailableError: Flight returned unavailable error, with message: failed to connect to all addresses; last error: UNAVAILABLE: ipv4:{addr}: Unwrap failed (TSI_DATA_CORRUPTED)\n"
    );
    for want in [
        format!("no certificate: {refused}"),
        format!("other CA: {refused}"),
        "SSL routines::tlsv13 alert certificate required\n".into(),
        "SSL routines::tlsv1 alert decrypt error\n".into(),
        "read 400 rows with the client certificate\n".into(),
    ] {
        assert!(stderr.contains(&want), "no {want:?} in:\n{stderr}");
    }
    let (no_cert, other) = (
        stderr.find("alert certificate required").unwrap(),
        stderr.find("alert decrypt error").unwrap(),
    );
    assert!(
        no_cert < stderr.find("no certificate: ").unwrap()
            && stderr.find("no certificate: ").unwrap() < other
            && other < stderr.find("other CA: ").unwrap(),
        "{stderr}"
    );
    let text = stopped(p);
    assert!(
        text.contains(&format!(
            "Flight serves TLS cert={} client_ca=Some(\"{}\")",
            pki.server.cert.display(),
            pki.ca.display()
        )),
        "{text}"
    );
    // Client certificates are authentication: no warning for serving all interfaces.
    assert!(!text.contains("without authentication"), "{text}");
}

/// A key file that is not the certificate's: the Flight endpoint does not start, and the error
/// names both files.
#[test]
fn a_key_that_is_not_the_certificates_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::pki::Pki::generate(dir.path());
    let mut cfg = sluice::config::LiveConfig {
        address: "127.0.0.1:0".into(),
        tls_cert_path: Some(pki.server.cert.clone()),
        tls_key_path: Some(pki.client.key.clone()),
        ..Default::default()
    };
    cfg.validate().unwrap();
    let servers = Servers::new().unwrap();
    let err = match sluice::live::start(&cfg, &servers, 0, None) {
        Ok(_) => panic!("started with the client's key"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err,
        format!(
            "TLS setup of live.tls_cert_path {} with live.tls_key_path {} failed: keys may not be consistent: KeyMismatch",
            pki.server.cert.display(),
            pki.client.key.display()
        )
    );
    cfg.tls_key_path = Some(pki.server.key.clone());
    let (_, server) = sluice::live::start(&cfg, &servers, 0, None)
        .unwrap()
        .unwrap();
    assert_eq!(server.url(), format!("grpc+tls://{}", server.addr));
    servers.stop();
}
