"""Writes FINDINGS.md and its plots from a bench/run.py result file. Every number in the
document comes from that file; the prose around the numbers is fixed text.

    python bench/findings.py bench/results.json --markdown FINDINGS.md --plots bench/plots
"""

import argparse
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODES = [
    ("sluice", "(1) sluice, Kafka → DuckLake"),
    ("sluice_copy", "(1″) sluice, kafka.copy_payloads = true"),
    ("sluice_capped", "(1′) sluice, memory cap 256 MiB"),
    ("sink", "(2) sink ceiling: DuckLake insert from memory"),
    ("sink_1000", "(2″) sink ceiling fed the same rows in 1,000-row batches"),
    ("consume", "(3) consume ceiling: librdkafka only"),
    ("delivery", "(2+3) delivery ceiling: (2) and (3) at once"),
    ("python_ipc", "(4) Python Arrow IPC consumer"),
    ("python_json", "(5) Python JSON consumer"),
]
MIB = 1024 * 1024


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs, fmt="{:,.0f}"):
    """median (min–max)"""
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def by_dataset(results):
    out = {}
    for t in results["throughput"]:
        out.setdefault(t["dataset"], []).append(t["runs"])
    return out


def ratios(repeats):
    """Per repeat: (1)/(2), (1)/min(2,3), (1)/(2+3), (1)/(4), (1)/(5) in rows/s."""
    r = {"(1)/(2)": [], "(1)/min((2),(3))": [], "(1)/(2+3)": [], "(1)/(4)": [], "(1)/(5)": [],
         "(1′)/(2)": []}
    for runs in repeats:
        s = runs["sluice"]["rows_per_s"]
        if "sluice_capped" in runs:
            r["(1′)/(2)"].append(runs["sluice_capped"]["rows_per_s"] / runs["sink"]["rows_per_s"])
        r["(1)/(2)"].append(s / runs["sink"]["rows_per_s"])
        r["(1)/min((2),(3))"].append(
            s / min(runs["sink"]["rows_per_s"], runs["consume"]["rows_per_s"]))
        if "delivery" in runs:
            r["(1)/(2+3)"].append(s / runs["delivery"]["rows_per_s"])
        if "sluice_copy" in runs:
            c = runs["sluice_copy"]["rows_per_s"]
            r.setdefault("(1″)/(1)", []).append(c / s)
            r.setdefault("(1″)/(2)", []).append(c / runs["sink"]["rows_per_s"])
            if "delivery" in runs:
                r.setdefault("(1″)/(2+3)", []).append(c / runs["delivery"]["rows_per_s"])
        if "sink_1000" in runs:
            r.setdefault("(1)/(2″)", []).append(s / runs["sink_1000"]["rows_per_s"])
        r["(1)/(4)"].append(s / runs["python_ipc"]["rows_per_s"])
        per_gb = lambda x: x["cpu_seconds"] / x["bytes"]  # noqa: E731
        r.setdefault("CPU s per GB, (1)/(4)", []).append(
            per_gb(runs["sluice"]) / per_gb(runs["python_ipc"]))
        r["(1)/(5)"].append(s / runs["python_json"]["rows_per_s"])
    return r


def plot_throughput(data, path):
    datasets = list(data)
    if not datasets:
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(7.5 * len(datasets), 4.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        names, meds, lo, hi = [], [], [], []
        for key, label in MODES:
            if key == "sluice_capped" or key not in data[ds][0]:
                continue
            xs = [runs[key]["rows_per_s"] / 1e3 for runs in data[ds]]
            names.append(label.split(" ", 1)[0] + "\n" + key.replace("_", " "))
            m = med(xs)
            meds.append(m)
            lo.append(m - min(xs))
            hi.append(max(xs) - m)
        colors = {"sluice": "#1f77b4", "sluice_copy": "#6baed6", "sink": "#7f7f7f",
                  "sink_1000": "#5f5f5f", "consume": "#bbbbbb",
                  "delivery": "#9fb7cf", "python_ipc": "#ff7f0e", "python_json": "#d62728"}
        keys = [k for k, _ in MODES if k != "sluice_capped" and k in data[ds][0]]
        ax.bar(names, meds, yerr=[lo, hi], capsize=4, color=[colors[k] for k in keys])
        ax.set_title(f"{ds}: catch-up throughput (median, min–max)")
        ax.set_ylabel("thousand rows/s")
        for i, m in enumerate(meds):
            ax.text(i, m, f"{m:,.0f}k", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rss(data, cap, path):
    if not data:
        return
    fig, ax = plt.subplots(figsize=(9, 4.5))
    runs = data.get("events", [])
    for i, r in enumerate(runs):
        for key, color in (("sluice_capped", "#1f77b4"), ("python_ipc", "#ff7f0e"),
                           ("python_json", "#d62728")):
            s = r[key]
            t0 = s.get("timed_from_s") or 0
            xs = [t - t0 for t, _ in s["rss"]]
            ys = [b / MIB for _, b in s["rss"]]
            label = {"sluice_capped": f"sluice, {cap // MIB} MiB cap"}.get(
                key, key.replace("_", " "))
            ax.plot(xs, ys, color=color, alpha=0.8, lw=1, label=label if i == 0 else None)
    ax.axhline(cap / MIB, color="k", ls="--", lw=1, label=f"sluice memory cap {cap // MIB} MiB")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since the first consumed message")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("events catch-up: resident memory over time (every repeat)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(latency, path):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for l in latency:
        cdf = l["cdf_ms"]
        qs = [(i + 1) / len(cdf) for i in range(len(cdf))]
        if l["measure"] == "flight_latency":
            axes[0].plot(cdf, qs, label=f"{l['followers']} follower(s)")
        else:
            axes[1].plot([c / 1000 for c in cdf], qs,
                         label=f"flush.max_age_ms {l['max_age_ms']}")
    axes[0].set_xlabel("produce → Flight receipt (ms)")
    axes[0].set_xscale("log")
    axes[1].set_xlabel("produce → visible in the lake (s)")
    for ax in axes:
        ax.set_ylabel("fraction of messages")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("latency CDFs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_compression(comp, path):
    rows = [c for c in comp if c["dataset"] == "events"] or comp
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    codecs = [c["codec"] for c in rows]
    wire = [c["sluice"]["bytes"] / c["sluice"]["rows"] for c in rows]
    cpu = [c["sluice"]["cpu_seconds"] / c["sluice"]["rows"] * 1e6 for c in rows]
    ax.bar(codecs, wire, color="#1f77b4")
    ax.set_ylabel("bytes on the wire per row (bars)")
    ax2 = ax.twinx()
    ax2.plot(codecs, cpu, "o-", color="#d62728")
    ax2.set_ylim(bottom=0)
    ax2.set_ylabel("sluice CPU seconds per million rows", color="#d62728")
    ax.set_title(f"{rows[0]['dataset']}: IPC body compression, wire bytes vs consumer CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


GAP_TEXT = """Target: (1)/(2) ≥ 0.9. Before the change below (events, {cap} MiB cap, re-measured in this run
with librdkafka's old default), sluice ran at {before:,.0f} rows/s, {before_ratio:.2f} of the sink
ceiling, keeping {before_cores:.2f} of 2 cores busy. Timing the poll loop showed where: most `poll()` calls returned nothing for their whole 100 ms, while the
flush thread was idle too. Cause: while the memory cap holds the loop for a flush, librdkafka's
prefetch queue fills up (by design: the budget reserves room for it), and librdkafka then
postpones that partition's next fetch by `fetch.queue.backoff.ms`, 1000 ms by default. Every
flush cost each partition a second of silence. sluice now sets it to 10 ms (overridable in
`kafka.properties`); the row `fetch.queue.backoff.ms=1000` below is the old behaviour measured
in this run, and the last row is the result under the same cap: {after:,.0f} rows/s,
(1′)/(2) = {ratio:.2f}. With the default 1 GiB cap, the next flush's data accumulates in full
while a flush runs: {full:,.0f} rows/s, (1)/(2) = {full_ratio:.2f}.

What remains is CPU. On 2 cores, sluice's default run keeps {sluice_cores:.2f} cores busy and its
flush thread spends {flush_share:.0%} of the run in DuckLake commits; the sink ceiling keeps
{sink_cores:.2f} cores busy with nothing else running. {cpu_text} The consume ceiling ({consume:,.0f}
rows/s) is not the limit. DuckDB threads, Parquet codec and row-group size are DuckLake's
defaults in both (1) and (2), so they move both and not the ratio.

{target_text}
"""


# Issue 17's changes, each measured side by side with the code before it when it was made (the
# runs are not in bench/results.json; the commits name them).
PER_MESSAGE_CHANGES = """### What each change for small messages and narrow rows moved

Each measured against the code just before it, side by side on this machine; instruction counts
from callgrind (they do not vary with the machine's noise), rates as medians of 5 alternating
repeats with min–max.

| change (commit) | measured | before | after |
|---|---|---|---|
| the stream format walked by sluice: each flatbuffer verified once, the schema message parsed once per distinct bytes (8efb637) | instructions per payload, `benches/hot_paths.rs` decode: events 16 rows / events 1,000 rows / narrow 10,000 rows | 83,319 / 641,738 / 41,443 | 41,943 / 601,479 / 19,742 |
| runs of small batches joined up to 2,048 rows before DuckDB (0cced0c) | DuckDB's pipeline instructions, 32,000 events rows in 16-row batches; sink CPU s per GB | 988.6 M; 8.06 | 929.5 M; 7.74 |
| a schema found mostly realigned decoded from one aligned copy (935053d, 7ba250d) | narrow, 10,000,000 rows: rows/s ratio; peak RSS; CPU s per GB | 1; 658 MiB; 7.31 | 1.11 (1.03–1.13); 482 MiB; 6.44 |
| the first three together (ae5705b against stop 29's code) | small shape, 1,000,000 rows: rows/s; CPU s per GB | 131,862 (111,766–162,003); 11.07 | 146,318 (121,433–159,934); 9.39 |
| copy measure and joining size read from the arrays, not rebuilt ArrayData (3e66aeb, 5743d6e) | instructions per 16-row message, `--mode sluice` under callgrind: decoding; joining | 51.4 k; 34.4 k | 44.7 k; 25.7 k |

The last change was not run end to end side by side; section 1's small rows are this run's, at
the current code.
"""


def target_text(data):
    """Whether (1)/(2) reached 0.9, per dataset, and where a shortfall goes."""
    per_gb = lambda r, k: r[k] / (r["bytes"] / 1e9)  # noqa: E731
    ratio = lambda reps, a, b: med([x[a]["rows_per_s"] / x[b]["rows_per_s"]  # noqa: E731
                                    for x in reps if a in x and b in x])
    out, notes = [], []
    for ds, reps in data.items():
        # Small messages are held to the sink ceiling fed the same rows in 1,000-row batches.
        ceiling, name = ("sink_1000", "(1)/(2″)") if "sink_1000" in reps[0] else ("sink", "(1)/(2)")
        r = ratio(reps, "sluice", ceiling)
        out.append(f"{ds}: {name} = {r:.2f}, target {'met' if r >= 0.9 else 'not met'}")
        if "delivery" not in reps[0]:
            continue
        dl = [x for x in reps if "delivery" in x]
        note = (f"{ds}: running a bare librdkafka consumer of the topic beside the sink "
                f"ceiling (2+3) changes its rate by {ratio(dl, 'delivery', 'sink') - 1:+.0%}; "
                f"sluice reaches {ratio(dl, 'sluice', 'delivery'):.2f} of (2+3). CPU seconds "
                "per GB of payload, sluice + broker: "
                f"{med([per_gb(x['sluice'], 'cpu_seconds') for x in dl]):.2f} + "
                f"{med([per_gb(x['sluice'], 'broker_cpu_seconds') for x in dl]):.2f}; "
                "(2+3) + broker: "
                f"{med([per_gb(x['delivery'], 'cpu_seconds') for x in dl]):.2f} + "
                f"{med([per_gb(x['delivery'], 'broker_cpu_seconds') for x in dl]):.2f}")
        if "sink_1000" in reps[0]:
            note += (f"; the delivery ceiling itself is {ratio(dl, 'delivery', 'sink_1000'):.2f} "
                     "of (2″), the target's ceiling, so a consumer with no work of its own "
                     "would not reach 0.9 of (2″) on this machine")
        if "sluice_copy" in reps[0]:
            cp = [x for x in dl if "sluice_copy" in x]
            note += (f". With `kafka.copy_payloads`: {ratio(cp, 'sluice_copy', 'sink'):.2f} of "
                     f"(2) and {ratio(cp, 'sluice_copy', 'delivery'):.2f} of (2+3), "
                     f"{med([x['sluice_copy']['flushes'] for x in cp]):.0f} flushes per run "
                     f"against {med([x['sluice']['flushes'] for x in cp]):.0f}")
        notes.append(note + ".")
    text = "Target status: " + "; ".join(out) + "."
    if notes:
        text += ("\n\nHow much of the gap is delivering the data, measured: the delivery ceiling "
                 "(2+3) is the sink ceiling with a bare consumer of the same topic running "
                 "beside it, started together: the broker serving, librdkafka receiving and "
                 "DuckDB writing Parquet on the same 2 cores, and nothing of sluice's own. "
                 + " ".join(notes))
    copy_gain = "; ".join(
        f"{ds} {spread([x['sluice_copy']['rows_per_s'] / x['sluice']['rows_per_s'] for x in reps if 'sluice_copy' in x], '{:.2f}')}"
        for ds, reps in data.items())
    text += ("\n\nWhere sluice's own share goes, measured with callgrind (instruction counts "
             "that do not move with this machine's noise; `benches/ceilings.rs --mode sluice "
             "--lake-threads 1` under `valgrind --tool=callgrind`, 64,000 events rows in 16-row "
             "messages): per message, decoding 44.7k instructions (arrow-rs's "
             "`read_record_batch` three quarters of it, its UTF-8 and offset validation a third "
             "of that), joining the small batches before DuckDB 25.7k (mostly the copy), the "
             "poll loop's own bookkeeping about 9k; DuckDB's import and Parquet write of the "
             "same rows about 345k, zstd compression two thirds of that. librdkafka's receive "
             "thread and the broker process come on top, on the same 2 cores: they are what "
             "the delivery ceiling adds. On narrow rows, where librdkafka's addresses break "
             "8-byte alignment, arrow-rs copies every fixed-width buffer (86% of narrow's "
             "payload bytes before the rule below) and the batches decoded in place "
             "keep librdkafka's whole fetch buffers alive until their flush commits. So once a "
             "misaligned payload of a schema had more than half its bytes realigned, sluice "
             "decodes every payload of that schema from one aligned copy (counted as aligned "
             "copies in section 2), which frees the message at once; schemas of strings, like "
             "events, stay in place. `kafka.copy_payloads` (row (1″)) copies every payload "
             f"whatever its schema. Per repeat, (1″)/(1): {copy_gain}. Tried without a gain "
             "beyond the run-to-run spread: glibc malloc settings that keep freed memory for "
             "reuse (fewer page faults, the same rate), jemalloc and mimalloc in place of "
             "glibc's malloc, coalescing small batches to 122,880 rows before the handoff, "
             "and `Utf8View` strings (DuckDB 1.5.5 imports plain `Utf8` without copying the "
             "strings too).")
    return text


def cpu_text(data):
    """CPU seconds per GB: sluice plus the broker against the sink ceiling, per dataset."""
    parts = []
    for ds, reps in data.items():
        s = [r["sluice"] for r in reps]
        if "broker_cpu_seconds" not in s[0]:
            return ""
        per_gb = lambda r, k: r[k] / (r["bytes"] / 1e9)  # noqa: E731
        sl = med([per_gb(r, "cpu_seconds") for r in s])
        br = med([per_gb(r, "broker_cpu_seconds") for r in s])
        sk = med([per_gb(r["sink"], "cpu_seconds") for r in reps])
        parts.append(f"{ds}: sluice {sl:.2f} + broker {br:.2f} = {sl + br:.2f} CPU s per GB "
                     f"against the sink ceiling's {sk:.2f}")
    return ("CPU seconds per GB of payload, " + "; ".join(parts) + ". On 2 cores, the "
            "broker's serving and librdkafka's fetching and sluice's decoding are taken from "
            "DuckDB's Parquet encoding, which is what both rates are bound by; with the broker "
            "on another machine (as in production) that share goes back to DuckDB.")


def freshness_section(w, fr):
    """Section 11: a low-rate topic flushed every second, data inlining on against off."""
    vs = fr["variants"]
    secs = lambda ms: "n/a" if ms is None else f"{ms / 1000:.2f}"  # noqa: E731
    num = lambda x, fmt="{:,.0f}": "n/a" if x is None else fmt.format(x)  # noqa: E731
    w("## 11. Fresh data without small files\n")
    w(f"{fr['rows_per_s']:.0f} rows/s for {fr['seconds'] / 60:.1f} min (an Arrow IPC message of "
      f"{fr['rows_per_message']} events rows, ~1 KB each, every "
      f"{1000 * fr['rows_per_message'] / fr['rows_per_s']:.0f} ms) into two one-partition "
      "topics on one tansu broker, each consumed by its own `sluice run` into its own lake "
      "(SQLite catalog, Parquet on local disk), both started together, with "
      f"`flush.max_age_ms` {fr['flush_max_age_ms']:,} and maintenance every "
      f"{fr['maintenance_interval']}: `[tables.defaults] data_inlining_row_limit` "
      + " against ".join(f"{v['data_inlining_row_limit']:,} ({v['variant']})" for v in vs)
      + ". Inlined, a flush of up to that many rows stays in the catalog until a maintenance "
      "pass writes the inlined rows as one Parquet file; at 0 every flush is a Parquet file. "
      "The producer sends each message to both topics at once. A stock DuckDB Python reader "
      "per lake, in its own process, attached `READ_ONLY`, runs `SELECT max(seq)` every "
      f"{fr['poll_ms']:.0f} ms; a message's produce → visible latency runs from the "
      "producer's `produce()` call to the end of the first query that returned its last seq "
      "(so it includes the query and up to one polling interval). Files, snapshots and the "
      "exact-content check are read after SIGTERM, once sluice has exited "
      "(`bench/freshness.py`; reproduce with `scripts/bench --sections freshness --merge`, "
      "`--freshness-seconds` and `--freshness-maintenance-interval` to vary it).\n")
    head = "| | " + " | ".join(v["variant"] for v in vs) + " |"
    rule = "|---|" + "---|" * len(vs)
    row = lambda label, f: w(f"| {label} | " + " | ".join(f(v) for v in vs) + " |")  # noqa: E731
    w(head)
    w(rule)
    row("produce → visible p50 / p99 / max, s",
        lambda v: f"{secs(v['p50_ms'])} / {secs(v['p99_ms'])} / {secs(v['max_ms'])}")
    row("messages seen / produced", lambda v: f"{v['visible']:,} / {v['messages']:,}")
    row(f"messages over {2 * fr['flush_max_age_ms'] / 1000:.0f} s (of them, in flight during a "
        "maintenance pass)",
        lambda v: f"{v['slow_messages']:,} ({v['slow_messages_during_passes']:,})")
    row("flushes (median rows each)",
        lambda v: f"{v['flush_count']:,} ({num(v['flush_rows_median'])})")
    row("flush duration p50 / p99 / max, ms",
        lambda v: f"{num(v['flush_ms_p50'])} / {num(v['flush_ms_p99'])} / "
                  f"{num(v['flush_ms_max'])}")
    row("reader query p50 / p99 / max, ms",
        lambda v: f"{num(v['reader']['read_ms_p50'], '{:.1f}')} / "
                  f"{num(v['reader']['read_ms_p99'], '{:.1f}')} / "
                  f"{num(v['reader']['read_ms_max'], '{:.0f}')}")
    row("reads whose max(seq) fell below an earlier read's (rows missing from a read)",
        lambda v: f"{v.get('max_seq_regressions', 0):,}")
    row("reader CPU s (queries)",
        lambda v: f"{v['reader']['cpu_seconds']:.1f} ({v['reader']['reads']:,})")
    row("sluice CPU s over the run (cores busy)",
        lambda v: f"{v['cpu_seconds']:.1f} ({v['cpu_seconds'] / fr['window_seconds']:.2f})")
    row("sluice peak RSS, MiB",
        lambda v: num(v["peak_rss_bytes"] and v["peak_rss_bytes"] / MIB))
    w("")
    w(head)
    w(rule)
    row("Parquet files written by flushes", lambda v: f"{v['flush_files']:,}")
    row("Parquet files on disk at the end: the table's data / its delete files / sluice's own "
        "tables", lambda v: f"{v['table_data_files_on_disk']:,} / "
                            f"{v['table_delete_files_on_disk']:,} / "
                            f"{v['sluice_table_files_on_disk']:,}")
    row("Parquet bytes on disk", lambda v: f"{v['parquet_bytes_on_disk'] / MIB:,.1f} MiB")
    row("live data files of the table (`ducklake_list_files`)",
        lambda v: f"{v['live_data_files']:,}")
    row("rows still inlined in the catalog at the end", lambda v: num(v["rows_inlined"]))
    row("maintenance passes (rows moved from the catalog to Parquet; files merged: all "
        "tables, sluice's own included)",
        lambda v: f"{len(v['maintenance_passes'])} "
                  f"({sum(p.get('inlined_rows_flushed', 0) for p in v['maintenance_passes']):,}; "
                  f"{sum(p.get('files_merged', 0) for p in v['maintenance_passes']):,})")
    row("snapshots", lambda v: f"{v['snapshots']:,}")
    row("catalog file (SQLite + WAL)", lambda v: f"{v['catalog_bytes'] / MIB:,.1f} MiB")
    row("count(*) / count(DISTINCT seq) of rows produced",
        lambda v: f"{v['count']:,} / {v['distinct']:,} of {fr['rows']:,}"
                  + ("" if v["exact"] else " **not exact**"))
    row("sluice exit code after SIGTERM", lambda v: str(v["exit_code"]))
    row("WARN/ERROR lines in sluice's log", lambda v: f"{v['log_warnings']:,}")
    w("")
    by = {v["data_inlining_row_limit"] > 0: v for v in vs}
    on, off = by.get(True), by.get(False)
    if on and off:
        w(f"Inlining on, the flushes wrote {on['flush_files']:,} Parquet files against "
          f"{off['flush_files']:,} with it off, and the table ends with "
          f"{on['live_data_files']:,} live data files against {off['live_data_files']:,}; "
          f"produce → visible p50 {secs(on['p50_ms'])} s against {secs(off['p50_ms'])} s, p99 "
          f"{secs(on['p99_ms'])} s against {secs(off['p99_ms'])} s. The first flush also "
          f"creates the table ({num(on.get('first_flush_ms'))} ms and "
          f"{num(off.get('first_flush_ms'))} ms), and the messages it holds "
          f"({num(on.get('first_flush_messages'))} and {num(off.get('first_flush_messages'))}) "
          "wait that much longer. The catalog file is "
          f"{on['catalog_bytes'] / MIB:,.1f} MiB against {off['catalog_bytes'] / MIB:,.1f} MiB "
          "(inlined rows live there until a maintenance pass moves them). Files on disk "
          "include files merged away and not yet deleted "
          "(`maintenance.delete_files_after`, 1 h by default; on a SQLite catalog rounded down "
          "to midnight UTC), and in this run a process's first maintenance pass, then at most "
          "one an hour, also wrote the inlined rows of sluice's own tables (lake offsets, the "
          "maintenance lease) as Parquet, in both lakes alike (`sluice run` no longer does: "
          "see section 12 and README). Both lakes share the machine's 2 cores with the "
          "broker, the producer and the two readers.\n")
    bad = [v["variant"] for v in vs if not v.get("ok", True)]
    if bad:
        w(f"**A check failed** for {', '.join(bad)}: see the reads whose max(seq) fell, the "
          "exit code, the exact-content and log rows above (results.json holds the details "
          "and the log lines).\n")


MEMORY_VARIANTS = {
    "cap": "`flush.memory_cap_bytes` = limit (Arrow data only)",
    "limit": "`memory.limit_bytes` = limit",
    "limit-cgroup": "`memory.limit_bytes`, in a cgroup limited to it",
    "cap-cgroup": "`flush.memory_cap_bytes`, in a cgroup limited to it",
}


def realtime_section(w, rt):
    """Section 14: the real-time views over Flight SQL."""
    ms = lambda x: "n/a" if x is None else f"{x:,.0f}"  # noqa: E731
    fr = rt["freshness"]
    w("## 14. Real-time SQL: the lake and the live stream in one query\n")
    w(f"One `sluice run` with Flight SQL on (`[sql]`), one one-partition topic on a tansu broker, "
      f"{fr['rows'] / fr['seconds']:.0f} rows/s for {fr['seconds']:.0f} s (the freshness "
      "section's producer: 10 events rows every 100 ms), `flush.max_age_ms` 1000, SQLite "
      "catalog. Two readers poll every 100 ms side by side: stock DuckDB (Python, the lake "
      "attached `READ_ONLY`, `SELECT max(seq)` of the table) and the ADBC Flight SQL driver "
      "(`SELECT max(seq)` of the table's real-time view `<table>_live`: the lake's rows and "
      "the live ring's rows the same snapshot has not committed). Produce → visible runs from "
      "`produce()` to the end of the first query that saw the message, so it includes the "
      "query itself. A table, and so its view, exists from its first commit on: the first "
      "second's messages wait for that commit on both readers, hence the columns without the "
      "first 5 s (`bench/realtime.py`; reproduce with "
      "`scripts/bench --sections realtime --merge`).\n")
    w("| reader | produce → visible p50 | p99 | max | after the first 5 s: p50 | p99 | max | "
      "messages seen | query p50 | query p99 | errors | max(seq) went down |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, label in (("lake", "lake table (stock DuckDB)"),
                        ("sql_live", "`_live` view (Flight SQL, ADBC)")):
        r = fr[name]
        w(f"| {label} | {ms(r['p50_ms'])} ms | {ms(r['p99_ms'])} ms | {ms(r['max_ms'])} ms | "
          f"{ms(r.get('warm_p50_ms'))} ms | {ms(r.get('warm_p99_ms'))} ms | "
          f"{ms(r.get('warm_max_ms'))} ms | {r['seen']:,} of {fr['messages']:,} | {r['read_ms_p50']:.0f} ms | "
          f"{r['read_ms_p99']:.0f} ms | {r['errors']} | {r['regressions']} |")
    w("")
    if rt.get("sizes"):
        w("Queries and ingestion: the events dataset produced into a 4-partition topic first; "
          "then one `sluice run` ingests it alone (`flush.max_rows` 1,000,000, `max_age_ms` "
          "5000), then another into a fresh lake with an ADBC client running `SELECT count(*), "
          "sum(seq) FROM <table>_live` back to back. Rate = rows / seconds from the first row "
          "decoded to the last commit. After the second run, each query 5 times over the whole table "
          "(median, min–max).\n")
        w("| rows | ingest alone | ingest beside queries | queries meanwhile (p50 / p99) | "
          "count+sum `_live` | count+sum lake | GROUP BY `_live` | GROUP BY lake |")
        w("|---|---|---|---|---|---|---|---|")
        for one in rt["sizes"]:
            a, q = one["alone"], one["with_queries"]
            aft = q.get("after", {})
            cell = lambda k: (f"{aft[k]['median_ms']:,.0f} ms ({aft[k]['min_ms']:,.0f}–"  # noqa: E731
                              f"{aft[k]['max_ms']:,.0f})") if k in aft else "n/a"
            qs = q.get("queries", {})
            w(f"| {one['rows']:,} | {a['rows_per_s']:,.0f} rows/s | {q['rows_per_s']:,.0f} "
              f"rows/s ({q['rows_per_s'] / a['rows_per_s']:.2f}×) | {qs.get('n', 0):,} "
              f"({ms(qs.get('p50_ms'))} / {ms(qs.get('p99_ms'))} ms) | {cell('count_sum_live')} | "
              f"{cell('count_sum_lake')} | {cell('group_by_live')} | {cell('group_by_lake')} |")
        w("")
        checks = []
        for one in rt["sizes"]:
            aft = one["with_queries"].get("after", {})
            if "count_sum_live" in aft:
                checks.append(f"{one['rows']:,} rows: `_live` answered "
                              f"{aft['count_sum_live']['result'][0]}, the lake "
                              f"{aft['count_sum_lake']['result'][0]}")
        if checks:
            w("Exact-content check once everything was committed: " + "; ".join(checks) + ".\n")


def memory_limit_section(w, m):
    """bench/memory.py's runs: one limit for the whole process (issue 14)."""
    def opt(x, fmt):
        return "n/a" if x is None else fmt.format(x)
    w("### Memory limit\n")
    w(f"`bench/memory.py` ({m['date']}, {m['cores']} cores): `sluice run` catching up a backlog "
      "of 10.5× the limit from tansu (events, ~1 KB rows, 4 partitions; a fresh lake and "
      "consumer group each run, `flush.max_age_ms` 5 s in all), side by side on one broker per "
      "limit. Peak RSS is the kernel's VmHWM of the process; the cgroup runs put it in a "
      "cgroup v1 memory controller whose `memory.limit_in_bytes` is the limit (no swap), "
      "`oom_kill` is the controller's count of processes the kernel killed, *max usage* its "
      "`memory.max_usage_in_bytes` (page cache of the written Parquet included). Throughput "
      "counts from the process's start to the last row committed; the machine was shared "
      "with other work (fuzzing at nice 10) during these runs, so compare the rows of one "
      "limit with each other rather than with section 1.\n")
    w("| limit | configuration | backlog GB | done | seconds | MB/s | peak RSS MiB | "
      "peak RSS / limit | cgroup: oom_kill, max usage MiB |")
    w("|---|---|---|---|---|---|---|---|---|")
    for r in m["runs"]:
        cg = (f"{r['cgroup_oom_kills']}, {r['cgroup_max_usage_bytes'] / MIB:,.0f}"
              if "cgroup_oom_kills" in r else "")
        done = "yes" if r["completed"] else (
            f"no: {r['committed_rows']:,} of {r['rows']:,} rows, exit {r['exit']}")
        rss = r["peak_rss_bytes"] or 0
        w(f"| {r['limit_bytes'] // MIB} MiB | {MEMORY_VARIANTS.get(r['variant'], r['variant'])} | "
          f"{r['backlog_bytes'] / 1e9:.2f} | {done} | "
          f"{opt(r['seconds'], '{:,.0f}')} | {opt(r['mb_per_s'], '{:,.1f}')} | "
          f"{rss / MIB:,.0f} | {rss / r['limit_bytes']:.2f} | {cg} |")
    w("")
    for limit in sorted({r["limit_bytes"] for r in m["runs"]}):
        rs = {r["variant"]: r for r in m["runs"] if r["limit_bytes"] == limit and "pass" not in r}
        lim, cap = rs.get("limit"), rs.get("cap")
        if lim and cap and lim["completed"] and cap["completed"]:
            w(f"At {limit // MIB} MiB, `memory.limit_bytes` peaked at "
              f"{lim['peak_rss_bytes'] / limit:.2f} × the limit against "
              f"{cap['peak_rss_bytes'] / limit:.2f} × with the Arrow cap alone, at "
              f"{lim['mb_per_s'] / cap['mb_per_s']:.2f} × its throughput "
              f"({lim['mb_per_s']:.1f} against {cap['mb_per_s']:.1f} MB/s).")
        cc = rs.get("cap-cgroup")
        if cc and cc.get("cgroup_oom_kills"):
            w(f"Under the kernel's {limit // MIB} MiB limit the Arrow cap alone was killed "
              f"(oom_kill {cc['cgroup_oom_kills']}) after committing {cc['committed_rows']:,} "
              "rows.")
        w("")
    for r in m["runs"]:
        mt = r.get("maintain")
        if mt:
            w(f"Then `sluice maintain` over that lake in the same cgroup limit "
              f"({r['limit_bytes'] // MIB} MiB), compacting the files of its flushes: exit "
              f"{mt['exit']} in {mt['seconds']:.0f} s, peak RSS "
              f"{mt['peak_rss_bytes'] / MIB:,.0f} MiB "
              f"({mt['peak_rss_bytes'] / r['limit_bytes']:.2f} × the limit), data files on disk "
              f"{mt['files_before']:,} before and {mt['files_after']:,} after (merged files are "
              "added; the ones they replace stay until snapshot expiry and clean-up delete "
              "them), "
              f"oom_kill {mt['cgroup_oom_kills']}.\n")
    for note in m.get("notes", []):
        w(note + "\n")


def faults_section(w, fa):
    """Section 12: the chaos suite's scenarios (tests/chaos, `scripts/chaos`)."""
    sc = fa["scenarios"]
    w("## 12. Faults\n")
    w(f"`scripts/chaos` ({fa['mode']} mode, seed {fa['seed']}, {fa['seconds'] / 60:.0f} min, "
      f"run {fa.get('date', 'n/a')}): real processes broken on purpose while a Python producer "
      "(confluent-kafka, pyarrow) writes 50-row Arrow IPC messages at 40 messages/s over 4 "
      "partitions, each row numbered (`seq`); each scenario ends by stopping every instance "
      "with SIGTERM and comparing the lake message by message (`_kafka_partition`, "
      "`_kafka_offset`) with the producer's delivery reports, the count, distinct count and "
      "sum of `seq` with what was produced, and each partition's lake offset with the "
      "broker's high watermark. Brokers: librdkafka's mock cluster in a process of its own "
      "(`sluice-mock-kafka`: it expires a killed member's session, which tansu 0.6 does not "
      "do promptly) in every scenario but `broker-hang-tansu`, where tansu itself hangs. The "
      "S3 server (moto, in memory) sits behind a proxy that closes and reopens its port. "
      "Counters are summed over every life of every instance, sampled twice a second.\n")
    w("| scenario | broker, catalog, data | fault | rows | lost | dup. | offsets = watermarks "
      "| first commit after fault s | catch-up s | flush failures / commit conflicts / "
      "offset conflicts | exits on SIGTERM | /readyz during the fault |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sc:
        if not r.get("passed"):
            w(f"| {r['scenario']} | {r.get('broker', '')}, {r.get('catalog', '')}, "
              f"{r.get('data', '')} | FAILED: {r.get('error', '')[:200]} "
              f"{r.get('finding', '')} | | | | | | | | | |")
            continue
        c = r["counters"]
        first = r.get("first_commit_after_fault_s")
        seen = r.get("readyz_during", [])
        cut = lambda t: t if len(t) <= 160 else t[:160] + "…"  # noqa: E731
        ready = "—" if not seen else (
            cut(seen[0]) if len(seen) == 1 else
            f"{cut(seen[0])}, then {len(seen) - 1} other answers, the last: {cut(seen[-1])}")
        ready = ready.replace("|", "\\|")
        w(f"| {r['scenario']} | {r['broker']}, {r['catalog']}, {r['data']} | {r['fault']} | "
          f"{r['rows_produced']:,} | {r['lost']} | {r['duplicated']} | "
          f"{'yes' if r['offsets_exact'] else 'NO'} | "
          f"{'—' if first is None else f'{first:.2f}'} | {r['catch_up_s']:.2f} | "
          f"{c['sluice_flush_failures_total']} / {c['sluice_commit_conflicts_total']} / "
          f"{c['sluice_offset_conflicts_total']} | {', '.join(map(str, r['exit_codes']))} | "
          f"{ready} |")
    w("")
    kills = [r for r in sc if r.get("kill_points")]
    for r in kills:
        pts = ", ".join(f"{v} {k}" for k, v in r["kill_points"].items())
        w(f"{r['scenario']}: kill points {pts} (a kill falls 0–1.5 s into a start, or 0–2.5 s "
          "after the instance holds partitions).  ")
    for note in fa.get("notes", []):
        w(note + "  ")
    w("First commit after fault: from the fault's end until a reader of the lake (polling "
      "every 0.5 s) saw the offsets grow; catch-up: from the producer's stop until the lake "
      "held every message. Reproduce with `scripts/chaos` (full) or `scripts/chaos --quick` "
      "(what CI runs).\n")


def fuzz_section(w, fz):
    """Section 13: the cargo-fuzz targets (fuzz/, `scripts/fuzz`)."""
    rows = fz["targets"]
    w("## 13. Fuzzing\n")
    commits = sorted({r.get("commit", fz["commit"]) for r in rows})
    commit = (f"commit {commits[0]}" if len(commits) == 1 else
              "commits " + ", ".join(f"{r['target']} {r.get('commit', fz['commit'])}"
                                     for r in rows))
    w(f"`scripts/fuzz` ({fz['mode']} mode, {commit}, {fz['rustc']}, "
      f"{fz['cargo_fuzz']}): libFuzzer through cargo-fuzz, one process per target on one core "
      "(niced), AddressSanitizer"
      + (f" (`ASAN_OPTIONS={fz['asan_options']}`)" if fz.get("asan_options") else "")
      + ", debug assertions and overflow checks on. Each target starts "
      "from an empty corpus and the seeds `fuzz/seeds.py` writes: real pyarrow payloads (stream "
      "and file format; uncompressed, LZ4 frame and ZSTD; integers, floats, strings, string "
      "views, binary, decimals, timestamps, lists, fixed-size lists, structs, maps, unions, "
      "run-end encoded, dictionaries with delta and replacement messages, legacy framing), "
      "Flight tickets, and the repo's example configs. The decoder targets decode every input "
      "twice, as a 64-byte aligned copy (`decode_copy`, `kafka.copy_payloads`) and in place at an "
      "odd address (`decode`; arrow-rs realigns), and fail on a panic that escapes `decode`, an "
      "abort, any array that does not pass arrow-rs's full validation, and the two placements "
      "disagreeing (panics `decode` catches are listed below). `config` loads arbitrary TOML over the defaults "
      "(`Config::from_figment`: extraction and `validate()`) and runs `parse_size` on the same "
      "text; `ticket` runs `parse_ticket` on arbitrary bytes. A target run in slices "
      "(`scripts/fuzz --resume`, one session's worth each) goes on from the corpus its last "
      "slice left, only while the code it fuzzes is unchanged since its first slice; its "
      "executions, durations and crashes add up over the slices and its coverage is the last "
      "slice's.\n")
    w("| target | executions | exec/s | coverage (cov / ft) | corpus (units / bytes) | crashes "
      "| duration | max input | malloc limit | peak RSS |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        shown = [a for a in r["artifacts"] if a not in r.get("dismissed", {})]
        crashes = str(r["crashes"]) + (f" ({', '.join(shown)})" if shown else "")
        if r.get("dismissed"):
            crashes += f" + {len(r['dismissed'])} dismissed"
        n = len(r.get("slices") or [])
        execs = f"{r['executions']:,}" + (f" ({n} slices)" if n > 1 else "")
        w(f"| {r['target']} | {execs} | {r['exec_per_s']:,} | {r['cov']:,} / "
          f"{r['ft']:,} | {r['corpus_units']:,} / {r['corpus_size']} | {crashes} | "
          f"{r['duration_s'] / 60:.1f} min | {r['max_len']:,} B | {r['malloc_limit_mb']} MiB | "
          f"{r['peak_rss_mb']} MiB |")
    w("")
    for r in rows:
        for name, why in (r.get("dismissed") or {}).items():
            w(f"Dismissed in {r['target']}: `{name}`, {why}\n")
    short = [r for r in rows if not r["reached_runs"]]
    if fz["runs_per_target"] and short:
        w("Not run to " + f"{fz['runs_per_target']:,} executions: " + "; ".join(
            f"{r['target']} ({r['executions']:,} in {r['duration_s'] / 60:.0f} min, "
            + ("stopped by its crash; " if r["crashes"] else
               "stopped before it (its --max-time, or by hand at the end of a session)"
               f"{'' if r.get('slices') else ', a run before slices'}; ")
            + f"{fz['runs_per_target']:,} at its rate would take "
            f"{fz['runs_per_target'] / r['exec_per_s'] / 3600:.1f} h)" for r in short)
          + ". A target with slices goes on with `scripts/fuzz --resume --only <target>`; the "
          "rates are each run's own, on 2 cores shared with builds and tests. Peak RSS includes "
          "AddressSanitizer's quarantine of freed memory.\n")
    w("cov is libFuzzer's count of covered edges (sluice and every crate it links, instrumented), "
      "ft its count of features (edges with hit-count buckets, compared values); both are the "
      "final status line's; the corpus is what the run kept, seeds included. Bounds: every run "
      f"has `-rss_limit_mb={rows[0]['rss_limit_mb']}` and `-malloc_limit_mb` as in the table, "
      "which fails a run on any single allocation of that size or more (AddressSanitizer's "
      "allocator hooks), and a per-input timeout (`-timeout`) of 10 s for the decoder and ticket runs and 120 s for config's (at the lowest priority beside a benchmark, a 1.4 s config input waited over 10 s for the CPU and was written as a timeout). The decoders' limit follows from the "
      "payload-size bound `decode` now enforces before arrow-rs allocates a declared "
      "decompressed size: each compressed buffer may declare at most 255 × its compressed "
      "length under LZ4 and 32,768 × under ZSTD (the most each codec can expand: an LZ4 "
      "match-length byte stands for at most 255 bytes, a 4-byte ZSTD RLE block for at most "
      "128 KiB), and a payload's buffers at most 32,768 × its length in all (and 1 GiB). For "
      "the 4 KiB inputs that is 128 MiB; the limit adds 32 MiB for arrow-rs's own buffers and "
      "the input's copies. The parsers' limit is 64 MiB for 8 KiB of text.\n")
    w("What the targets found, each fixed in `src/decode/` with a regression test in "
      "`src/decode/tests.rs` that fails without the fix: (1) an abort: arrow-rs's FileDecoder "
      "reads a block's message flatbuffer from after the length prefix to the block's end and "
      "never uses the prefix's length, but sluice's declared-size check read only as far as the "
      "prefix said, so an 886-byte file whose flatbuffer did not verify in that shorter span "
      "hid its record batch from the check, and a ZSTD buffer declaring 0x5404000000000000 "
      "bytes reached the allocator, which aborts the process (AddressSanitizer: "
      "allocation-size-too-big; in a release build `handle_alloc_error`, not a panic "
      "`catch_unwind` could stop). The check now reads each block as arrow-rs does "
      "(`a_file_message_is_checked_as_arrow_reads_it_whatever_its_length_prefix_says`). (2) The "
      "1 GiB cap held for any payload length, so a payload of a few hundred bytes could make "
      "arrow-rs reserve 1 GiB (`Vec::with_capacity` of the declared size, for ZSTD and LZ4 "
      "alike) — seen in the code while choosing the malloc limit, before a run hit it; now the "
      "expansion bound above applies "
      "(`a_buffer_may_not_declare_more_than_its_codec_can_expand_to`). (3) Placement: arrow-rs "
      "58 realigns misaligned buffers but takes a dense union's i32 offsets as they lie and "
      "panics when they are not 4-byte aligned, so a valid dense-union payload decoded as a "
      "copy but was quarantined as corrupt in place at an odd address (the decoders' check "
      "that both placements agree, on the seed itself); a payload that fails in place at an "
      "address an aligned copy would not have is now decoded once more from such a copy "
      "(`a_misaligned_dense_union_decodes_as_an_aligned_one_does`). (4) Placement again, by "
      "decode_file (2,479,604 executions at 060408e): a 1,129-byte file whose dense-union "
      "record batch block lay at an offset that is not a multiple of 8 decoded in place at an "
      "odd address (the two offsets made up for each other) but not from an aligned copy; "
      "sluice now refuses a file block whose offset, metadata or body length is off the 8-byte "
      "grid, as Arrow C++ does (\"Unaligned block in IPC file\"; "
      "`a_file_block_off_the_8_byte_grid_is_corrupt_wherever_the_payload_lies`). (5) The same "
      "inside an aligned block, by decode_file (8,407,338 executions at ae25355): a buffer at "
      "body offset 3. sluice now refuses any buffer off the 8-byte grid of its body, in both "
      "formats, as Arrow C++ does (\"Buffer 4 did not start on 8-byte aligned offset: 25\", "
      "pyarrow 26; `a_buffer_off_the_8_byte_grid_is_corrupt_wherever_the_payload_lies`), and "
      "reads a stream body that an unpadded message put off the grid from an aligned copy, as "
      "Arrow C++ does (pyarrow reads such a stream; "
      "`a_stream_body_off_the_8_byte_grid_is_read_from_an_aligned_copy_wherever_the_payload_lies`"
      "). LZ4 decompression in "
      "arrow-rs (`read_to_end` into a buffer of the declared size) is not bounded by the "
      "declared size, but by what the frame can expand to (255-fold) plus lz4_flex's block "
      "buffers (at most 12 MiB for 4 MiB blocks).\n")
    cfg_row = next((r for r in rows if r["target"] == "config"), None)
    if cfg_row:
        w("What `config` found, three times, all in tracing-subscriber 0.3.23's filter parser. "
          "The first two: it walks a directive's trimmed text but slices the untrimmed one at "
          "those indices "
          "(`directive.rs`): whitespace before a directive followed by a multi-byte character "
          "lands the slice inside the character, and `sluice` would have panicked at start "
          "instead of naming the key. (1) After 3,063,444 executions (commit 319280e): a "
          "directive starting with a non-ASCII space (U+00A0; `directive.rs:155`). "
          "`LogConfig::validate` then rejected non-ASCII spaces in `log.level` (`` `log.level` "
          "contains the non-ASCII space U+00A0; a filter is written in ASCII, e.g. info or "
          "sluice=debug ``; `a_log_filter_with_a_non_ascii_space_is_an_error_not_a_panic`). "
          "(2) After 1,350,501 executions of the next count (commit 0d9f83c): tabs before a "
          "directive with U+00E0 in it (`directive.rs:178`): that "
          "check treated the symptom. Now every comma-separated directive is trimmed before "
          "the parser sees it (`config::env_filter`, for `log.level` and `RUST_LOG` alike), so "
          "its indices agree (`a_log_filter_with_whitespace_before_a_multibyte_character_is_an_"
          "error_not_a_panic`; the fuzz build of the code before it "
          "panics on the artifact). (3) After 7,360,794 executions of the third count (two "
          "slices, the second ending at commit 26a318b): a timeout, a 304-byte `log.level` whose "
          "span field value the parser compiled as a regular expression into a DFA: 36 CPU s "
          "under AddressSanitizer (written as a timeout after 177 s while the machine's builds "
          "starved the run) and 10.5 CPU s for a release `sluice check` to reject it. Field "
          "values now match literally (tracing-subscriber's `with_regex(false)`, which it "
          "advises for filters from untrusted input): the same check takes 0.02 s "
          "(`a_field_value_is_matched_literally_not_compiled_as_a_regular_expression` in "
          "`config/src/log.rs`). With each fix the target's code changed, so its count "
          "starts again at the next slice.\n")
    # Sites as scripts/fuzz records them: file:line in their crate (sluice's own as src/…).
    sites = sorted({p.split(": ")[0] for r in rows for p in r.get("panic_sites", [])})
    ours = [x for x in sites if x.startswith("src/")]
    overflow = "src/decode/mod.rs:181"
    if sites:
        w(f"Panics that `decode` caught and turned into a corrupt-payload error (the quarantine), "
          f"{len(sites)} distinct sites, {len(sites) - len(ours)} in arrow-rs: on corrupt input "
          "(schemas with unknown types, widths or units; buffers shorter than their lengths), "
          "and `scalar.rs:190` on the misaligned dense union of (3), which `decode` then decodes "
          "from a copy; " + f"{len(ours)} in sluice's own code"
          + (f" (`{overflow}`: a file block's declared metadata and body lengths added as i64, "
             "which the fuzz build's overflow checks turn into a panic on lengths near "
             "i64::MAX; a release build wraps, and the bounds check on the next line rejects "
             "the block)" if overflow in ours else "")
          + ". All of them: " + ", ".join(f"`{x}`" for x in sites)
          + ". The targets count these as handled, as "
          "production does (the release profile unwinds); a panic nothing catches, an abort, a "
          "failed check or a limit ends the run as a crash.\n")
    w("Reproduce with `scripts/fuzz` (full) or `scripts/fuzz --smoke` (what CI runs); an "
      "artifact replays with `~/.cache/sluice/fuzz-target/x86_64-unknown-linux-gnu/release/"
      "<target> <file>`.\n")
    for note in fz.get("notes", []):
        w(note + "  ")
    if fz.get("notes"):
        w("")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--markdown", required=True)
    ap.add_argument("--plots", required=True)
    ap.add_argument("--faults", help="the chaos suite's results (default: faults.json beside "
                    "the results)")
    ap.add_argument("--fuzz", help="scripts/fuzz's results (default: fuzz.json beside the "
                    "results)")
    a = ap.parse_args()
    with open(a.results) as f:
        res = json.load(f)
    os.makedirs(a.plots, exist_ok=True)
    data = by_dataset(res)
    m, st = res["machine"], res["settings"]
    cap = st["memory_cap_mib"] * MIB
    rel = os.path.relpath(a.plots, os.path.dirname(os.path.abspath(a.markdown)))
    plot_throughput(data, os.path.join(a.plots, "throughput.png"))
    plot_rss(data, cap, os.path.join(a.plots, "rss.png"))
    if res.get("latency"):
        plot_latency(res["latency"], os.path.join(a.plots, "latency.png"))
    plot_compression(res.get("compression", []), os.path.join(a.plots, "compression.png"))

    out = []
    w = out.append
    w("# FINDINGS: sluice measured\n")
    w(f"Generated by `bench/findings.py` from `{os.path.basename(a.results)}` "
      "(written by `scripts/bench`); regenerate with `scripts/bench --findings-only`. "
      "Do not edit the numbers by hand.\n")
    w(f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux "
      f"{m['kernel']}; run {m['date']}, {res['seconds'] / 60:.0f} min in all. Broker: "
      f"{m['broker']} (memory storage) on loopback, {st['partitions']} partitions, producer "
      f"`{st['producer']}`. DuckDB 1.5.5 + DuckLake (catalog in a "
      f"{'SQLite' if st.get('catalog') == 'sqlite' else 'DuckDB'} file, Parquet on local disk). Python: confluent-kafka (librdkafka {m['librdkafka_python']}), DuckDB "
      f"{m['duckdb_python']}, pyarrow {m['pyarrow']}. Every consumer, Python ones included, "
      f"uses `fetch.wait.max.ms` {st['fetch_wait_max_ms']} (tansu holds every fetch for it; "
      f"section 7) and "
      f"sluice's fetch sizes; flushes at {st['flush_mib']} MiB. sluice runs with its default "
      f"configuration (memory cap 1 GiB) for throughput (1), and again with a "
      f"{st['memory_cap_mib']} MiB cap (1′) for memory."
      + (f" The Python consumers write Parquet with sluice's codec, "
         f"{st['python_parquet_compression']}: left at DuckLake's default, snappy, the Python "
         f"IPC consumer wrote 1.9× the Parquet bytes for 0.8× the CPU per GB (300,000 rows of "
         f"the small shape, 4 repeats, 2026-12-06), which is not the same work."
         if st.get("python_parquet_compression") else "") + "\n")
    latest = {r["section"]: r for r in res.get("runs", [])}
    for r in latest.values():
        w(f"Section {r['section']} re-run on {r['date']} (`scripts/bench --sections "
          f"{r['section']} --merge`); its numbers are from that run.  ")
    w("")
    w("Reproduce everything: `scripts/bench` (options: `--repeats`, `--scale`, "
      "`--py-seconds`, `--datasets`; `bench/run.py --help`).\n")

    w("## 1. Throughput, catch-up (topic pre-filled, then consumed from the start)\n")
    for ds, reps in data.items():
        spec = st["datasets"][ds]
        first = reps[0]["sluice"]
        w(f"### {ds}: {spec['rows']:,} rows, {first['bytes'] / 1e9:.2f} GB of Arrow IPC "
          f"in {first['messages']:,} messages ({spec['rows_per_message']:,} rows each); "
          f"{len(reps)} repeats\n")
        w("| | rows/s, median (min–max) | MB/s, median | CPU s per GB | broker CPU s per GB | "
          "peak RSS MiB |")
        w("|---|---|---|---|---|---|")
        for key, label in MODES:
            if key not in reps[0]:
                continue
            rs = [r[key] for r in reps]
            rows_s = [r["rows_per_s"] for r in rs]
            mbs = med([r["mb_per_s"] for r in rs])
            cpu = med([r["cpu_seconds"] / (r["bytes"] / 1e9) for r in rs])
            rss = max(r["peak_rss_bytes"] for r in rs) / MIB
            brk = ("–" if key.startswith("sink") or "broker_cpu_seconds" not in rs[0] else
                   f"{med([r['broker_cpu_seconds'] / (r['bytes'] / 1e9) for r in rs]):.2f}")
            note = ""
            if key in ("sink", "sink_1000"):
                note = " ¹"
            if key == "delivery":
                note = " ³"
            if key.startswith("python") and not all(r.get("complete", True) for r in rs):
                note = " ²"
            w(f"| {label}{note} | {spread(rows_s)} | {mbs:,.0f} | {cpu:.2f} | {brk} | "
              f"{rss:,.0f} |")
        w("")
        w("| ratio (rows/s, per repeat) | median (min–max) |")
        w("|---|---|")
        for k, xs in ratios(reps).items():
            if xs:
                w(f"| {k} | {spread(xs, '{:.2f}')} |")
        w("")
    w("¹ The sink ceiling regenerates the producer's batches in memory before its clock starts "
      "and commits them through sluice's sink, closing flushes at the same size threshold "
      "(decoded Arrow bytes); its peak RSS includes holding every batch. The sink joins runs "
      "of small batches as sluice's does (section 2); (2″) is fed the same rows already cut "
      "into 1,000-row batches.  ")
    if any(not r[k].get("complete", True) for reps in data.values() for r in reps
           for k in ("python_ipc", "python_json")):
        w(f"² Time-bounded: a Python run stops consuming after {st['py_seconds']:.0f} s, "
          "flushes what it has and reports the rate over those rows (`complete: false` in the "
          "JSON).")
    w("")
    w(f"![throughput]({rel}/throughput.png)\n")

    w("## 2. Copies and allocations between librdkafka and DuckDB\n")
    w("| dataset | in place | realigned | aligned copy | decompressed | coalesced | Rust heap "
      "allocations per Kafka message (sluice) | same, sink ceiling per batch |")
    w("|---|---|---|---|---|---|---|---|")
    for ds, reps in data.items():
        s = [r["sluice"] for r in reps]
        k = [r["sink"] for r in reps]
        tot = lambda r: r["bytes"]  # noqa: E731
        ip = med([r["in_place_bytes"] / tot(r) for r in s])
        ra = med([r["realigned_bytes"] / tot(r) for r in s])
        de = med([r["decompressed_bytes"] / tot(r) for r in s])
        pc = med([r.get("payload_copy_bytes", 0) / tot(r) for r in s])
        co = med([r.get("coalesced_bytes", 0) / tot(r) for r in s])
        al = med([r["rust_allocations"] / r["messages"] for r in s])
        batches = st["datasets"][ds]["rows"] / st["datasets"][ds]["rows_per_message"]
        kal = med([r["rust_allocations"] / batches for r in k])
        w(f"| {ds} | {ip:.3f} | {ra:.3f} | {pc:.3f} | {de:.3f} | {co:.3f} | {al:,.1f} | "
          f"{kal:,.1f} |")
    w("")
    w("Bytes are per byte of Kafka payload. *In place*: the Arrow buffers are views into the "
      "librdkafka message (no copy). *Realigned*: arrow-rs copies a buffer whose offset in the "
      "payload is not a multiple of its type's alignment (the IPC writer pads buffers to 8 "
      "bytes, but the payload itself starts wherever librdkafka put it). *Aligned copy*: once "
      "a misaligned payload of a schema had more than half its bytes realigned, every payload "
      "of that schema is decoded from one aligned copy of the whole payload instead. "
      "*Decompressed*: "
      "IPC body compression (zero here: these topics are uncompressed; see section 5). "
      "*Coalesced*: at a flush, runs of small batches (under 64 KiB, e.g. 16-row messages) "
      "copied into batches of up to 2,048 rows, because DuckDB's Arrow scan costs about as "
      "much per batch whatever its rows. From there "
      "DuckDB reads the same buffers through the Arrow C Data Interface: the one real copy is "
      "DuckDB's own, converting Arrow vectors into its Parquet writer. Allocations are every "
      "allocation through Rust's global allocator in the process (a counting allocator in the "
      "bench build) divided by Kafka messages: decoding a message allocates the RecordBatch "
      "and its array structs (not the data); DuckDB's and librdkafka's own C/C++ allocations "
      "are not counted.\n")

    w("## 3. Memory\n")
    ev = data.get("events")
    if ev:
        s = [r["sluice_capped"] for r in ev]
        backlog = s[0]["bytes"]
        w(f"sluice catching up a backlog of {backlog / 1e9:.2f} GB "
          f"({backlog / cap:.1f}× the {cap // MIB} MiB memory cap): peak RSS "
          f"{spread([r['peak_rss_bytes'] / MIB for r in s])} MiB over the repeats. The cap "
          "bounds Arrow data (pending + in flight + librdkafka's prefetch); the rest of the RSS "
          "is DuckDB's Parquet writer and the allocator's retained pages. Python consumers "
          "of the same backlog: IPC "
          f"{spread([r['python_ipc']['peak_rss_bytes'] / MIB for r in ev])} MiB, JSON "
          f"{spread([r['python_json']['peak_rss_bytes'] / MIB for r in ev])} MiB.\n")
        w(f"![rss]({rel}/rss.png)\n")
    memory = os.path.join(os.path.dirname(os.path.abspath(a.results)), "memory.json")
    if os.path.exists(memory):
        with open(memory) as f:
            memory_limit_section(w, json.load(f))

    w("## 4. Files\n")
    w("| dataset | Parquet files per GB of IPC | Parquet bytes per IPC byte | codec | row groups "
      "(rows: min / avg / max) |")
    w("|---|---|---|---|---|")
    for ds, reps in data.items():
        s = reps[0]["sluice"]
        p = s.get("parquet", {})
        gb = s["bytes"] / 1e9
        w(f"| {ds} | {s['files'] / gb:.1f} ({s['files']} files for {gb:.2f} GB) | "
          f"{s['file_bytes'] / s['bytes']:.3f} | {', '.join(p.get('codecs', []))} | "
          f"{p.get('row_groups', 'n/a')} ({p.get('row_group_rows_min', 0):,} / "
          f"{p.get('row_group_rows_avg', 0):,.0f} / {p.get('row_group_rows_max', 0):,}) |")
    w("")
    w("sluice writes one Parquet file per flush, with its default codec, zstd (DuckLake's own "
      "is snappy), and DuckDB's default row groups. A flush starts at "
      f"{st['flush_mib']} MiB of decoded Arrow data; while one flush is in "
      "flight the next table's data keeps accumulating, so under a backlog sluice writes "
      "fewer, larger files than the threshold alone: files per run, sluice (default cap) / "
      "sink ceiling / Python IPC: " + "; ".join(
          f"{ds} {spread([r['sluice']['files'] for r in reps], '{:.0f}')} / "
          f"{reps[0]['sink']['files']} / {reps[0]['python_ipc']['files']}"
          for ds, reps in data.items()) + ".\n")

    comp = res.get("compression", [])
    if comp:
        w("## 5. Wire compression (Arrow IPC body compression)\n")
        w("| dataset | codec | wire bytes per row | consume rows/s | sluice rows/s | sluice CPU s "
          "per M rows | decompressed bytes per wire byte |")
        w("|---|---|---|---|---|---|---|")
        for c in comp:
            s, k = c["sluice"], c["consume"]
            w(f"| {c['dataset']} | {c['codec']} | {s['bytes'] / s['rows']:.1f} | "
              f"{k['rows_per_s']:,.0f} | {s['rows_per_s']:,.0f} | "
              f"{s['cpu_seconds'] / s['rows'] * 1e6:.2f} | "
              f"{s['decompressed_bytes'] / s['bytes']:.2f} |")
        w("")
        for ds in dict.fromkeys(c["dataset"] for c in comp):
            rows = {c["codec"]: c["sluice"] for c in comp if c["dataset"] == ds}
            if "none" not in rows:
                continue
            base = rows["none"]
            per = lambda r, k: r[k] / r["rows"]  # noqa: E731
            w(f"{ds}: " + "; ".join(
                f"{codec} carries {per(base, 'bytes') / per(r, 'bytes'):.1f}× fewer bytes "
                f"for {per(r, 'cpu_seconds') / per(base, 'cpu_seconds') - 1:+.0%} sluice CPU "
                f"per row and {r['rows_per_s'] / base['rows_per_s'] - 1:+.0%} rows/s"
                for codec, r in rows.items() if codec != "none") + ".  ")
        w("Decompression is sluice's one unavoidable copy of compressed bodies (counted as "
          "decompressed bytes); the broker stores and serves the smaller messages, and the "
          "consume ceiling rises with them. In this loopback setup the network is free, so "
          "compression shows only its CPU side; across a real network it trades that CPU for "
          "the bytes above.\n")
        w(f"![compression]({rel}/compression.png)\n")

    lat = res.get("latency", [])
    if lat:
        w("## 6. Latency\n")
        w("| measure | setting | p50 | p99 | p999 | max |")
        w("|---|---|---|---|---|---|")
        for l in lat:
            if l["measure"] == "flight_latency":
                w(f"| produce → Flight follow receipt | {l['followers']} follower(s), "
                  f"{l['messages']:,} messages at 1000/s | {l['p50_ms']:.2f} ms | "
                  f"{l['p99_ms']:.2f} ms | {l['p999_ms']:.2f} ms | {l['max_ms']:.2f} ms |")
            else:
                w(f"| produce → visible in the lake | flush.max_age_ms {l['max_age_ms']:,}, "
                  f"{l['messages']:,} messages at 100/s | {l['p50_ms'] / 1000:.2f} s | "
                  f"{l['p99_ms'] / 1000:.2f} s | {l['p999_ms'] / 1000:.2f} s | "
                  f"{l['max_ms'] / 1000:.2f} s |")
        w("")
        w("Latency runs use librdkafka's mock cluster in-process (benches/live.rs): the "
          "producer, broker, sluice and the Flight followers share the 2 cores. Lake visibility "
          "is the time until the flush holding the row committed (sampled every 2 ms).\n")
        w(f"![latency]({rel}/latency.png)\n")

    fol = res.get("followers", [])
    if fol:
        w("### Flight followers at full ingest rate\n")
        w("| followers | behind the ring | ingest rows/s | received every row exactly once | "
          "errors | last row after | lake catch-ups | batches read from the lake |")
        w("|---|---|---|---|---|---|---|---|")
        for f in fol:
            behind = "the lake" if f["lake"] else "nothing (cut off)"
            if f["followers"] == 0:
                behind = "—"
            w(f"| {f['followers']} | {behind} | {f['ingest_rows_per_s']:,.0f} | "
              f"{f['complete']}/{f['followers']} | {f['errors']} | {f['last_s']:.1f} s | "
              f"{f['lake_catchups']:,} | {f['lake_batches']:,} |")
        w("")
        w(f"{fol[0]['rows']:,} rows of ~1 KB in 100-row messages, 4 partitions, a 64 MiB ring, "
          "librdkafka's mock cluster in-process (benches/live.rs `--lake both`): the followers "
          "start from the earliest position with ingestion and share the 2 cores with it; a "
          "follower counts only if it received every `seq` exactly once within 300 s of the last "
          "commit ('last row after': when the last of them did, from the start). With the lake behind the ring, a follower the ring evicted ahead of goes on "
          "from the lake (at most two lake rounds at once) instead of being cut off.\n")

    gap = res.get("gap", [])
    if gap and ev:
        w("## 7. Closing the gap\n")
        s = [r["sluice_capped"] for r in ev]
        full = [r["sluice"] for r in ev]
        before = next(g["run"] for g in gap if g["variant"].startswith("fetch.queue"))
        k = [r["sink"] for r in ev]
        c = [r["consume"] for r in ev]
        w(GAP_TEXT.format(
            before=before["rows_per_s"],
            before_ratio=before["rows_per_s"] / med([r["rows_per_s"] for r in k]),
            before_cores=before["cpu_seconds"] / before["seconds"],
            after=med([r["rows_per_s"] for r in s]),
            ratio=med([x["rows_per_s"] / y["rows_per_s"] for x, y in zip(s, k)]),
            full=med([r["rows_per_s"] for r in full]),
            full_ratio=med([x["rows_per_s"] / y["rows_per_s"] for x, y in zip(full, k)]),
            cap=st["memory_cap_mib"],
            sluice_cores=med([r["cpu_seconds"] / r["seconds"] for r in full]),
            sink_cores=med([r["cpu_seconds"] / r["seconds"] for r in k]),
            flush_share=med([r["flush_seconds"] / r["seconds"] for r in full]),
            consume=med([r["rows_per_s"] for r in c]),
            cpu_text=cpu_text(data),
            target_text=target_text(data)))
        w(f"| variant (events, {st['datasets']['events']['rows']:,} rows) | measured | rows/s | "
          "MB/s | CPU cores busy | peak RSS MiB |")
        w("|---|---|---|---|---|---|")
        for g in gap:
            r = g["run"]
            w(f"| {g['variant']} | {r['mode']} | {r['rows_per_s']:,.0f} | "
              f"{r['mb_per_s']:,.0f} | {r['cpu_seconds'] / r['seconds']:.2f} | "
              f"{r['peak_rss_bytes'] / MIB:,.0f} |")
        for label, rs in ((f"now: fetch.queue.backoff.ms=10, cap {st['memory_cap_mib']} MiB "
                           "(1′), median of section 1", s),
                          ("now, default cap 1 GiB (1), median of section 1", full)):
            w(f"| {label} | sluice | {med([r['rows_per_s'] for r in rs]):,.0f} | "
              f"{med([r['mb_per_s'] for r in rs]):,.0f} | "
              f"{med([r['cpu_seconds'] / r['seconds'] for r in rs]):.2f} | "
              f"{max(r['peak_rss_bytes'] for r in rs) / MIB:,.0f} |")
        w("")
        slow = next((g["run"] for g in gap if "fetch.wait" in g["variant"]), None)
        if slow:
            w("The broker: tansu answers a fetch only after `fetch.wait.max.ms` even when data "
              "is waiting (Kafka answers at once). With librdkafka's 500 ms default the consume "
              f"ceiling was {slow['mb_per_s']:,.0f} MB/s (row above) instead of "
              f"{med([r['mb_per_s'] for r in c]):,.0f} MB/s at 10 ms, so every consumer in "
              "these runs, the Python ones included, uses 10 ms. sluice keeps librdkafka's "
              "default for real Kafka brokers.\n")
        w(PER_MESSAGE_CHANGES)

    sc = res.get("scaling", [])
    if sc:
        w("## 8. Several instances\n")
        w(f"{sc[0]['rows']:,} events rows (~1 KB) produced as fast as the producer goes into an "
          "8-partition topic, consumed by 1, 2 and 3 `sluice run` processes in one group "
          "sharing one DuckLake (PostgreSQL catalog, Parquet on local disk, "
          "`flush.max_age_ms` 2000). The clock runs from the producer's start until the "
          "instances' `/metrics` sum to every row committed; the group held all 8 partitions "
          "before the producer started (`bench/scaling.py`).\n")
        w("| instances | partitions per instance | seconds | rows/s | sluice CPU cores busy | "
          "producer seconds | commit conflicts retried | Parquet files |")
        w("|---|---|---|---|---|---|---|---|")
        for r in sc:
            parts = ", ".join(f"{p:.0f}" for p in r["partitions_per_instance"])
            busy = f"{r['cores_busy']:.2f}" if "cores_busy" in r else "n/a"
            w(f"| {r['instances']} | {parts} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | "
              f"{busy} | {r['producer_seconds']:.2f} | {r['commit_conflicts']:.0f} | "
              f"{r['files']} |")
        w("")
        one = sc[0]
        if "cores_busy" in one:
            per_core = one["rows_per_s"] / one["cores_busy"]
            w(f"One instance keeps {one['cores_busy']:.2f} cores busy for {one['rows_per_s']:,.0f} "
              f"rows/s ({per_core:,.0f} rows/s per busy core); the broker and the producer "
              f"share the same 2 cores. Here more instances only split the same CPU "
              f"({sc[-1]['instances']} instances: {sc[-1]['rows_per_s'] / one['rows_per_s']:.2f}× "
              "one instance's rate). Instances share nothing but the broker and the catalog, "
              f"so on a machine with more cores the rate should grow by about {per_core:,.0f} "
              "rows/s per core given to sluice, until the broker's fetch rate, the partition "
              "count or the catalog's commit rate binds; commit conflicts (retried, counted "
              "above) grow with the number of instances flushing at once.\n")
    rd = res.get("readers", [])
    if rd:
        w("## 9. Reading while ingesting\n")
        w(f"{st['readers_rows']:,} events rows caught up into the default SQLite-catalog lake "
          "(flushes at 16 MiB, so a reader sees many commits) alone and with a stock DuckDB "
          "Python reader in its own process attached `READ_ONLY`, counting every 200 ms; each "
          "repeat runs both (alternating which goes first) (`bench/readers.py`).\n")
        w("| repeat | alone rows/s | with reader rows/s | ratio | reads | reader errors | "
          "counts seen | read latency median / max s | reader CPU s | sluice s alone / with |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(rd):
            st_r = r["reader"]
            w(f"| {i + 1} | {r['alone']['rows_per_s']:,.0f} | "
              f"{r['with_reader']['rows_per_s']:,.0f} | {r['ratio_with_reader']:.3f} | "
              f"{st_r['reads']} | {len(st_r['errors'])} | {st_r['distinct_counts']} | "
              f"{st_r['latency_s_median']:.3f} / {st_r['latency_s_max']:.3f} | "
              f"{st_r.get('cpu_seconds', float('nan')):.2f} | "
              f"{r['alone']['seconds']:.2f} / {r['with_reader']['seconds']:.2f} |")
        reader_ratios = [r["ratio_with_reader"] for r in rd]
        w("")
        w(f"With a reader sluice ingests at {med(reader_ratios):.2f}× its rate alone (median, range "
          f"{min(reader_ratios):.2f}–{max(reader_ratios):.2f}). On 2 cores the reader process (its Python "
          "and DuckDB start, the attach, the queries: its CPU seconds above) takes CPU from the "
          "pipeline; no commit waited for or failed because of the reader (tests/readers.rs "
          "asserts that on every run).\n")
    lay = res.get("layout", [])
    if lay:
        w("## 10. Parquet codec and partitioning\n")
        w(f"{st['layout_rows']:,} events rows caught up with the lake tables' codec snappy "
          "(DuckLake's default), zstd and lz4_raw, and zstd with `partition_by` "
          "`day(timestamp)` (the dataset's rows all fall on one day: one partition per flush) "
          "and `bucket(8, seq)` (8 files per flush); all variants in each repeat, in a "
          "rotating order (`bench/layout.py`).\n")
        w("| variant | rows/s, median (min–max) | CPU s per GB of IPC | Parquet bytes per IPC "
          "byte | files |")
        w("|---|---|---|---|---|")
        for name in dict.fromkeys(x["variant"] for x in lay):
            rs = [x["run"] for x in lay if x["variant"] == name]
            w(f"| {name} | {spread([r['rows_per_s'] for r in rs])} | "
              f"{med([r['cpu_seconds'] / (r['bytes'] / 1e9) for r in rs]):.2f} | "
              f"{med([r['file_bytes'] / r['bytes'] for r in rs]):.3f} | {rs[0]['files']} |")
        w("")
    fr = res.get("freshness")
    if fr and fr.get("variants"):
        freshness_section(w, fr)
    faults = a.faults or os.path.join(os.path.dirname(os.path.abspath(a.results)), "faults.json")
    if os.path.exists(faults):
        with open(faults) as f:
            faults_section(w, json.load(f))
    fuzz = a.fuzz or os.path.join(os.path.dirname(os.path.abspath(a.results)), "fuzz.json")
    if os.path.exists(fuzz):
        with open(fuzz) as f:
            fuzz_section(w, json.load(f))
    rt = res.get("realtime")
    if rt and rt.get("freshness"):
        realtime_section(w, rt)
    with open(a.markdown, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    print(f"wrote {a.markdown} and {a.plots}/*.png")


if __name__ == "__main__":
    main()
