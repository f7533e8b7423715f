"""The `freshness` section of the benchmark (issue 13): a low-rate topic flushed every second,
with DuckLake data inlining on and off, side by side in one run.

One tansu broker, two one-partition topics, two `sluice run` processes started together, each
with its own lake (SQLite catalog, Parquet on local disk), `flush.max_age_ms` 1000, maintenance
every `--freshness-maintenance-interval` (5 min: a pass runs inside the 10 min window), and
`[tables.defaults] data_inlining_row_limit` 1000 ("inlining on": a flush of up to 1,000 rows
stays in the catalog until a maintenance pass writes the inlined rows as one Parquet file) or 0
("inlining off": every flush is a Parquet file).

One producer process writes the same Arrow IPC message (10 PostHog-shaped events rows from
producer/python/arrow_producer.py, ~1 KB each) to both topics every 100 ms: 100 rows/s per
topic. 10 rows every 100 ms rather than 100 rows every second: arrival is as even as a trickle
gets, a message's position within the 1 s flush age is uniform instead of locked to one phase
of it, and there are 10 latency samples per second. Every row carries its seq (gapless from 0),
so the message with seqs 10m..10m+9 is visible once a reader sees max(seq) >= 10m+9 (one
partition and one table per topic: sluice commits in offset order, so max(seq) only grows).

One reader per lake (stock DuckDB Python, its own process, the lake attached READ_ONLY) runs
`SELECT max(seq)` every 100 ms. A message's produce → visible latency runs from the producer's
`produce()` call to the end of the first query that saw it (both clocks are CLOCK_MONOTONIC,
one clock per machine), so it includes the query time and up to 100 ms of polling.

After the window: each sluice's CPU seconds over it and /metrics, then SIGTERM (exit 0
expected), then per lake: Parquet files on disk, live data files of the table
(`ducklake_list_files`), rows in Parquet vs still inlined, snapshots, catalog bytes, the
maintenance passes from sluice's JSON log, and the exact-content check (count(*) and
count(DISTINCT seq) equal to the rows produced). Nothing is asserted: checks are reported.
"""

import datetime
import glob
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

from procs import cpu_seconds
from scaling import metrics

HERE = os.path.dirname(os.path.abspath(__file__))
PRODUCER_LIB = os.path.join(HERE, "..", "producer", "python")
ROWS_PER_MESSAGE = 10
INTERVAL_S = 0.1  # one message per topic every 100 ms: 100 rows/s
POLL_S = 0.1
MAX_AGE_MS = 1000
VARIANTS = [("inlining on", "freshness_on", 1000), ("inlining off", "freshness_off", 0)]

PRODUCER = r"""
import json, random, sys, time
sys.path.insert(0, sys.argv[1])
from arrow_producer import encode, events
from confluent_kafka import Producer
brokers, topics, messages, rows, interval = (sys.argv[2], sys.argv[3].split(","),
    int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
# tansu 0.6 reports a wrong high watermark for multi-record batches: one record per batch.
p = Producer({"bootstrap.servers": brokers, "linger.ms": 0, "batch.num.messages": 1,
              "acks": "all"})
rng = random.Random(13)
sent = {t: [] for t in topics}
acked = {t: [None] * messages for t in topics}
failures = []
def on_delivery(topic, m):
    def cb(err, _msg):
        if err is not None:
            failures.append(f"{topic} message {m}: {err}")
        else:
            acked[topic][m] = time.monotonic()
    return cb
started, started_wall = time.monotonic(), time.time()
late = 0
for m in range(messages):
    value = encode([events(m * rows, rows, rng)])
    due = started + m * interval
    while (left := due - time.monotonic()) > 0:
        p.poll(min(left, 0.05))
    if time.monotonic() - due > interval:
        late += 1
    # Alternate which topic goes first, so neither is always a few microseconds behind.
    for t in (topics if m % 2 == 0 else topics[::-1]):
        sent[t].append(time.monotonic())
        p.produce(t, value, partition=0, on_delivery=on_delivery(t, m))
    p.poll(0)
left = p.flush(60)
if failures or left:
    sys.exit(f"delivery failed: {failures[:5]} ({left} undelivered)")
ack_ms = sorted((a - s) * 1000 for t in topics for s, a in zip(sent[t], acked[t]))
print(json.dumps({"sent": sent, "started": started, "started_wall": started_wall,
                  "seconds": time.monotonic() - started, "late": late,
                  "ack_ms_p50": ack_ms[len(ack_ms) // 2], "ack_ms_max": ack_ms[-1]}))
"""

READER = r"""
import duckdb, json, os, resource, sys, time
# SOURCE: a lake directory (stock DuckDB, the lake attached READ_ONLY, TABLE in it), or a
# grpc:// URL (sluice's Flight SQL through the ADBC driver, TABLE a name it resolves).
source, table, final, stop, bound, poll = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
    sys.argv[4], float(sys.argv[5]), float(sys.argv[6]))
deadline = time.monotonic() + bound
if source.startswith("grpc"):
    import adbc_driver_flightsql.dbapi as fsql
    cur = fsql.connect(source).cursor()
    def read():
        cur.execute(f'SELECT max(seq) FROM "{table}"')
        return cur.fetchone()[0]
    def reset():
        pass
else:
    state = {"con": duckdb.connect(), "attached": False}
    def read():
        con = state["con"]
        if not state["attached"]:
            con.execute(f"ATTACH 'ducklake:sqlite:{source}/bench.sqlite' AS lake "
                        f"(DATA_PATH '{source}/data/', READ_ONLY)")
            state["attached"] = True
        return con.execute(f'SELECT max(seq) FROM lake."{table}"').fetchone()[0]
    def reset():
        state["con"].close()
        state.update(con=duckdb.connect(), attached=False)
samples, lat, errors, error_count = [], [], [], 0
last = None
started = time.monotonic()
k = 0
while not os.path.exists(stop) and time.monotonic() < deadline:
    t0 = time.monotonic()
    try:
        v = read()
        t1 = time.monotonic()
        lat.append(t1 - t0)
        if v != last:
            samples.append((t0, t1, v))
            last = v
        if v is not None and v >= final:
            break
    except Exception as e:
        # Before sluice's first commit the catalog or the table (or its view) does not exist.
        if samples:
            error_count += 1
            if len(errors) < 20:
                errors.append(str(e))
        else:
            reset()
    k = max(k + 1, int((time.monotonic() - started) / poll))
    time.sleep(max(0.0, started + k * poll - time.monotonic()))
ru = resource.getrusage(resource.RUSAGE_SELF)
lat.sort()
print(json.dumps({"samples": samples, "reads": len(lat), "errors": errors,
                  "error_count": error_count, "cpu_seconds": ru.ru_utime + ru.ru_stime,
                  "read_ms_p50": lat[len(lat) // 2] * 1000 if lat else None,
                  "read_ms_p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else None,
                  "read_ms_max": lat[-1] * 1000 if lat else None,
                  "last": last}))
"""

INSPECT = r"""
import duckdb, json, sys
lake, table = sys.argv[1:3]
con = duckdb.connect()
con.execute(f"ATTACH 'ducklake:sqlite:{lake}/bench.sqlite' AS lake "
            f"(DATA_PATH '{lake}/data/', READ_ONLY)")
q = lambda sql, *p: con.execute(sql, list(p)).fetchone()
count, distinct, lo, hi = q(f'SELECT count(*), count(DISTINCT seq), min(seq), max(seq) '
                            f'FROM lake."{table}"')
out = {"count": count, "distinct": distinct, "min_seq": lo, "max_seq": hi,
       "live_data_files": q("SELECT count(*) FROM ducklake_list_files('lake', ?)", table)[0],
       "snapshots": q("SELECT count(*) FROM ducklake_snapshots('lake')")[0]}
try:
    out["rows_in_parquet"] = q(
        "SELECT coalesce(sum(f.record_count), 0) FROM __ducklake_metadata_lake.ducklake_data_file f "
        "JOIN __ducklake_metadata_lake.ducklake_table t ON f.table_id = t.table_id "
        "WHERE f.end_snapshot IS NULL AND t.end_snapshot IS NULL AND t.table_name = ?", table)[0]
except Exception as e:
    out["rows_in_parquet"] = None
    out["rows_in_parquet_error"] = str(e)
print(json.dumps(out))
"""


def duration_seconds(text):
    """Seconds of a duration written like "90s", "5m", "1h" (the forms this section uses)."""
    m = re.fullmatch(r"\s*(\d+)\s*(s|m|h)\s*", text)
    if not m:
        raise SystemExit(f"--freshness-maintenance-interval {text!r}: write it like 40s, 5m, 1h")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def percentile_ms(sorted_ms, p):
    """The same definition as benches/live.rs: the ceil(n·p)-th smallest value."""
    if not sorted_ms:
        return None
    i = min(max(int(-(-len(sorted_ms) * p // 1)), 1), len(sorted_ms)) - 1
    return sorted_ms[i]


def config(d, brokers, topic, inlining, interval, lease):
    return f"""[kafka]
brokers = "{brokers}"
group_id = "{topic}"
topics = ["{topic}"]
[kafka.properties]
# tansu holds every fetch for fetch.wait.max.ms (FINDINGS.md section 7).
"fetch.wait.max.ms" = "10"
[lake]
catalog_kind = "sqlite"
catalog = "{d}/bench.sqlite"
data_path = "{d}/data/"
[tables.defaults]
data_inlining_row_limit = {inlining}
[flush]
max_age_ms = {MAX_AGE_MS}
max_rows = 10000000
[live]
enabled = false
[metrics]
address = "127.0.0.1:0"
[maintenance]
enabled = true
interval = "{interval}"
lease = "{lease}"
[log]
format = "json"
"""


def read_log(path):
    """(JSON records, lines that are not JSON) of a sluice log."""
    recs, other = [], []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                recs.append(json.loads(line))
            except ValueError:
                other.append(line)
    return recs, other


def message_of(rec):
    return rec.get("fields", {}).get("message", "")


def wall_of(rec):
    """The Unix time of a sluice JSON log record."""
    return datetime.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()


def files_on_disk(d, table):
    """Parquet files under the lake's data path: the topic's table (data / delete files) and
    sluice's own tables (offsets, maintenance lease, quarantine)."""
    data = os.path.join(d, "data")
    out = {"table_data": 0, "table_delete": 0, "sluice_tables": 0, "bytes": 0}
    for f in glob.glob(f"{data}/**/*.parquet", recursive=True):
        out["bytes"] += os.path.getsize(f)
        parts = os.path.relpath(f, data).split(os.sep)
        if len(parts) >= 3 and parts[1] == table:
            out["table_delete" if f.endswith("-delete.parquet") else "table_data"] += 1
        else:
            out["sluice_tables"] += 1
    out["all"] = out["table_data"] + out["table_delete"] + out["sluice_tables"]
    return out


def wait_metrics_url(path, proc, deadline):
    while time.monotonic() < deadline and proc.poll() is None:
        for rec in read_log(path)[0]:
            if message_of(rec) == "metrics endpoint":
                return int(rec["fields"]["url"].rsplit(":", 1)[1].split("/", 1)[0])
        time.sleep(0.2)
    raise SystemExit(f"sluice did not report its metrics endpoint (exit {proc.poll()}); "
                     f"log {path}:\n{open(path, errors='replace').read()[-3000:]}")


def latencies(sent, samples, rows):
    """Per message in produce order, ms from produce() to the end of the first query that saw
    its last row; and each time max(seq) went down between two reads (never, if all is
    well): [end of the earlier read, its max, start and end of the later read, its max]."""
    seen = [s for s in samples if s[2] is not None]
    regressions = [[x[1], x[2], y[0], y[1], y[2]] for x, y in zip(seen, seen[1:])
                   if y[2] < x[2]]
    out, j = [], 0
    for m, at in enumerate(sent):
        need = m * rows + rows - 1
        while j < len(samples) and (samples[j][2] is None or samples[j][2] < need):
            j += 1
        if j == len(samples):
            break
        out.append((samples[j][1] - at) * 1000)
    return out, regressions


def freshness(a, log, Tansu, seconds, interval):
    interval_s = duration_seconds(interval)
    lease = f"{3 * interval_s}s"
    messages = int(round(seconds / INTERVAL_S))
    rows = messages * ROWS_PER_MESSAGE
    final = rows - 1
    broker = Tansu(a.tansu)
    root = tempfile.mkdtemp(prefix="sluice-bench-fresh-")
    procs, logs, readers = [], [], []
    keep = False
    try:
        b = broker.brokers
        log(f"freshness: tansu on {b}; {seconds:.0f} s at {ROWS_PER_MESSAGE / INTERVAL_S:.0f} "
            f"rows/s per topic, flush.max_age_ms {MAX_AGE_MS}, maintenance every {interval}; "
            f"lakes under {root}")
        lakes = []
        for name, topic, inlining in VARIANTS:
            subprocess.run([a.loadgen, "--brokers", b, "--topic", topic, "--partitions", "1",
                            "--total", "0"], check=True, capture_output=True, timeout=120)
            d = os.path.join(root, topic)
            os.makedirs(d)
            cfg = os.path.join(d, "sluice.toml")
            with open(cfg, "w") as f:
                f.write(config(d, b, topic, inlining, interval, lease))
            lakes.append({"variant": name, "topic": topic, "inlining": inlining, "dir": d,
                          "cfg": cfg, "log": os.path.join(d, "sluice.log")})
        # Both instances start together.
        for l in lakes:
            out = open(l["log"], "w")
            logs.append(out)
            p = subprocess.Popen([a.sluice, "run", "--config", l["cfg"]], stdout=out,
                                 stderr=subprocess.STDOUT)
            procs.append(p)
            l["proc"] = p
        deadline = time.monotonic() + 120
        for l in lakes:
            l["port"] = wait_metrics_url(l["log"], l["proc"], deadline)
        while not all(metrics(l["port"]).get("sluice_assigned_partitions") == 1 for l in lakes):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"freshness: the partitions were not assigned within 120 s "
                                 f"(logs in {root})")
            time.sleep(0.2)
        bound = seconds + 300
        for l in lakes:
            l["stop"] = os.path.join(l["dir"], "reader.stop")
            r = subprocess.Popen([a.python, "-c", READER, l["dir"], l["topic"], str(final),
                                  l["stop"], str(bound), str(POLL_S)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            readers.append(r)
            l["reader_proc"] = r
        cpu0 = [cpu_seconds(l["proc"].pid) for l in lakes]
        t0 = time.monotonic()
        log(f"  producing {messages:,} messages of {ROWS_PER_MESSAGE} rows to each topic")
        prod = subprocess.run([a.python, "-c", PRODUCER, PRODUCER_LIB, b,
                               ",".join(l["topic"] for l in lakes), str(messages),
                               str(ROWS_PER_MESSAGE), str(INTERVAL_S)],
                              capture_output=True, text=True, timeout=seconds + 180)
        if prod.returncode != 0:
            raise SystemExit(f"the freshness producer failed:\n{prod.stderr[-3000:]}")
        produced = json.loads(prod.stdout)
        log(f"  produced in {produced['seconds']:.1f} s ({produced['late']} messages more than "
            f"one interval late; ack p50 {produced['ack_ms_p50']:.1f} ms, max "
            f"{produced['ack_ms_max']:.1f} ms)")
        # The readers stop once they saw the last row (or at their bound).
        for l in lakes:
            try:
                so, se = l["reader_proc"].communicate(timeout=MAX_AGE_MS / 1000 + 120)
            except subprocess.TimeoutExpired:
                open(l["stop"], "w").close()
                so, se = l["reader_proc"].communicate(timeout=120)
            if l["reader_proc"].returncode != 0:
                raise SystemExit(f"the {l['variant']} reader failed:\n{se[-2000:]}")
            l["reader"] = json.loads(so)
        window = time.monotonic() - t0
        for l, c0 in zip(lakes, cpu0):
            l["cpu_seconds"] = cpu_seconds(l["proc"].pid) - c0
            try:
                with open(f"/proc/{l['proc'].pid}/status") as f:
                    l["peak_rss_bytes"] = next(int(x.split()[1]) * 1024 for x in f
                                               if x.startswith("VmHWM:"))
            except (OSError, StopIteration):
                l["peak_rss_bytes"] = None
            l["metrics"] = metrics(l["port"])
        for l in lakes:
            l["proc"].send_signal(signal.SIGTERM)
        for l in lakes:
            try:
                l["exit_code"] = l["proc"].wait(timeout=120)
            except subprocess.TimeoutExpired:
                l["proc"].kill()
                l["proc"].wait()
                l["exit_code"] = "killed after 120 s"
        out = {"seconds": seconds, "messages": messages, "rows": rows,
               "rows_per_message": ROWS_PER_MESSAGE, "rows_per_s": ROWS_PER_MESSAGE / INTERVAL_S,
               "flush_max_age_ms": MAX_AGE_MS, "maintenance_interval": interval,
               "maintenance_lease": lease, "poll_ms": POLL_S * 1000,
               "window_seconds": window, "producer": {k: v for k, v in produced.items()
                                                      if k not in ("sent", "started")},
               "variants": []}
        for l in lakes:
            out["variants"].append(summarize(a, log, l, produced, rows))
            if not out["variants"][-1]["ok"]:
                keep = True
        return out
    except BaseException:
        keep = True
        raise
    finally:
        for r in readers:
            if r.poll() is None:
                r.kill()
                r.wait()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
        broker.stop()
        if keep:
            log(f"freshness: a check failed or the run stopped; lakes and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def summarize(a, log, l, produced, rows):
    d = l["dir"]
    sent = produced["sent"][l["topic"]]
    rd = l.pop("reader")
    by_message, regressions = latencies(sent, rd.pop("samples"), ROWS_PER_MESSAGE)
    lat = sorted(by_message)
    p = subprocess.run([a.python, "-c", INSPECT, d, l["topic"]], capture_output=True,
                       text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"inspecting the {l['variant']} lake failed:\n{p.stderr[-2000:]}")
    lake = json.loads(p.stdout)
    recs, other = read_log(l["log"])
    t0, t0_wall = produced["started"], produced["started_wall"]
    passes = []
    for rec in (r for r in recs if message_of(r) == "maintenance pass"):
        f = dict(rec["fields"])
        f.pop("message", None)
        # When the pass ended, in seconds after the producer's first message.
        f["at_s"] = wall_of(rec) - t0_wall
        passes.append(f)
    flushes = [r["fields"] for r in recs if message_of(r) == "flushed"
               and r["fields"].get("table") == l["topic"]]
    fl_ms = sorted(f["duration_ms"] for f in flushes)
    # Messages slower than twice the flush age, in produce order: when they were produced.
    slow = [((at - t0), ms) for at, ms in zip(sent, by_message) if ms > 2 * MAX_AGE_MS]
    warnings = [r for r in recs if r.get("level") in ("WARN", "ERROR")]
    m = l["metrics"]
    catalog_bytes = sum(os.path.getsize(f) for f in glob.glob(f"{d}/bench.sqlite*"))
    disk = files_on_disk(d, l["topic"])
    r = {
        "variant": l["variant"], "data_inlining_row_limit": l["inlining"],
        "messages": len(sent), "visible": len(lat),
        "p50_ms": percentile_ms(lat, 0.5), "p99_ms": percentile_ms(lat, 0.99),
        "max_ms": percentile_ms(lat, 1.0), "mean_ms": statistics.fmean(lat) if lat else None,
        "cdf_ms": [percentile_ms(lat, i / 200) for i in range(1, 201)] if lat else [],
        "max_seq_regressions": len(regressions),
        # Relative to the producer's first message, like "slow" and the passes' "at_s".
        "max_seq_regressions_detail": [[round(x - t0, 3) if i in (0, 2, 3) else x
                                        for i, x in enumerate(g)] for g in regressions[:20]],
        "reader": rd,
        "slow_messages": len(slow),
        "slow_messages_during_passes": sum(
            1 for at, ms in slow if any(p["at_s"] - p["duration_ms"] / 1000 - ms / 1000 <= at
                                        <= p["at_s"] for p in passes)),
        "slow": [[round(at, 3), round(ms, 1)] for at, ms in slow[:200]],
        "parquet_files_on_disk": disk["all"], "parquet_bytes_on_disk": disk["bytes"],
        "table_data_files_on_disk": disk["table_data"],
        "table_delete_files_on_disk": disk["table_delete"],
        "sluice_table_files_on_disk": disk["sluice_tables"],
        "flush_count": len(flushes),
        "flush_files": sum(f.get("files", 0) for f in flushes),
        "flush_file_bytes": sum(f.get("file_bytes", 0) for f in flushes),
        "flush_rows_median": statistics.median(f["rows"] for f in flushes) if flushes else None,
        "flush_ms_p50": percentile_ms(fl_ms, 0.5), "flush_ms_p99": percentile_ms(fl_ms, 0.99),
        "flush_ms_max": percentile_ms(fl_ms, 1.0),
        # The first flush also creates the table.
        "first_flush_ms": flushes[0]["duration_ms"] if flushes else None,
        "first_flush_messages": flushes[0].get("messages") if flushes else None,
        "catalog_bytes": catalog_bytes,
        **lake,
        "rows_inlined": (lake["count"] - lake["rows_in_parquet"]
                         if lake.get("rows_in_parquet") is not None else None),
        "maintenance_passes": passes,
        "cpu_seconds": l["cpu_seconds"], "peak_rss_bytes": l["peak_rss_bytes"],
        "flushes": m.get("sluice_flushes_total"),
        "committed_rows_metric": m.get("sluice_committed_rows_total"),
        "maintenance_metrics": {k: v for k, v in m.items() if k.startswith("sluice_maintenance")},
        "exit_code": l["exit_code"],
        "log_warnings": len(warnings), "log_warning_lines": warnings[:20],
        "log_other_lines": other[:20],
        "exact": lake["count"] == rows and lake["distinct"] == rows
        and lake["min_seq"] == 0 and lake["max_seq"] == rows - 1,
    }
    r["ok"] = (r["exact"] and r["exit_code"] == 0 and r["visible"] == len(sent)
               and not regressions and not rd["error_count"])
    for x in r["max_seq_regressions_detail"]:
        log(f"    max(seq) went down: {x[1]} in the read ending at {x[0]} s, then {x[4]} in the "
            f"read from {x[2]} s to {x[3]} s (after the producer's first message)")
    log(f"  {r['variant']}: produce -> visible p50 {r['p50_ms']:.0f} ms, p99 "
        f"{r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms over {r['visible']:,} of "
        f"{r['messages']:,} messages ({r['slow_messages']} over {2 * MAX_AGE_MS} ms, "
        f"{r['slow_messages_during_passes']} of them during a maintenance pass); "
        f"{r['flush_count']} flushes ({r['flush_files']} files, median {r['flush_rows_median']} "
        f"rows, p50 {r['flush_ms_p50']} ms, max {r['flush_ms_max']} ms); Parquet files on "
        f"disk: {r['parquet_files_on_disk']} ({r['table_data_files_on_disk']} table data, "
        f"{r['table_delete_files_on_disk']} table delete, {r['sluice_table_files_on_disk']} "
        f"sluice's tables), {r['live_data_files']} live; {r['rows_inlined']} rows still inlined; "
        f"{r['snapshots']} snapshots, catalog {catalog_bytes / 2**20:.1f} MiB; "
        f"{len(passes)} maintenance passes at {[round(p['at_s']) for p in passes]} s; CPU "
        f"{r['cpu_seconds']:.1f} s; reads p50 {rd['read_ms_p50']:.1f} ms (max "
        f"{rd['read_ms_max']:.0f} ms), reader CPU {rd['cpu_seconds']:.1f} s; count "
        f"{r['count']:,}, distinct {r['distinct']:,} of {rows:,} "
        f"({'exact' if r['exact'] else 'NOT EXACT'}); exit {r['exit_code']}; "
        f"{r['log_warnings']} WARN/ERROR log lines")
    for w in warnings[:5]:
        log(f"    log: {json.dumps(w)[:600]}")
    if not r["ok"]:
        log(f"  {r['variant']}: CHECK FAILED (exit {r['exit_code']}, exact {r['exact']}, "
            f"visible {r['visible']}/{len(sent)}, max(seq) regressions {len(regressions)}, reader "
            f"errors {rd['error_count']}: {rd['errors'][:3]})")
    return r
