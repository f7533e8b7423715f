"""The `readers` section of the benchmark: sluice's ingest throughput into the default
SQLite-catalog lake alone and with a stock DuckDB reader (the Python client, its own process)
attached READ_ONLY and counting every 200 ms, side by side in each repeat (alternating which
goes first). The reader's reads, errors and latencies are reported; nothing is asserted."""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from procs import sluice_catch_up

READER = r"""
import duckdb, json, os, resource, sys, time
lake, table, stop = sys.argv[1:4]
con = duckdb.connect()
attached = False
reads, errors, lat, counts = 0, [], [], []
while not os.path.exists(stop):
    t0 = time.monotonic()
    try:
        if not attached:
            con.execute(f"ATTACH 'ducklake:sqlite:{lake}/bench.sqlite' AS lake "
                        f"(DATA_PATH '{lake}/data/', READ_ONLY)")
            attached = True
        counts.append(con.execute(f'SELECT count(*) FROM lake."{table}"').fetchone()[0])
        lat.append(time.monotonic() - t0)
        reads += 1
    except Exception as e:
        # Before sluice's first commit the catalog or the table does not exist yet.
        if counts:
            errors.append(str(e))
        else:
            con.close(); con = duckdb.connect(); attached = False
    time.sleep(0.2)
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"reads": reads, "errors": errors, "latency_s": lat,
                  "cpu_seconds": ru.ru_utime + ru.ru_stime,
                  "distinct_counts": len(set(counts)), "last_count": counts[-1] if counts else None}))
"""


def readers(a, log, Tansu, run_json, produce, rows, rows_per_message, flush_mib=16):
    """Returns a list of repeats: {"alone": run, "with_reader": run, "reader": stats}."""
    out = []
    broker = Tansu(a.tansu)
    try:
        b = broker.brokers
        log(f"readers: tansu on {b}, {rows} events rows, flush at {flush_mib} MiB")
        produce(a, b, "events-ipc", "events", rows, rows_per_message)
        base = sluice_catch_up(a, b, rows, rows_per_message, "--flush-mib", str(flush_mib))
        for r in range(a.repeats):
            log(f"readers: repeat {r + 1} of {a.repeats}")
            rep = {}
            order = ["alone", "with_reader"] if r % 2 == 0 else ["with_reader", "alone"]
            for variant in order:
                d = tempfile.mkdtemp(prefix="sluice-bench-readers-")
                try:
                    if variant == "alone":
                        rep["alone"] = run_json(base + ["--dir", d], 1800)
                        continue
                    stop = os.path.join(d, "stop")
                    reader = subprocess.Popen(
                        [a.python, "-c", READER, d, "events_ipc", stop],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    try:
                        rep["with_reader"] = run_json(base + ["--dir", d], 1800)
                    finally:
                        open(stop, "w").close()
                        so, se = reader.communicate(timeout=120)
                    if reader.returncode != 0:
                        raise SystemExit(f"the reader failed:\n{se[-2000:]}")
                    st = json.loads(so)
                    lat = st.pop("latency_s")
                    st["latency_s_median"] = statistics.median(lat) if lat else None
                    st["latency_s_max"] = max(lat) if lat else None
                    rep["reader"] = st
                    log(f"    reader: {st['cpu_seconds']:.2f} CPU s, {st['reads']} reads, "
                        f"{len(st['errors'])} errors, "
                        f"{st['distinct_counts']} distinct counts, latency median "
                        f"{st['latency_s_median']} s, max {st['latency_s_max']} s")
                finally:
                    shutil.rmtree(d, ignore_errors=True)
            ratio = rep["with_reader"]["rows_per_s"] / rep["alone"]["rows_per_s"]
            rep["ratio_with_reader"] = ratio
            log(f"    with reader / alone: {ratio:.3f}")
            out.append(rep)
    finally:
        broker.stop()
    ratios = sorted(r["ratio_with_reader"] for r in out)
    if ratios:
        log(f"readers: throughput with a reader / alone, median {statistics.median(ratios):.3f} "
            f"(range {ratios[0]:.3f}-{ratios[-1]:.3f}) over {len(ratios)} repeats")
    return out
