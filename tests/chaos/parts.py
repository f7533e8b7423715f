"""The real parts the chaos suite runs and breaks, each a process on loopback that it owns.

- `MockKafka`: librdkafka's mock cluster in a process of its own (`sluice-mock-kafka`).
- `Tansu`: the Kafka-compatible broker tansu (memory storage), frozen with SIGSTOP.
- `S3`: moto's S3 server behind a TCP proxy that the suite takes down and brings back on the
  same port (moto keeps its objects in memory, so stopping moto itself would lose the lake).
- `Postgres`: a throwaway PostgreSQL cluster, stopped with `pg_ctl stop -m immediate` and started
  again on the same port.
- `Sluice`: one `sluice run` process (restartable), its log, and its /metrics.
"""

import glob
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
S3_KEY_ID = "chaos-key"
S3_SECRET = "chaos-secret-never-logged"
# The cluster trusts loopback, so this password is never checked; sluice must never show it.
PG_PASSWORD = "chaos-pg-password-never-logged"


def free_port():
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, proc=None, timeout=60.0, log=None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} before listening on "
                                   f"{port}{tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port} within {timeout} s"
                                   f"{tail(log)}")
            time.sleep(0.1)


def tail(path, chars=3000):
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return "\n--- " + path + " ---\n" + f.read()[-chars:]


class MockKafka:
    """librdkafka's mock cluster, hosted by `sluice-mock-kafka` (it exits when stdin closes)."""

    def __init__(self, exe, topic, partitions, work):
        self.log = os.path.join(work, f"mock-kafka-{time.monotonic_ns()}.log")
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([exe, "--topic", f"{topic}:{partitions}",
                                          "--initial-rebalance-delay-ms", "100"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True)
        self.brokers = self.proc.stdout.readline().strip()
        if not self.brokers:
            raise RuntimeError(f"sluice-mock-kafka exited with {self.proc.wait()}{tail(self.log)}")
        self.kind = "mock"

    def died(self):
        """Why the broker process is gone, or None while it runs."""
        if self.proc.poll() is None:
            return None
        return f"the mock broker exited with {self.proc.returncode}{tail(self.log)}"

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Tansu:
    """tansu 0.6 with memory storage on a free port (it advertises the port before binding it,
    so it is chosen first; a lost race is retried on another)."""

    def __init__(self, exe, topic, partitions, work):
        self.exe = exe
        self.kind = "tansu"
        for attempt in range(5):
            self.port = free_port()
            self.brokers = f"127.0.0.1:{self.port}"
            url = f"tcp://{self.brokers}"
            self.log = os.path.join(work, f"tansu-{attempt}.log")
            with open(self.log, "w") as out:
                self.proc = subprocess.Popen(
                    [exe, "broker", "--listener-url", url, "--advertised-listener-url", url,
                     "--storage-engine", "memory://tansu/"], stdout=out, stderr=subprocess.STDOUT)
            try:
                wait_port(self.port, "tansu", self.proc, 60, self.log)
                break
            except RuntimeError:
                self.proc.kill()
                self.proc.wait()
                if attempt == 4:
                    raise
        out = subprocess.run([exe, "topic", "create", "--broker", f"tcp://{self.brokers}",
                              "--partitions", str(partitions), topic],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"tansu topic create: {out.stderr}")

    def died(self):
        """Why the broker process is gone, or None while it runs."""
        if self.proc.poll() is None:
            return None
        return f"tansu exited with {self.proc.returncode}{tail(self.log)}"

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        self.thaw()
        self.proc.kill()
        self.proc.wait()


class Proxy:
    """A TCP proxy on a fixed loopback port in front of `target`: `down()` closes the listener
    and resets every open connection (as a stopped server would), `up()` listens again on the
    same port."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.lock = threading.Lock()
        self.conns = []
        self.listener = None
        self.up()

    def up(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(100):
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the proxy could not bind {self.port} again")
        s.listen(128)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self):
        with self.lock:
            listener, self.listener = self.listener, None
            conns, self.conns = self.conns, []
        listener.close()
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()
            except OSError:
                pass

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.listener is not listener:
                    client.close()
                    server.close()
                    return
                self.conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a, b):
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select(timeout=1):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass
            with self.lock:
                self.conns = [c for c in self.conns if c not in (a, b)]


class S3:
    """moto's S3 server (tests/python/s3_server.py) with one bucket, reached through a `Proxy`."""

    def __init__(self, python, work):
        self.log = os.path.join(work, "moto.log")
        out = open(self.log, "w")
        self.proc = subprocess.Popen([python, os.path.join(ROOT, "tests/python/s3_server.py")],
                                     stdout=subprocess.PIPE, stderr=out, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"moto printed {line!r}{tail(self.log)}")
        self.moto_port = int(line)
        self.bucket = "chaos"
        subprocess.run([python, "-c",
                        "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], "
                        "region_name='us-east-1', aws_access_key_id=sys.argv[3], "
                        "aws_secret_access_key=sys.argv[4]).create_bucket(Bucket=sys.argv[2])",
                        f"http://127.0.0.1:{self.moto_port}", self.bucket, S3_KEY_ID, S3_SECRET],
                       check=True, timeout=60)
        self.proxy = Proxy(self.moto_port)
        self.endpoint = f"127.0.0.1:{self.proxy.port}"

    def down(self):
        self.proxy.down()

    def up(self):
        self.proxy.up()

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def as_pg_user(cmd):
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Postgres:
    """A throwaway PostgreSQL cluster on a fixed loopback port, database `lake` (bench/scaling.py
    uses it too)."""

    def __init__(self):
        bins = sorted(p for p in glob.glob("/usr/lib/postgresql/*/bin")
                      if os.path.exists(os.path.join(p, "initdb")))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql): scripts/setup")
        self.bin = bins[-1]
        self.dir = tempfile.mkdtemp(prefix="sluice-chaos-pg-")
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", self.dir], check=True)
        self.data = os.path.join(self.dir, "data")
        subprocess.run(as_pg_user([f"{self.bin}/initdb", "-D", self.data, "-U", "sluice",
                                   "--auth=trust", "-E", "UTF8", "--no-sync"]),
                       check=True, capture_output=True)
        self.port = free_port()
        self.start()
        self.dsn = self.createdb("lake") + f" password={PG_PASSWORD}"

    def createdb(self, name):
        """Creates database `name`; its libpq connection string."""
        subprocess.run([f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                        "sluice", name], check=True, capture_output=True)
        return f"host=127.0.0.1 port={self.port} dbname={name} user=sluice"

    def start(self):
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
                "-c max_connections=200")
        subprocess.run(as_pg_user([f"{self.bin}/pg_ctl", "-D", self.data, "-o", opts, "-l",
                                   os.path.join(self.dir, "pg.log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True)

    def crash(self):
        subprocess.run(as_pg_user([f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate",
                                   "-w", "stop"]), check=True, capture_output=True)

    def stop(self):
        subprocess.run(as_pg_user([f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate",
                                   "stop"]), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def metrics(port):
    """{name{labels}: value} of one instance's /metrics, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def readyz(port):
    """(status, body) of /readyz, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode().strip()
    except OSError:
        return None


# The counters the suite sums over every life of every instance ("retries counted").
COUNTERS = ("sluice_flush_failures_total", "sluice_commit_conflicts_total",
            "sluice_offset_conflicts_total", "sluice_flushes_total",
            "sluice_maintenance_passes_total")


class Sluice:
    """One `sluice run` instance: started, killed and restarted by the scenario; its counters
    are sampled while it lives and summed over its lives."""

    def __init__(self, exe, name, work, config_text):
        self.exe = exe
        self.name = name
        self.work = work
        self.port = free_port()
        self.config = os.path.join(work, f"{name}.toml")
        with open(self.config, "w") as f:
            f.write(config_text.replace("@METRICS@", f"127.0.0.1:{self.port}"))
        self.log = os.path.join(work, f"{name}.log")
        self.proc = None
        self.lives = 0
        self.totals = {}
        self.last = {}
        self.exits = []  # exit codes of lives that ended on their own
        self.lock = threading.Lock()

    def start(self):
        assert self.proc is None or self.proc.poll() is not None
        self._bank()
        self.lives += 1
        out = open(self.log, "a")
        out.write(f"\n=== life {self.lives} ===\n")
        out.flush()
        self.proc = subprocess.Popen([self.exe, "run", "--config", self.config], cwd=self.work,
                                     stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def sample(self):
        if not self.alive():
            return
        m = metrics(self.port)
        if m is None:
            return
        with self.lock:
            self.last = {k: sum(v for n, v in m.items() if n.split("{")[0] == k)
                         for k in COUNTERS}

    def _bank(self):
        with self.lock:
            for k, v in self.last.items():
                self.totals[k] = self.totals.get(k, 0) + v
            self.last = {}

    def kill(self, sig=signal.SIGKILL):
        self.sample()
        self.proc.send_signal(sig)
        self.proc.wait()
        self.proc._chaos_seen = True  # killed by the suite, not an exit of its own

    def check_exit(self, after=1.0):
        """The exit code of a life that ended on its own at least `after` seconds ago (a
        supervisor's restart delay), recorded once; None otherwise."""
        if self.proc is None or self.proc.poll() is None or \
                getattr(self.proc, "_chaos_seen", False):
            return None
        if not hasattr(self.proc, "_chaos_exit_at"):
            self.proc._chaos_exit_at = time.monotonic()
        if time.monotonic() - self.proc._chaos_exit_at < after:
            return None
        self.proc._chaos_seen = True
        self.exits.append(self.proc.returncode)
        return self.proc.returncode

    def terminate(self, timeout=120):
        """SIGTERM, and the exit code (a clean stop is 0)."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.sample()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = "hung"
        self.proc._chaos_seen = True
        self._bank()
        return code

    def counters(self):
        with self.lock:
            return {k: self.totals.get(k, 0) + self.last.get(k, 0) for k in COUNTERS}

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()
