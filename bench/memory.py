"""The memory-limit benchmark (issue 14, section 2): `sluice run` catching up a backlog of at
least 10x its memory limit, for each limit, side by side in one run:

  cap only          flush.memory_cap_bytes = the limit (all an operator could set before
                    memory.limit_bytes; it bounds Arrow data only)
  memory.limit      memory.limit_bytes = the limit
  memory.limit in a cgroup
                    the same inside a cgroup v1 memory controller whose limit_in_bytes is the
                    limit (the kernel's enforcement of a container limit); records whether the
                    kernel killed it (memory.oom_control's oom_kill)
  cap only in a cgroup
                    the old configuration under the same cgroup limit

Each run is a fresh lake and consumer group on the same tansu topic (4 partitions, the events
dataset: ~1 KB rows, 1,000 rows a message). It ends when every row is committed (the lake's
sluice_committed_rows_total equals the backlog) or the process dies, or after --timeout-s.
Peak RSS is the kernel's VmHWM of the process, and the largest VmRSS sampled every 100 ms.
Results to one JSON file (bench/memory.json), rendered into FINDINGS by bench/findings.py.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "chaos"))
from parts import Tansu, free_port, metrics  # noqa: E402

MIB = 1024 * 1024
ROW_BYTES = 1015  # events dataset: 2.7 M rows = 2.74 GB of IPC (bench/run.py)
CGROUP_ROOT = "/sys/fs/cgroup/memory"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cgroup_available():
    return os.path.isdir(CGROUP_ROOT) and os.access(CGROUP_ROOT, os.W_OK)


class Cgroup:
    """A cgroup v1 memory controller directory with a limit (no swap here to escape to)."""

    def __init__(self, name, limit):
        self.path = os.path.join(CGROUP_ROOT, name)
        os.makedirs(self.path, exist_ok=True)
        with open(os.path.join(self.path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit))

    def read(self, name):
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def oom_kills(self):
        for line in self.read("memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def rss(self):
        for line in self.read("memory.stat").splitlines():
            if line.startswith("rss "):
                return int(line.split()[1])
        return 0

    def remove(self):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


def produce(a, brokers, topic, rows):
    cmd = [a.loadgen, "--brokers", brokers, "--topic", topic, "--partitions", "4",
           "--dataset", "events", "--total", str(rows), "--rows-per-batch", "1000",
           "-X", "batch.size=16777216", "-X", "linger.ms=20"]
    log("  $", " ".join(cmd))
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"producing failed:\n{p.stderr[-3000:]}")
    log(f"    {p.stderr.strip().splitlines()[-1]} ({time.monotonic() - t0:.0f} s)")


def config(brokers, topic, group, lake, port, limit, variant):
    # max_age_ms 5 s (every variant): the backlog's last partial flush does not wait 60 s.
    memory = (f"[memory]\nlimit_bytes = {limit}\n[flush]\nmax_age_ms = 5000\n"
              if variant.startswith("limit")
              else f"[flush]\nmemory_cap_bytes = {limit}\nmax_age_ms = 5000\n")
    return f"""[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{topic}"]
[lake]
catalog = "{lake}/lake.sqlite"
data_path = "{lake}/data/"
[metrics]
address = "127.0.0.1:{port}"
[live]
address = "127.0.0.1:{free_port()}"
{memory}"""


def run(a, brokers, topic, rows, limit, variant, n):
    work = tempfile.mkdtemp(prefix="sluice-mem-")
    port = free_port()
    path = os.path.join(work, "sluice.toml")
    with open(path, "w") as f:
        f.write(config(brokers, topic, f"mem-{n}", work, port, limit, variant))
    cg = Cgroup(f"sluice-bench-{os.getpid()}-{n}", limit) if variant.endswith("cgroup") else None
    cmd = [a.sluice, "run", "--config", path]
    if cg:
        # Joins the cgroup before exec, so every byte of the process is counted.
        cmd = ["sh", "-c", f'echo $$ > {cg.path}/cgroup.procs && exec "$@"', "sh", *cmd]
    out = open(os.path.join(work, "sluice.log"), "w")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT)
    peak_sampled = 0
    cg_rss = 0
    committed = 0
    first = None
    done = None
    hwm = None
    while proc.poll() is None and time.monotonic() - t0 < a.timeout_s:
        r = status(proc.pid, "VmRSS")
        if r:
            peak_sampled = max(peak_sampled, r)
        h = status(proc.pid, "VmHWM")
        if h:
            hwm = h
        if cg:
            cg_rss = max(cg_rss, cg.rss())
        m = metrics(port)
        if m:
            committed = int(sum(v for k, v in m.items()
                                if k.split("{")[0] == "sluice_committed_rows_total"))
            if committed and first is None:
                first = time.monotonic()
            if committed >= rows:
                done = time.monotonic()
                break
        time.sleep(0.1)
    died = proc.poll()
    if died is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out.close()
    result = {
        "variant": variant, "limit_bytes": limit, "rows": rows, "committed_rows": committed,
        "seconds": (done - t0) if done else None,
        "rows_per_s": rows / (done - t0) if done else None,
        "mb_per_s": rows * ROW_BYTES / 1e6 / (done - t0) if done else None,
        "peak_rss_bytes": hwm, "peak_rss_sampled_bytes": peak_sampled,
        "exit": None if died is None else died,
        "completed": done is not None,
    }
    if cg:
        result["cgroup_oom_kills"] = cg.oom_kills()
        result["cgroup_max_usage_bytes"] = int(cg.read("memory.max_usage_in_bytes"))
        result["cgroup_failcnt"] = int(cg.read("memory.failcnt"))
        result["cgroup_rss_max_sampled_bytes"] = cg_rss
        cg.remove()
    if not done:
        with open(os.path.join(work, "sluice.log"), errors="replace") as f:
            result["log_tail"] = f.read()[-1500:]
    elif cg and variant.startswith("limit") and a.maintain:
        result["maintain"] = maintain(a, path, work, limit, n)
    if a.keep:
        log(f"    kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    ratio = f"{hwm / limit:.2f}" if hwm else "?"
    log(f"    {variant}: {'done' if done else 'NOT DONE'} committed {committed:,}/{rows:,} "
        f"{'' if not done else f'in {done - t0:.0f} s '}peak RSS "
        f"{(hwm or 0) / MIB:.0f} MiB = {ratio} x limit"
        + (f", cgroup oom_kill {result['cgroup_oom_kills']}" if cg else "")
        + (f", exit {died}" if died is not None else ""))
    return result


def maintain(a, path, work, limit, n):
    """`sluice maintain` over the lake just written (compaction of every flush's file), inside
    a cgroup limited to `limit`: its peak RSS, duration and exit."""
    cg = Cgroup(f"sluice-bench-{os.getpid()}-{n}-maintain", limit)
    cmd = ["sh", "-c", f'echo $$ > {cg.path}/cgroup.procs && exec "$@"', "sh",
           a.sluice, "maintain", "--config", path]
    files = lambda: sum(len(f) for _, _, f in os.walk(os.path.join(work, "data")))  # noqa: E731
    before = files()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    hwm = 0
    while proc.poll() is None and time.monotonic() - t0 < a.timeout_s:
        hwm = max(hwm, status(proc.pid, "VmHWM") or 0)
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    out = proc.communicate()[0]
    r = {"exit": proc.returncode, "seconds": time.monotonic() - t0, "peak_rss_bytes": hwm,
         "files_before": before, "files_after": files(), "cgroup_oom_kills": cg.oom_kills(),
         "output_tail": out[-600:]}
    cg.remove()
    log(f"    maintain in the cgroup: exit {r['exit']} in {r['seconds']:.0f} s, peak RSS "
        f"{hwm / MIB:.0f} MiB = {hwm / limit:.2f} x limit, files {before} -> {r['files_after']}, "
        f"oom_kill {r['cgroup_oom_kills']}")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--tansu", required=True)
    ap.add_argument("--limits-mib", default="512,1024")
    ap.add_argument("--backlog-factor", type=float, default=10.5,
                    help="backlog bytes of IPC / limit")
    ap.add_argument("--variants", default="cap,limit,limit-cgroup,cap-cgroup")
    ap.add_argument("--timeout-s", type=float, default=900)
    ap.add_argument("--keep", action="store_true", help="keep each run's lake and log")
    ap.add_argument("--no-maintain", dest="maintain", action="store_false",
                    help="skip `sluice maintain` over the lake of the limit-cgroup run")
    ap.add_argument("--out", default=os.path.join(HERE, "memory.json"))
    a = ap.parse_args()
    variants = a.variants.split(",")
    if any(v.endswith("cgroup") for v in variants) and not cgroup_available():
        raise SystemExit(f"no writable cgroup v1 memory controller at {CGROUP_ROOT}: run as "
                         "root, or leave the cgroup variants out (--variants cap,limit)")
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "cores": os.cpu_count(), "runs": []}
    n = 0
    for limit_mib in (int(x) for x in a.limits_mib.split(",")):
        limit = limit_mib * MIB
        rows = int(a.backlog_factor * limit / ROW_BYTES) // 1000 * 1000
        work = tempfile.mkdtemp(prefix="sluice-mem-broker-")
        broker = Tansu(a.tansu, "events", 4, work)
        try:
            log(f"limit {limit_mib} MiB: backlog {rows:,} rows "
                f"({rows * ROW_BYTES / 1e9:.2f} GB, {rows * ROW_BYTES / limit:.1f}x)")
            produce(a, broker.brokers, "events", rows)
            log(f"    tansu RSS {status(broker.proc.pid, 'VmRSS') / MIB:.0f} MiB")
            for v in variants:
                n += 1
                r = run(a, broker.brokers, "events", rows, limit, v, n)
                r["backlog_bytes"] = rows * ROW_BYTES
                results["runs"].append(r)
                with open(a.out, "w") as f:
                    json.dump(results, f, indent=1)
        finally:
            broker.stop()
            shutil.rmtree(work, ignore_errors=True)
    log(f"results: {a.out}")


if __name__ == "__main__":
    main()
