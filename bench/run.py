"""The benchmark harness (run by scripts/bench): everything against a tansu broker process on
loopback and local DuckLake lakes, results to one JSON file.

For each dataset (events ~1 KB/row at 1,000 rows per message, narrow 40 B/row at 10,000, small:
events at 16 rows per message) on a fresh broker:
  prefill the Arrow IPC topic (catch-up mode), its JSON twin, and three equal topics with IPC body
  compression none / lz4 / zstd; then, --repeats times (5: runs on a shared 2-core VM vary by
  ±15%, so ratios are taken per repeat): sluice end to end (default, and with
  kafka.copy_payloads), sluice under the small memory cap, the sink ceiling, the delivery
  ceiling (sink and consume at once), the consume ceiling, the Python Arrow-IPC baseline and the
  Python JSON baseline; then one consume and one sluice run per compression topic.
Every run is a child process printing one JSON line; every wait is bounded.

The other sections (--sections): latency (benches/live.rs), scaling (bench/scaling.py), readers
(bench/readers.py), layout (bench/layout.py), freshness (bench/freshness.py: 100 rows/s for
--freshness-seconds with data inlining on and off, side by side), realtime (bench/realtime.py:
the real-time views over Flight SQL: freshness beside the lake's, queries, ingestion beside queries).
"""

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from procs import cpu_seconds, free_port

HERE = os.path.dirname(os.path.abspath(__file__))

DATASETS = {
    # rows: catch-up backlog. events: 2.7 M rows = 2.74 GB of IPC, over 10x a 256 MiB cap.
    "events": {"rows": 2_700_000, "rows_per_message": 1000, "json_rows": 2_700_000,
               "compression_rows": 1_000_000},
    "narrow": {"rows": 50_000_000, "rows_per_message": 10_000, "json_rows": 10_000_000,
               "compression_rows": 10_000_000},
    # Small messages: events rows 16 per message (~18 KB), what a producer sending one message
    # per request or per small window sends.
    "small": {"dataset": "events", "rows": 1_000_000, "rows_per_message": 16,
              "json_rows": 300_000, "compression_rows": 300_000},
}
# The sink ceiling is also fed the same rows in batches of this many rows when a shape's
# messages hold fewer: the Parquet write of the data, whatever the producer's cut (row (2″)).
SINK_BATCH_ROWS = 1000
PARTITIONS = 4
PRODUCER = ["-X", "batch.size=16777216", "-X", "linger.ms=20"]
# The Python consumers write the Parquet codec sluice writes by default (DuckLake's own default
# is snappy: left at it, the Python IPC consumer wrote 1.9x the bytes for 0.8x the CPU per GB,
# which is not the same work to compare).
PY_PARQUET_COMPRESSION = "zstd"


def log(*a):
    print(*a, file=sys.stderr, flush=True)



class Tansu:
    def __init__(self, exe):
        self.port = free_port()
        self.brokers = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.brokers}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [exe, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self.log, stderr=subprocess.STDOUT)
        BROKER["pid"] = self.proc.pid
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("tansu did not start")
                time.sleep(0.2)

    def stop(self):
        BROKER["pid"] = None
        self.proc.kill()
        self.proc.wait()



BROKER = {"pid": None}


def run_json(cmd, timeout):
    """Runs one measurement; returns its JSON line, with the broker's CPU seconds meanwhile."""
    log("  $", " ".join(cmd))
    broker0 = cpu_seconds(BROKER["pid"]) if BROKER["pid"] else None
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    if broker0 is not None:
        r["broker_cpu_seconds"] = cpu_seconds(BROKER["pid"]) - broker0
    log(f"    {r['mode']}: {r['rows']} rows in {r['seconds']:.2f} s = "
        f"{r['rows_per_s']:,.0f} rows/s, {r['mb_per_s']:.1f} MB/s, "
        f"peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB")
    return r


def produce(a, brokers, topic, dataset, rows, rows_per_message, extra=()):
    cmd = [a.loadgen, "--brokers", brokers, "--topic", topic, "--partitions", str(PARTITIONS),
           "--dataset", dataset, "--total", str(rows), "--rows-per-batch",
           str(rows_per_message), *PRODUCER, *extra]
    log("  $", " ".join(cmd))
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"producing {topic} failed:\n{p.stderr[-3000:]}")
    last = p.stderr.strip().splitlines()[-1]
    log(f"    {last} ({time.monotonic() - t0:.1f} s)")
    return last


def parquet_settings(python, lake_dir):
    """Codec and row groups of the Parquet files sluice wrote (DuckDB's parquet_metadata)."""
    code = f"""
import duckdb, json, glob
files = sorted(glob.glob({lake_dir!r} + '/data/**/*.parquet', recursive=True))
con = duckdb.connect()
q = con.execute("SELECT DISTINCT compression FROM parquet_metadata(?)", [files]).fetchall()
rg = con.execute("SELECT count(*), min(num_rows), max(num_rows), avg(num_rows) FROM "
    "(SELECT DISTINCT file_name, row_group_id, row_group_num_rows AS num_rows "
    "FROM parquet_metadata(?))", [files]).fetchone()
print(json.dumps({{"files": len(files), "codecs": sorted({{r[0] for r in q}}),
    "row_groups": rg[0], "row_group_rows_min": rg[1], "row_group_rows_max": rg[2],
    "row_group_rows_avg": rg[3]}}))
"""
    p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"reading Parquet metadata failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout)


def machine(a):
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    lib = subprocess.run([a.python, "-c", "import confluent_kafka, duckdb, pyarrow; "
                          "print(confluent_kafka.libversion()[0], duckdb.__version__, "
                          "pyarrow.__version__)"], capture_output=True, text=True).stdout.split()
    tansu = subprocess.run([a.tansu, "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "os": platform.platform(),
            "librdkafka_python": lib[0] if lib else None,
            "duckdb_python": lib[1] if len(lib) > 1 else None,
            "pyarrow": lib[2] if len(lib) > 2 else None, "broker": tansu,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def bench_dataset(a, name, spec, results):
    rows, rpm = spec["rows"], spec["rows_per_message"]
    dataset = spec.get("dataset", name)
    json_rows, crows = spec["json_rows"], spec["compression_rows"]
    broker = Tansu(a.tansu)
    try:
        b = broker.brokers
        log(f"{name}: tansu on {b}")
        produce(a, b, f"{name}-ipc", dataset, rows, rpm)
        produce(a, b, f"{name}-json", dataset, json_rows, rpm, ["--values", "json"])
        for codec in ("none", "lz4", "zstd"):
            produce(a, b, f"{name}-{codec}", dataset, crows, rpm, ["--compression", codec])
        ceiling = [a.ceilings, "--brokers", b, "--dataset", dataset,
                   "--rows-per-message", str(rpm)]
        capped = ["--memory-cap-mib", str(a.memory_cap_mib)]
        for r in range(a.repeats):
            log(f"{name}: repeat {r + 1} of {a.repeats}")
            runs = {}
            keep = tempfile.mkdtemp(prefix="sluice-bench-") if r == 0 else None
            extra = ["--dir", keep] if keep else []
            # Throughput with the default configuration (memory cap 1 GiB), then memory under
            # the small cap.
            runs["sluice"] = run_json(ceiling + ["--mode", "sluice", "--topic", f"{name}-ipc",
                                                 "--rows", str(rows), "--memory-cap-mib",
                                                 "1024"] + extra, 1800)
            # The same with kafka.copy_payloads (decode an aligned copy, release the message).
            runs["sluice_copy"] = run_json(ceiling + ["--mode", "sluice", "--topic",
                                                      f"{name}-ipc", "--rows", str(rows),
                                                      "--memory-cap-mib", "1024",
                                                      "--copy-payloads"], 1800)
            runs["sluice_capped"] = run_json(ceiling + capped + [
                "--mode", "sluice", "--topic", f"{name}-ipc", "--rows", str(rows)], 1800)
            if keep:
                runs["sluice"]["parquet"] = parquet_settings(a.python, keep)
                shutil.rmtree(keep, ignore_errors=True)
            runs["sink"] = run_json(ceiling + ["--mode", "sink", "--topic", f"{name}-ipc",
                                               "--rows", str(rows)], 1800)
            if rpm < SINK_BATCH_ROWS:
                runs["sink_1000"] = run_json(ceiling + [
                    "--mode", "sink", "--topic", f"{name}-ipc", "--rows", str(rows),
                    "--sink-batch-rows", str(SINK_BATCH_ROWS)], 1800)
            # The sink and consume ceilings at once: the work no Kafka → DuckLake consumer
            # avoids (the broker serving, librdkafka receiving, Parquet writing) on the same
            # cores.
            runs["delivery"] = run_json(ceiling + ["--mode", "delivery", "--topic",
                                                   f"{name}-ipc", "--rows", str(rows)], 1800)
            runs["consume"] = run_json(ceiling + ["--mode", "consume", "--topic",
                                                  f"{name}-ipc", "--rows", str(rows)], 1800)
            for mode, topic, n in (("ipc", f"{name}-ipc", rows),
                                   ("json", f"{name}-json", json_rows)):
                d = tempfile.mkdtemp(prefix="sluice-bench-py-")
                try:
                    runs[f"python_{mode}"] = run_json(
                        [a.python, os.path.join(HERE, "py_consumers.py"), "--mode", mode,
                         "--brokers", b, "--topic", topic, "--dataset", dataset, "--rows", str(n),
                         "--dir", d, "--seconds", str(a.py_seconds),
                         "--parquet-compression", PY_PARQUET_COMPRESSION], 600 + a.py_seconds)
                finally:
                    shutil.rmtree(d, ignore_errors=True)
            results["throughput"].append({"dataset": name, "repeat": r, "runs": runs})
        if name == "events":
            # Before/after of the gap-closing change (librdkafka's fetch.queue.backoff.ms back at
            # its 1000 ms default) and the cost of the tight cap (the default 1 GiB cap).
            log(f"{name}: gap")
            base = ceiling + capped + ["--mode", "sluice", "--topic", f"{name}-ipc", "--rows",
                                       str(rows)]
            results["gap"].append({"dataset": name, "variant": "fetch.queue.backoff.ms=1000",
                                   "run": run_json(base + ["--property",
                                                           "fetch.queue.backoff.ms=1000"], 1800)})
            # tansu holds every fetch for fetch.wait.max.ms: librdkafka's 500 ms default.
            results["gap"].append({"dataset": name, "variant": "consume, fetch.wait.max.ms=500",
                                   "run": run_json(ceiling + [
                                       "--mode", "consume", "--topic", f"{name}-none",
                                       "--rows", str(crows), "--fetch-wait-ms", "500"], 1800)})
        for codec in ("none", "lz4", "zstd"):
            log(f"{name}: compression {codec}")
            topic = f"{name}-{codec}"
            c = run_json(ceiling + ["--mode", "consume", "--topic", topic, "--rows",
                                    str(crows)], 1800)
            s = run_json(ceiling + ["--mode", "sluice", "--topic", topic, "--rows",
                                    str(crows), "--memory-cap-mib", "1024"], 1800)
            results["compression"].append({"dataset": name, "codec": codec, "consume": c,
                                           "sluice": s})
    finally:
        broker.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ceilings", required=True, help="benches/ceilings.rs executable")
    ap.add_argument("--live", required=True, help="benches/live.rs executable")
    ap.add_argument("--sluice", required=True, help="the sluice binary (scaling runs)")
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--tansu", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--py-seconds", type=float, default=60.0,
                    help="time bound of each Python baseline run")
    ap.add_argument("--memory-cap-mib", type=int, default=256)
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies every dataset's row counts (0.05 for a quick look)")
    ap.add_argument("--datasets", default="events,narrow,small")
    ap.add_argument("--latency-secs", type=int, default=10)
    ap.add_argument("--visibility-ages-ms", default="1000,60000")
    ap.add_argument("--followers", type=int, default=20)
    ap.add_argument("--scaling-rows", type=int, default=2_000_000)
    ap.add_argument("--readers-rows", type=int, default=1_000_000)
    ap.add_argument("--layout-rows", type=int, default=1_000_000)
    ap.add_argument("--freshness-seconds", type=float, default=600.0,
                    help="length of the freshness section's paced run")
    ap.add_argument("--realtime-seconds", type=float, default=60.0,
                    help="length of the realtime section's paced run (lake vs Flight SQL view)")
    ap.add_argument("--realtime-rows", default="1000000,10000000",
                    help="table sizes of the realtime section's query and ingest runs")
    ap.add_argument("--freshness-maintenance-interval", default="5m",
                    help="maintenance.interval of the freshness runs (the lease is 3x)")
    ap.add_argument("--sections",
                    default="throughput,latency,scaling,readers,layout,freshness,realtime",
                    help="which sections to run")
    ap.add_argument("--merge", action="store_true",
                    help="replace only the sections run in an existing --out file")
    a = ap.parse_args()

    sections = set(a.sections.split(","))
    results = {"machine": machine(a), "settings": {
        "repeats": a.repeats, "py_seconds": a.py_seconds, "memory_cap_mib": a.memory_cap_mib,
        "scale": a.scale, "partitions": PARTITIONS, "producer": " ".join(PRODUCER),
        "flush_mib": 128, "fetch_wait_max_ms": 10, "catalog": "sqlite", "datasets": {},
        "python_parquet_compression": PY_PARQUET_COMPRESSION},
        "throughput": [], "compression": [], "latency": [], "followers": [], "gap": [],
        "scaling": [],
        "readers": [], "layout": [], "freshness": {}, "realtime": {}}
    started = time.monotonic()
    for name in a.datasets.split(",") if "throughput" in sections else []:
        spec = {k: max(1, int(v * a.scale)) if k not in ("rows_per_message", "dataset") else v
                for k, v in DATASETS[name].items()}
        results["settings"]["datasets"][name] = spec
        bench_dataset(a, name, spec, results)
    if "latency" in sections:
        latency(a, results)
    if "scaling" in sections:
        import scaling
        results["scaling"] = scaling.scaling(a, log, Tansu, a.scaling_rows)
        results["settings"]["scaling_rows"] = a.scaling_rows
    if "readers" in sections:
        import readers
        n = max(1, int(a.readers_rows * a.scale))
        results["readers"] = readers.readers(a, log, Tansu, run_json, produce, n, 1000)
        results["settings"]["readers_rows"] = n
    if "layout" in sections:
        import layout
        n = max(1, int(a.layout_rows * a.scale))
        results["layout"] = layout.layout(a, log, Tansu, run_json, produce, n, 1000)
        results["settings"]["layout_rows"] = n
    if "freshness" in sections:
        import freshness
        results["freshness"] = freshness.freshness(a, log, Tansu, a.freshness_seconds,
                                                   a.freshness_maintenance_interval)
        results["settings"]["freshness_seconds"] = a.freshness_seconds
    if "realtime" in sections:
        import realtime
        sizes = [int(x) for x in a.realtime_rows.split(",") if x]
        results["realtime"] = realtime.realtime(a, log, Tansu, a.realtime_seconds, sizes)
        results["settings"]["realtime_seconds"] = a.realtime_seconds
        results["settings"]["realtime_rows"] = sizes
    results["seconds"] = time.monotonic() - started
    if a.merge and os.path.exists(a.out):
        with open(a.out) as f:
            old = json.load(f)
        keep = {"throughput": ["throughput", "compression", "gap"], "latency": ["latency", "followers"],
                "scaling": ["scaling"], "readers": ["readers"], "layout": ["layout"],
                "freshness": ["freshness"], "realtime": ["realtime"]}
        for section, keys in keep.items():
            if section in sections:
                for k in keys:
                    old[k] = results[k]
                old.setdefault("runs", []).append(
                    {"section": section, "date": results["machine"]["date"]})
        if "throughput" in sections:
            # The datasets run (and their sizes) replace the old ones'.
            for k in ("datasets", "repeats", "py_seconds", "memory_cap_mib", "scale",
                      "python_parquet_compression"):
                old["settings"][k] = results["settings"][k]
        if "scaling" in sections:
            old["settings"]["scaling_rows"] = a.scaling_rows
        for k in ("readers_rows", "layout_rows", "freshness_seconds", "realtime_seconds",
                  "realtime_rows"):
            if k in results["settings"]:
                old["settings"][k] = results["settings"][k]
        results = old
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    log(f"wrote {a.out} ({results['seconds']:.0f} s)")


def latency(a, results):
    log("latency: produce -> Flight receipt and produce -> visible in the lake (mock cluster); "
        "followers at full ingest rate without and with the lake behind the ring")
    cmd = [a.live, "--parts", "throughput,latency,visibility", "--followers", str(a.followers),
           "--lake", "both", "--latency-secs", str(a.latency_secs), "--visibility-ages-ms",
           a.visibility_ages_ms, "--json"]
    log("  $", " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"latency runs failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            results["followers" if row["measure"] == "flight_followers" else "latency"].append(row)
        else:
            log("   ", line)


if __name__ == "__main__":
    main()
