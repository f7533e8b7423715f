//! Real servers on loopback for integration tests, each a child process killed on drop: an S3
//! server (`moto_server`, from the test venv), a throwaway PostgreSQL cluster (Debian's
//! postgresql, `initdb` + `pg_ctl`) and the Kafka-compatible broker `tansu`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::python;

/// The port a server that binds port 0 itself printed as the first line of its log.
fn reported_port(what: &str, child: &mut Owned, log: &Path, timeout: Duration) -> u16 {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().next().filter(|_| text.contains('\n')) {
            return line
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{what} printed {line:?}, not its port:\n{text}"));
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("{what} exited with {status} before reporting its port:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not report its port within {timeout:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `port` accepts connections, or panics naming `what` and its log.
fn wait_for_port(port: u16, what: &str, child: &mut Owned, log: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "{what} exited with {status} before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within {timeout:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct Owned(pub Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Owned {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().unwrap();
    Owned(
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}")),
    )
}

/// An S3-compatible server (moto) on loopback with one bucket.
pub struct S3Server {
    _child: Owned,
    _dir: tempfile::TempDir,
    pub port: u16,
    pub bucket: String,
}

/// Access key and secret the tests use with the S3 server (moto accepts any).
pub const S3_KEY_ID: &str = "sluice-test-key";
pub const S3_SECRET: &str = "sluice-test-secret-do-not-log";

impl S3Server {
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/s3_server.py");
        let mut child = spawn_logged(Command::new(python()).arg(script), &log);
        let port = reported_port("moto_server", &mut child, &log, Duration::from_secs(60));
        wait_for_port(
            port,
            "moto_server",
            &mut child,
            &log,
            Duration::from_secs(60),
        );
        let bucket = "sluice-lake".to_string();
        let status = Command::new(python())
            .args([
                "-c",
                "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                 aws_access_key_id=sys.argv[3], aws_secret_access_key=sys.argv[4]).create_bucket(Bucket=sys.argv[2])",
            ])
            .arg(format!("http://127.0.0.1:{port}"))
            .arg(&bucket)
            .arg(S3_KEY_ID)
            .arg(S3_SECRET)
            .status()
            .expect("run boto3");
        assert!(status.success(), "creating bucket {bucket} failed");
        S3Server {
            _child: child,
            _dir: dir,
            port,
            bucket,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets the lake of `cfg` to `s3://bucket/prefix/` on this server.
    pub fn configure(&self, lake: &mut sluice::config::LakeConfig, prefix: &str) {
        lake.data_path = format!("s3://{}/{prefix}/", self.bucket);
        lake.s3.endpoint = Some(self.endpoint());
        lake.s3.region = Some("us-east-1".into());
        lake.s3.access_key_id = Some(S3_KEY_ID.into());
        lake.s3.secret_access_key = Some(sluice::config::Secret::new(S3_SECRET));
    }

    /// Keys (object names) under `prefix` in the bucket.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let out = Command::new(python())
            .args([
                "-c",
                "import sys, boto3\n\
                 c = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                 aws_access_key_id='k', aws_secret_access_key='s')\n\
                 for page in c.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[2], Prefix=sys.argv[3]):\n\
                 \x20   for o in page.get('Contents', []): print(o['Key'])",
            ])
            .arg(self.endpoint())
            .arg(&self.bucket)
            .arg(prefix)
            .output()
            .expect("run boto3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The directory of PostgreSQL's server binaries (Debian: /usr/lib/postgresql/<v>/bin).
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (/usr/lib/postgresql): run scripts/setup")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A command run as the `postgres` user when we are root (initdb refuses root).
fn as_pg_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A throwaway PostgreSQL cluster on a free loopback port, trust authentication for the
/// `sluice` role, with a database for the catalog.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("sluice-pg")
            .tempdir()
            .unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = dir.path().join("data");
        let out = as_pg_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "sluice", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Only a Unix socket in its own directory: no TCP port to pick, none to collide.
        let port = 5432;
        let opts = format!(
            "-p {port} -c listen_addresses='' -k {} -c fsync=off -c max_connections=200",
            dir.path().display()
        );
        let log = dir.path().join("postgres.log");
        let out = as_pg_user(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let pg = Postgres { dir, port, bin };
        let out = Command::new(pg.bin.join("createdb"))
            .arg("-h")
            .arg(pg.dir.path())
            .args(["-p", &port.to_string(), "-U", "sluice", "lake"])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    /// The libpq connection string of the catalog database (its Unix socket's directory).
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=sluice dbname=lake",
            self.dir.path().display(),
            self.port
        )
    }

    /// Runs `sql` with psql on the catalog database; returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "sluice", "-d", "lake"])
            .args(["-At", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Sets the lake of `cfg` to use this database as its catalog.
    pub fn configure(&self, lake: &mut sluice::config::LakeConfig) {
        lake.catalog_kind = sluice::config::CatalogKind::Postgres;
        lake.catalog = self.conninfo();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_pg_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The Kafka-compatible broker tansu, in memory, on a free loopback port.
pub struct Tansu {
    _child: Owned,
    _dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
}

impl Tansu {
    /// tansu must advertise its port before it binds it, so it cannot bind port 0 like the
    /// other servers: the port is one the kernel just handed out, and if another process took
    /// it before tansu bound it, tansu exits and starts again on another.
    pub fn start() -> Tansu {
        let bin = super::setup_tool("SLUICEDEV_TANSU", "tools/bin/tansu", "tansu");
        let dir = tempfile::tempdir().unwrap();
        for attempt in 1..=5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a port from the kernel")
                .port();
            let url = format!("tcp://127.0.0.1:{port}");
            let log = dir.path().join(format!("tansu-{attempt}.log"));
            let mut child = spawn_logged(
                Command::new(&bin)
                    .arg("broker")
                    .args(["--listener-url", &url, "--advertised-listener-url", &url])
                    .args(["--storage-engine", "memory://tansu/"]),
                &log,
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            // tansu logs a failed bind (and exits 0); until it has, a connection may reach
            // whoever took the port, so once one succeeds the log decides.
            let taken = || {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("AddrInUse")
            };
            loop {
                if let Ok(Some(status)) = child.0.try_wait() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(taken(), "tansu exited with {status}:\n{text}");
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    std::thread::sleep(Duration::from_millis(200));
                    if taken() {
                        break;
                    }
                    return Tansu {
                        _child: child,
                        _dir: dir,
                        port,
                        bin,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "tansu did not listen on {port} within 60 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("tansu found its port taken 5 times");
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic (unique name from `prefix`) with `partitions` partitions.
    pub fn topic(&self, prefix: &str, partitions: i32) -> String {
        let name = super::unique(prefix);
        let out = Command::new(&self.bin)
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args(["--partitions", &partitions.to_string()])
            .arg(&name)
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        name
    }

    /// Deletes `topic` and creates it again, empty, with `partitions` partitions.
    pub fn recreate(&self, topic: &str, partitions: i32) {
        let broker = format!("tcp://127.0.0.1:{}", self.port);
        let run = |args: &[&str]| {
            let out = Command::new(&self.bin)
                .args(args)
                .output()
                .expect("run tansu topic");
            assert!(
                out.status.success(),
                "tansu {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["topic", "delete", "--broker", &broker, topic]);
        run(&[
            "topic",
            "create",
            "--broker",
            &broker,
            "--partitions",
            &partitions.to_string(),
            topic,
        ]);
    }
}

/// A `sluice run` child process; its stdout and stderr go to a log file.
pub struct SluiceProc {
    child: Owned,
    pub log: PathBuf,
}

impl SluiceProc {
    pub fn start(config: &Path, log: PathBuf, env: &[(&str, &str)]) -> SluiceProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(["run", "--config"]).arg(config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = spawn_logged(&mut cmd, &log);
        SluiceProc { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `count` log lines contain `what`; returns the log. Panics with the log if the
    /// process exits or `timeout` passes first.
    pub fn wait_for_log(&mut self, what: &str, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.output();
            if log.lines().filter(|l| l.contains(what)).count() >= count {
                return log;
            }
            if let Some(status) = self.child.0.try_wait().unwrap() {
                panic!("sluice exited ({status}) before logging {what:?} {count} times:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "no {count} log lines with {what:?} within {timeout:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.0.kill();
        let status = self.child.0.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "sluice had exited before the SIGKILL ({status}):\n{}",
            self.output()
        );
    }

    /// Whether the process has exited (it is a zombie until reaped, or gone).
    pub fn exited(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.0.id()));
        // The state follows the parenthesized command name: `pid (comm) S …`.
        stat.map_or(true, |s| {
            s.rsplit_once(") ")
                .is_none_or(|(_, rest)| rest.starts_with('Z'))
        })
    }

    /// SIGTERM, then waits (at most `timeout`) for the exit; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not exit within {timeout:?} of SIGTERM:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
