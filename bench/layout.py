"""The `layout` section of the benchmark: the events dataset through sluice end to end with the
lake tables' Parquet codec snappy (DuckLake's default), zstd and lz4_raw, unpartitioned, and
with zstd partitioned by day(timestamp) and by bucket(8, seq), side by side in each repeat (in
a rotating order). Reported per variant: rows/s, CPU seconds per GB of Arrow IPC, Parquet bytes
per IPC byte. Nothing is asserted.

The events dataset's timestamps advance 1 ms per row, so its rows all fall on one day: the day
partition measures the partitioned write path with one partition per flush; bucket(8, seq)
measures a flush fanning out into 8 files."""

import statistics

from procs import sluice_catch_up

VARIANTS = [
    ("snappy", "snappy", []),
    ("zstd", "zstd", []),
    ("lz4_raw", "lz4_raw", []),
    ("zstd, day(timestamp)", "zstd", ["day(timestamp)"]),
    ("zstd, bucket(8, seq)", "zstd", ["bucket(8, seq)"]),
]


def layout(a, log, Tansu, run_json, produce, rows, rows_per_message):
    out = []
    broker = Tansu(a.tansu)
    try:
        b = broker.brokers
        log(f"layout: tansu on {b}, {rows} events rows")
        produce(a, b, "events-ipc", "events", rows, rows_per_message)
        base = sluice_catch_up(a, b, rows, rows_per_message)
        for r in range(a.repeats):
            log(f"layout: repeat {r + 1} of {a.repeats}")
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
            for name, codec, parts in order:
                cmd = base + ["--parquet-compression", codec]
                for p in parts:
                    cmd += ["--partition-by", p]
                run = run_json(cmd, 1800)
                out.append({"variant": name, "repeat": r, "run": run})
                log(f"    {name}: {run['rows_per_s']:,.0f} rows/s, "
                    f"{run['cpu_seconds'] / (run['bytes'] / 1e9):.1f} CPU s/GB, "
                    f"{run['file_bytes'] / run['bytes']:.3f} Parquet B per IPC B, "
                    f"{run['files']} files")
    finally:
        broker.stop()
    log("layout: median (range) over repeats")
    for name, _, _ in VARIANTS:
        runs = [x["run"] for x in out if x["variant"] == name]
        if not runs:
            continue
        def med(f):
            v = sorted(f(x) for x in runs)
            return f"{statistics.median(v):,.3f} ({v[0]:,.3f}-{v[-1]:,.3f})"
        log(f"  {name:22} rows/s {med(lambda x: x['rows_per_s'])}  "
            f"CPU s/GB {med(lambda x: x['cpu_seconds'] / (x['bytes'] / 1e9))}  "
            f"Parquet/IPC {med(lambda x: x['file_bytes'] / x['bytes'])}")
    return out
