"""Multi-instance scaling for bench/run.py: 1, 2, 3 `sluice run` processes in one consumer group
sharing one DuckLake (PostgreSQL catalog on a throwaway cluster, Parquet on local disk).

For each count: the instances start against an empty 8-partition topic and wait until the group
holds all 8 partitions (summed from each instance's /metrics, stable for 3 s); then the producer
writes the rows as fast as it can, and the clock runs from the producer's start until the
instances' /metrics sum to every row committed.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from procs import cpu_seconds, free_port

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "chaos"))
from parts import Postgres  # noqa: E402  (the chaos suite's throwaway cluster)

PARTITIONS = 8



def metrics(port):
    """{name: summed value} of one instance's /metrics, or {} when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        name = name.split("{", 1)[0]
        out[name] = out.get(name, 0.0) + float(value)
    return out


def total(ports, name):
    return sum(metrics(p).get(name, 0.0) for p in ports)



def run_count(a, log, brokers, pg, count, rows):
    topic = f"scale-{count}"
    catalog = pg.createdb(f"scale_{count}")
    lake = tempfile.mkdtemp(prefix="sluice-bench-scale-")
    # The topic exists (with 8 partitions) before anyone subscribes.
    subprocess.run([a.loadgen, "--brokers", brokers, "--topic", topic, "--partitions",
                    str(PARTITIONS), "--total", "0"], check=True, capture_output=True,
                   timeout=120)
    procs, ports, logs = [], [], []
    try:
        for i in range(count):
            port = free_port()
            cfg = os.path.join(lake, f"sluice-{i}.toml")
            with open(cfg, "w") as f:
                f.write(f"""[kafka]
brokers = "{brokers}"
group_id = "{topic}"
topics = ["{topic}"]
[kafka.properties]
"fetch.wait.max.ms" = "10"
"session.timeout.ms" = "10000"
"heartbeat.interval.ms" = "1000"
[lake]
catalog_kind = "postgres"
catalog = "{catalog}"
data_path = "{lake}/data/"
[flush]
memory_cap_bytes = {a.memory_cap_mib * 1024 * 1024}
max_age_ms = 2000
[live]
enabled = false
[metrics]
address = "127.0.0.1:{port}"
""")
            out = open(os.path.join(lake, f"sluice-{i}.log"), "w")
            logs.append(out)
            procs.append(subprocess.Popen([a.sluice, "run", "--config", cfg], stdout=out,
                                          stderr=subprocess.STDOUT))
            ports.append(port)
        deadline = time.monotonic() + 180
        stable_since = None
        while True:
            assigned = total(ports, "sluice_assigned_partitions")
            now = time.monotonic()
            if assigned == PARTITIONS and all(metrics(p) for p in ports):
                stable_since = stable_since or now
                if now - stable_since >= 3:
                    break
            else:
                stable_since = None
            if now > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"{count} instance(s): the group held {assigned} of "
                                 f"{PARTITIONS} partitions after 180 s (logs in {lake})")
            time.sleep(0.2)
        per_instance = [metrics(p).get("sluice_assigned_partitions", 0) for p in ports]
        log(f"  {count} instance(s): partitions {per_instance}; producing {rows:,} rows")
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        t0 = time.monotonic()
        prod = subprocess.run([a.loadgen, "--brokers", brokers, "--topic", topic,
                               "--partitions", str(PARTITIONS), "--total", str(rows),
                               "-X", "batch.size=16777216", "-X", "linger.ms=20"],
                              capture_output=True, text=True, timeout=600)
        if prod.returncode != 0:
            raise SystemExit(f"producing {topic} failed:\n{prod.stderr[-2000:]}")
        produced = time.monotonic() - t0
        deadline = time.monotonic() + 600
        while (c := total(ports, "sluice_committed_rows_total")) < rows:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"{count} instance(s): {c:,.0f} of {rows:,} rows committed "
                                 f"(logs in {lake})")
            time.sleep(0.05)
        seconds = time.monotonic() - t0
        cpu = [cpu_seconds(p.pid) - c0 for p, c0 in zip(procs, cpu0)]
        conflicts = total(ports, "sluice_commit_conflicts_total")
        files = len(glob.glob(f"{lake}/data/**/*.parquet", recursive=True))
        r = {"instances": count, "rows": rows, "seconds": seconds,
             "rows_per_s": rows / seconds, "producer_seconds": produced,
             "partitions_per_instance": per_instance, "commit_conflicts": conflicts,
             "files": files, "committed_rows": c, "cpu_seconds": cpu,
             "cores_busy": sum(cpu) / seconds}
        log(f"    {count} instance(s): {rows:,} rows committed {seconds:.2f} s after the "
            f"producer started ({rows / seconds:,.0f} rows/s; producer {produced:.2f} s), "
            f"{conflicts:.0f} commit conflicts, {files} files, sluice CPU "
            f"{sum(cpu):.1f} s ({sum(cpu) / seconds:.2f} cores)")
        return r
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()
        shutil.rmtree(lake, ignore_errors=True)


def scaling(a, log, tansu_cls, rows):
    broker = tansu_cls(a.tansu)
    pg = Postgres()
    try:
        log(f"scaling: tansu on {broker.brokers}, PostgreSQL on {pg.port}")
        return [run_count(a, log, broker.brokers, pg, n, rows) for n in (1, 2, 3)]
    finally:
        pg.stop()
        broker.stop()
