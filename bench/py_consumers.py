"""The two Python baselines of the benchmark, as Kafka -> DuckLake consumers are written today.

- ``--mode ipc``:  confluent-kafka + ``pyarrow.ipc`` + DuckDB ``register`` + ``INSERT`` (Arrow IPC
  message values, the same topic sluice reads).
- ``--mode json``: confluent-kafka + ``orjson`` + ``pa.Table.from_pylist`` + DuckDB ``INSERT``
  (one JSON event per message).

Both flush when the consumed payload bytes reach ``--flush-mib`` (sluice's threshold), insert into
a DuckLake table in one transaction, then commit Kafka offsets synchronously (at least once: the
prior art's guarantee). They use sluice's librdkafka fetch settings. A run stops when every row
of the topic is committed or after ``--seconds`` of consuming (then the rows so far are flushed
and the rate is over those). Prints one JSON line like benches/ceilings.rs.
"""

import argparse
import json
import os
import resource
import threading
import time

import duckdb
import orjson
import pyarrow as pa
import pyarrow.ipc
from confluent_kafka import Consumer, TopicPartition

DDL = {
    "events": """seq BIGINT, uuid VARCHAR, event VARCHAR, distinct_id VARCHAR,
        "timestamp" TIMESTAMPTZ, properties VARCHAR, team_id INTEGER,
        session_duration_ms BIGINT, revenue DOUBLE, is_mobile BOOLEAN""",
    "narrow": """seq BIGINT, ts TIMESTAMPTZ, sensor_id INTEGER, value DOUBLE, reading DOUBLE,
        status INTEGER""",
}


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Sampler:
    """RSS every 200 ms."""

    def __init__(self):
        self.origin = time.monotonic()
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            self.samples.append((time.monotonic() - self.origin, rss_bytes()))
            self.stop.wait(0.2)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.samples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["ipc", "json"], required=True)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--dataset", choices=["events", "narrow"], required=True)
    ap.add_argument("--rows", type=int, required=True, help="rows in the topic")
    ap.add_argument("--dir", required=True, help="lake directory (created)")
    ap.add_argument("--flush-mib", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fetch-wait-ms", type=int, default=10)
    ap.add_argument("--parquet-compression",
                    help="the table's Parquet codec (DuckLake's parquet_compression; unset: "
                    "DuckLake's default, snappy), as sluice's tables.defaults.parquet_compression")
    ap.add_argument("--parquet-compression-level", type=int,
                    help="the table's zstd level (DuckLake's parquet_compression_level; unset: "
                    "DuckDB's, 3), as sluice's tables.defaults.parquet_compression_level")
    a = ap.parse_args()

    sampler = Sampler()
    os.makedirs(a.dir, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        f"ATTACH 'ducklake:{a.dir}/py.ducklake' AS lake (DATA_PATH '{a.dir}/data/')"
    )
    con.execute(f"CREATE TABLE lake.{a.dataset} ({DDL[a.dataset]})")
    if a.parquet_compression is not None:
        con.execute(f"CALL lake.set_option('parquet_compression', "
                    f"'{a.parquet_compression}', table_name := '{a.dataset}')")
    if a.parquet_compression_level is not None:
        con.execute(f"CALL lake.set_option('parquet_compression_level', "
                    f"{a.parquet_compression_level}, table_name := '{a.dataset}')")
    consumer = Consumer(
        {
            "bootstrap.servers": a.brokers,
            "group.id": f"py-{a.mode}-{os.getpid()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "queued.max.messages.kbytes": 65536,
            "fetch.max.bytes": 52428800,
            "max.partition.fetch.bytes": 1048576,
            "fetch.wait.max.ms": a.fetch_wait_ms,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.subscribe([a.topic])
    flush_bytes = a.flush_mib * 1024 * 1024

    pending, pending_bytes, pending_rows = [], 0, 0
    committed_rows = committed_bytes = messages = flushes = 0
    started = cpu0 = timed_from = None
    positions = {}

    def flush():
        nonlocal pending, pending_bytes, pending_rows, committed_rows, committed_bytes, flushes
        if not pending:
            return
        if a.mode == "ipc":
            table = pa.Table.from_batches(pending)
        else:
            table = pa.Table.from_pylist(pending)
        con.register("incoming", table)
        con.execute(f"INSERT INTO lake.{a.dataset} SELECT * FROM incoming")
        con.unregister("incoming")
        consumer.commit(
            offsets=[TopicPartition(a.topic, p, o) for p, o in positions.items()],
            asynchronous=False,
        )
        committed_rows += pending_rows
        committed_bytes += pending_bytes
        flushes += 1
        pending, pending_bytes, pending_rows = [], 0, 0

    join_deadline = time.monotonic() + 120
    while committed_rows + pending_rows < a.rows:
        now = time.monotonic()
        if started is None and now > join_deadline:
            raise SystemExit("nothing consumed within 120 s")
        if started is not None and now - started > a.seconds:
            break
        for m in consumer.consume(num_messages=1000, timeout=0.1):
            if m.error():
                continue
            if started is None:
                started, cpu0 = time.monotonic(), cpu_seconds()
                timed_from = started - sampler.origin
            value = m.value()
            positions[m.partition()] = m.offset() + 1
            messages += 1
            pending_bytes += len(value)
            if a.mode == "ipc":
                for batch in pyarrow.ipc.open_stream(value):
                    pending.append(batch)
                    pending_rows += batch.num_rows
            else:
                pending.append(orjson.loads(value))
                pending_rows += 1
            if pending_bytes >= flush_bytes:
                flush()
    flush()
    seconds = time.monotonic() - started
    cpu = cpu_seconds() - cpu0
    consumer.close()
    lake_rows = con.execute(f"SELECT count(*) FROM lake.{a.dataset}").fetchone()[0]
    if lake_rows != committed_rows:
        raise SystemExit(f"lake holds {lake_rows} rows, committed {committed_rows}")
    files = file_bytes = 0
    for root, _, names in os.walk(f"{a.dir}/data"):
        for n in names:
            if n.endswith(".parquet"):
                files += 1
                file_bytes += os.path.getsize(os.path.join(root, n))
    rss = sampler.finish()
    print(
        json.dumps(
            {
                "mode": f"python_{a.mode}",
                "dataset": a.dataset,
                "topic": a.topic,
                "rows": committed_rows,
                "bytes": committed_bytes,
                "messages": messages,
                "seconds": seconds,
                "rows_per_s": committed_rows / seconds,
                "mb_per_s": committed_bytes / 1e6 / seconds,
                "cpu_seconds": cpu,
                "flushes": flushes,
                "files": files,
                "file_bytes": file_bytes,
                "complete": committed_rows == a.rows,
                "peak_rss_bytes": max(s[1] for s in rss),
                "rss": rss,
                "timed_from_s": timed_from,
            }
        )
    )


if __name__ == "__main__":
    main()
