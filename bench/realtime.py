"""The `realtime` section of the benchmark (issue 16): the real-time views over Flight SQL.

Freshness, side by side in one run: one tansu broker, one one-partition topic, one `sluice run`
with Flight SQL on (SQLite catalog, Parquet on local disk, `flush.max_age_ms` 1000), the
freshness section's producer (10 rows every 100 ms) for `--realtime-seconds`, and two readers
polling every 100 ms at once: stock DuckDB (the lake attached READ_ONLY, `SELECT max(seq)` of
the table: what the lake shows) and the ADBC Flight SQL driver (`SELECT max(seq)` of the
table's `_live` view). A message's produce -> visible latency runs from its `produce()` call to
the end of the first query that saw it, as in the freshness section.

Queries and ingestion, one after the other on one machine: for each of `--realtime-rows`
(1 M and 10 M), a fresh topic (4 partitions) and lake; the events dataset is produced first,
then sluice ingests it (`flush.max_rows` 1 M, `max_age_ms` 5000) alone, and again into a fresh
lake with an ADBC client running `SELECT count(*), sum(seq) FROM t_live` back to back. Reported:
the ingest rate (rows / seconds from the first row decoded to the last commit) of both, the queries answered
meanwhile and their latency, and, once everything is consumed, 5 queries each of
`count(*), sum(seq)` and of a GROUP BY over the view and over the lake table alone. Nothing is
asserted: the exact-content checks are reported.
"""

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from freshness import PRODUCER, PRODUCER_LIB, READER, latencies, percentile_ms
from freshness import read_log, message_of
from scaling import metrics

ROWS_PER_MESSAGE = 10
INTERVAL_S = 0.1
POLL_S = 0.1
# Messages of the first 5 s, left out of the "after warm-up" latencies.
WARMUP_MESSAGES = 50

QUERY_LOOP = r"""
import json, os, sys, time
import adbc_driver_flightsql.dbapi as fsql
url, view, stop = sys.argv[1:4]
out = []
with fsql.connect(url) as conn, conn.cursor() as cur:
    while not os.path.exists(stop):
        t0 = time.monotonic()
        try:
            cur.execute(f'SELECT count(*), sum(seq)::BIGINT FROM "{view}"')
            n = cur.fetchone()[0]
            out.append([t0, time.monotonic() - t0, n])
        except Exception as e:
            if "does not exist" not in str(e):
                raise
            time.sleep(0.05)
print(json.dumps(out))
"""

QUERIES = r"""
import json, statistics, sys, time
import adbc_driver_flightsql.dbapi as fsql
url, table, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
res = {}
qs = {"count_sum_live": f'SELECT count(*), sum(seq)::BIGINT FROM "{table}_live"',
      "count_sum_lake": f'SELECT count(*), sum(seq)::BIGINT FROM "{table}"',
      "group_by_live": f'SELECT event, count(*), max(seq) FROM "{table}_live" GROUP BY 1 ORDER BY 1',
      "group_by_lake": f'SELECT event, count(*), max(seq) FROM "{table}" GROUP BY 1 ORDER BY 1',
      "committed_and_live": f'SELECT (SELECT count(*) FROM "{table}"), count(*) FROM "{table}_live"'}
with fsql.connect(url) as conn, conn.cursor() as cur:
    for name, q in qs.items():
        ms, rows = [], None
        for _ in range(repeats):
            t0 = time.monotonic()
            cur.execute(q)
            rows = cur.fetchall()
            ms.append((time.monotonic() - t0) * 1000)
        res[name] = {"ms": ms, "median_ms": statistics.median(ms), "min_ms": min(ms),
                     "max_ms": max(ms), "result": [list(map(str, r)) for r in rows[:3]],
                     "result_rows": len(rows)}
print(json.dumps(res))
"""


def config(d, brokers, topic, max_age_ms, max_rows):
    group = os.path.basename(d)
    return f"""[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{topic}"]
[kafka.properties]
# tansu holds every fetch for fetch.wait.max.ms (FINDINGS.md section 7).
"fetch.wait.max.ms" = "10"
[lake]
catalog_kind = "sqlite"
catalog = "{d}/bench.sqlite"
data_path = "{d}/data/"
[flush]
max_age_ms = {max_age_ms}
max_rows = {max_rows}
[live]
address = "127.0.0.1:0"
[sql]
enabled = true
address = "127.0.0.1:0"
[metrics]
address = "127.0.0.1:0"
[maintenance]
enabled = false
[log]
format = "json"
"""


def start(a, d, brokers, topic, max_age_ms, max_rows):
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "sluice.toml")
    with open(cfg, "w") as f:
        f.write(config(d, brokers, topic, max_age_ms, max_rows))
    path = os.path.join(d, "sluice.log")
    out = open(path, "w")
    p = subprocess.Popen([a.sluice, "run", "--config", cfg], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    urls = {}
    while len(urls) < 2:
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit(f"realtime: sluice did not start (exit {p.poll()}); log {path}")
        for rec in read_log(path)[0]:
            m = message_of(rec)
            if m == "metrics endpoint":
                urls["metrics"] = int(rec["fields"]["url"].rsplit(":", 1)[1].split("/", 1)[0])
            elif m.startswith("Flight SQL endpoint"):
                urls["sql"] = rec["fields"]["url"]
        time.sleep(0.2)
    return p, out, urls["metrics"], urls["sql"]


def stop(p, out):
    p.terminate()
    try:
        rc = p.wait(120)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    out.close()
    return rc


def summary(ms):
    s = sorted(ms)
    return {"n": len(s), "p50_ms": percentile_ms(s, 0.5), "p99_ms": percentile_ms(s, 0.99),
            "max_ms": s[-1] if s else None}


def freshness_part(a, log, broker, root, seconds):
    messages = int(round(seconds / INTERVAL_S))
    rows = messages * ROWS_PER_MESSAGE
    final = rows - 1
    topic = "realtime_fresh"
    subprocess.run([a.loadgen, "--brokers", broker.brokers, "--topic", topic, "--partitions",
                    "1", "--total", "0"], check=True, capture_output=True, timeout=120)
    d = os.path.join(root, topic)
    p, out, port, url = start(a, d, broker.brokers, topic, 1000, 10_000_000)
    try:
        deadline = time.monotonic() + 120
        while metrics(port).get("sluice_assigned_partitions") != 1:
            if time.monotonic() > deadline:
                raise SystemExit("realtime: no assignment within 120 s")
            time.sleep(0.2)
        bound = seconds + 120
        stop_lake, stop_sql = os.path.join(d, "lake.stop"), os.path.join(d, "sql.stop")
        readers = [
            subprocess.Popen([a.python, "-c", READER, d, topic, str(final), stop_lake,
                              str(bound), str(POLL_S)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True),
            subprocess.Popen([a.python, "-c", READER, url, f"{topic}_live", str(final),
                              stop_sql, str(bound), str(POLL_S)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True),
        ]
        log(f"realtime freshness: {seconds:.0f} s at {ROWS_PER_MESSAGE / INTERVAL_S:.0f} rows/s; "
            f"readers of the lake and of {topic}_live every {POLL_S * 1000:.0f} ms")
        prod = subprocess.run([a.python, "-c", PRODUCER, PRODUCER_LIB, broker.brokers, topic,
                               str(messages), str(ROWS_PER_MESSAGE), str(INTERVAL_S)],
                              capture_output=True, text=True, timeout=seconds + 300)
        if prod.returncode != 0:
            raise SystemExit(f"realtime producer failed:\n{prod.stderr[-2000:]}")
        sent = json.loads(prod.stdout.strip().splitlines()[-1])["sent"][topic]
        got = []
        for r in readers:
            o, e = r.communicate(timeout=bound + 60)
            if r.returncode != 0:
                raise SystemExit(f"realtime reader failed:\n{e[-2000:]}")
            got.append(json.loads(o.strip().splitlines()[-1]))
        res = {"seconds": seconds, "messages": messages, "rows": rows}
        for name, g in zip(("lake", "sql_live"), got):
            lat, regressions = latencies(sent, g["samples"], ROWS_PER_MESSAGE)
            # After the warm-up: a table (and so its view) exists from its first commit on, so
            # the first second's messages wait for that commit on both readers.
            warm = sorted(lat[WARMUP_MESSAGES:])
            res[name] = {**summary(sorted(lat)), "seen": len(lat), "reads": g["reads"],
                         "warm_p50_ms": percentile_ms(warm, 0.5),
                         "warm_p99_ms": percentile_ms(warm, 0.99),
                         "warm_max_ms": warm[-1] if warm else None,
                         "read_ms_p50": g["read_ms_p50"], "read_ms_p99": g["read_ms_p99"],
                         "errors": g["error_count"], "error_texts": g["errors"][:3],
                         "regressions": len(regressions), "last": g["last"]}
            log(f"    {name}: produce -> visible p50 {res[name]['p50_ms']:.0f} ms, "
                f"p99 {res[name]['p99_ms']:.0f} ms, max {res[name]['max_ms']:.0f} ms "
                f"(after the first {WARMUP_MESSAGES} messages: p50 {res[name]['warm_p50_ms']:.0f}, "
                f"p99 {res[name]['warm_p99_ms']:.0f}, max {res[name]['warm_max_ms']:.0f} ms) "
                f"({len(lat)} of {messages} messages; read p50 {g['read_ms_p50']:.1f} ms; "
                f"{g['error_count']} errors, {len(regressions)} regressions)")
        res["exit_code"] = stop(p, out)
        return res
    finally:
        if p.poll() is None:
            stop(p, out)


def ingest(a, log, broker, root, topic, rows, with_queries):
    d = os.path.join(root, f"{topic}_{'q' if with_queries else 'alone'}")
    # A consumer group of its own (named after the lake's directory): it reads the topic from
    # the start into a new lake.
    p, out, port, url = start(a, d, broker.brokers, topic, 5000, 1_000_000)
    loop = None
    stop_file = os.path.join(d, "queries.stop")
    try:
        t0 = time.monotonic()
        if with_queries:
            loop = subprocess.Popen([a.python, "-c", QUERY_LOOP, url, f"{topic}_live",
                                     stop_file], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        deadline = t0 + 1800
        first_row, last_change, last = None, t0, -1
        while True:
            m = metrics(port)
            done = int(m.get("sluice_committed_rows_total", 0))
            if first_row is None and int(m.get("sluice_consumed_rows_total", 0)) > 0:
                first_row = time.monotonic()
            if done != last:
                last, last_change = done, time.monotonic()
            if done >= rows:
                break
            if time.monotonic() > deadline or p.poll() is not None:
                raise SystemExit(f"realtime: {done} of {rows} rows committed (log {d})")
            time.sleep(0.1)
        # From the first row decoded (after start-up and the group join, which vary on tansu)
        # to the last commit.
        seconds = last_change - (first_row or t0)
        res = {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}
        if loop:
            open(stop_file, "w").close()
            o, e = loop.communicate(timeout=300)
            if loop.returncode != 0:
                raise SystemExit(f"realtime query loop failed:\n{e[-2000:]}")
            qs = json.loads(o.strip().splitlines()[-1])
            ms = sorted(q[1] * 1000 for q in qs)
            res["queries"] = {**summary(ms), "median_ms": statistics.median(ms) if ms else None}
        log(f"    {rows:,} rows {'with' if with_queries else 'without'} queries: "
            f"{seconds:.1f} s = {rows / seconds:,.0f} rows/s"
            + (f"; {res['queries']['n']} queries, p50 {res['queries']['p50_ms']:.0f} ms"
               if loop else ""))
        if with_queries:
            q = subprocess.run([a.python, "-c", QUERIES, url, topic, "5"], capture_output=True,
                               text=True, timeout=1800)
            if q.returncode != 0:
                raise SystemExit(f"realtime queries failed:\n{q.stderr[-2000:]}")
            res["after"] = json.loads(q.stdout.strip().splitlines()[-1])
            for name, r in res["after"].items():
                log(f"      {name}: median {r['median_ms']:.0f} ms ({r['min_ms']:.0f}-"
                    f"{r['max_ms']:.0f}) -> {r['result'][:1]}")
        res["exit_code"] = stop(p, out)
        return res
    finally:
        if loop and loop.poll() is None:
            open(stop_file, "w").close()
            loop.wait(60)
        if p.poll() is None:
            stop(p, out)


def realtime(a, log, Tansu, seconds, sizes):
    broker = Tansu(a.tansu)
    root = tempfile.mkdtemp(prefix="sluice-bench-realtime-")
    try:
        res = {"freshness": freshness_part(a, log, broker, root, seconds), "sizes": []}
        for rows in sizes:
            topic = f"realtime_{rows}"
            log(f"realtime queries: producing {rows:,} events rows into {topic}")
            prod = subprocess.run([a.loadgen, "--brokers", broker.brokers, "--topic", topic,
                                   "--partitions", "4", "--total", str(rows),
                                   "--rows-per-batch", "1000", "-X", "batch.size=16777216",
                                   "-X", "linger.ms=20"],
                                  capture_output=True, text=True, timeout=1800)
            if prod.returncode != 0:
                raise SystemExit(f"producing failed:\n{prod.stderr[-2000:]}")
            one = {"rows": rows}
            for with_queries in (False, True):
                one["with_queries" if with_queries else "alone"] = ingest(
                    a, log, broker, root, topic, rows, with_queries)
            res["sizes"].append(one)
        return res
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
