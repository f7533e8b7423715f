"""What was produced, what the lake holds, and the comparison of the two.

The producer numbers every row (`seq`, unique over the run) and records each message's
partition and offset from its delivery report. The lake keeps `_kafka_partition` and
`_kafka_offset` on every row, so the comparison is per message: each delivered message must be
in the lake exactly once with exactly its rows, and each partition's lake offset must equal the
broker's high watermark.
"""

import threading
import time

import duckdb
import pyarrow as pa
from confluent_kafka import Consumer, KafkaException, Producer as KafkaProducer, TopicPartition

from parts import S3_KEY_ID, S3_SECRET

TOPIC = "chaos"
GROUP = "chaos"


def payload(first_seq, rows):
    """One Arrow IPC stream: `rows` rows, `seq` from `first_seq`."""
    seq = pa.array(range(first_seq, first_seq + rows), pa.int64())
    body = pa.array([f"row {s} of the chaos suite" for s in range(first_seq, first_seq + rows)])
    batch = pa.record_batch([seq, body], names=["seq", "body"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue().to_pybytes()


class Producer:
    """Writes numbered rows at `rate` messages/s, round robin over the partitions, to one
    cluster or to several carrying identical content (the twin-broker zombie scenario). Pauses
    while the lake lags more than `max_lag` messages on a partition (the mock cluster keeps only
    ~5 MiB per partition)."""

    def __init__(self, clusters, partitions, rows_per_message, rate, lake_offsets, max_lag=1500):
        self.partitions = partitions
        self.rows = rows_per_message
        self.rate = rate
        self.lake_offsets = lake_offsets
        self.max_lag = max_lag
        self.clients = []
        for c in clusters:
            conf = {"bootstrap.servers": c.brokers, "acks": "all", "linger.ms": 5,
                    "message.timeout.ms": 600000, "queue.buffering.max.messages": 20000}
            if c.kind == "tansu":
                # tansu 0.6 reports a high watermark of the last record batch's base offset + 1.
                conf.update({"linger.ms": 0, "batch.num.messages": 1})
            else:
                conf["enable.idempotence"] = True
            self.clients.append(KafkaProducer(conf))
        self.delivered = [dict() for _ in clusters]  # {(partition, offset): (first_seq, rows)}
        self.failed = [[] for _ in clusters]
        self.sent = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _report(self, i, first):
        def cb(err, msg):
            if err is not None:
                self.failed[i].append((first, str(err)))
            else:
                self.delivered[i][(msg.partition(), msg.offset())] = (first, self.rows)
        return cb

    def _lag(self, partition):
        produced = self.sent // self.partitions + (1 if partition < self.sent % self.partitions else 0)
        return produced - self.lake_offsets().get(partition, 0)

    def _run(self):
        t0 = time.monotonic()
        while not self.stop_flag.is_set():
            partition = self.sent % self.partitions
            if self._lag(partition) > self.max_lag:
                for c in self.clients:
                    c.poll(0.05)
                continue
            due = t0 + self.sent / self.rate
            now = time.monotonic()
            if due > now:
                time.sleep(min(due - now, 0.05))
                continue
            first = self.sent * self.rows
            value = payload(first, self.rows)
            for i, c in enumerate(self.clients):
                while True:
                    try:
                        c.produce(TOPIC, value, partition=partition, on_delivery=self._report(i, first))
                        break
                    except BufferError:
                        c.poll(0.1)
                c.poll(0)
            self.sent += 1

    def stop(self):
        self.stop_flag.set()
        self.thread.join()
        for c in self.clients:
            left = c.flush(600)
            if left:
                raise RuntimeError(f"{left} messages still undelivered after 600 s")
        self.clients = []  # destroyed before the brokers stop


def watermarks(cluster, partitions):
    c = Consumer({"bootstrap.servers": cluster.brokers, "group.id": "chaos-watermarks"})
    try:
        out = {}
        for p in range(partitions):
            for attempt in range(30):
                try:
                    out[p] = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=5)[1]
                    break
                except KafkaException:
                    if attempt == 29:
                        raise
                    time.sleep(1)
        return out
    finally:
        c.close()


class Lake:
    """How a stock DuckDB (Python client) attaches the scenario's lake, read only."""

    def __init__(self, kind, catalog, data_path, s3_endpoint=None):
        self.kind = kind
        self.catalog = catalog
        self.data_path = data_path
        self.s3_endpoint = s3_endpoint

    def connect(self):
        con = duckdb.connect()
        if self.s3_endpoint:
            con.execute(f"""CREATE SECRET (TYPE s3, KEY_ID '{S3_KEY_ID}', SECRET '{S3_SECRET}',
                ENDPOINT '{self.s3_endpoint}', URL_STYLE 'path', USE_SSL false,
                REGION 'us-east-1')""")
        target = {"sqlite": f"sqlite:{self.catalog}", "postgres": f"postgres:{self.catalog}",
                  "duckdb": self.catalog}[self.kind]
        con.execute(f"ATTACH 'ducklake:{target}' AS lake (DATA_PATH '{self.data_path}', READ_ONLY)")
        if self.kind == "sqlite":
            con.execute("SET GLOBAL sqlite_disable_multithreaded_scans = true")
        return con

    @staticmethod
    def offsets(con):
        """{partition: next offset} of the chaos topic in the lake ({} before the first commit)."""
        try:
            rows = con.execute(
                'SELECT "partition", next_offset FROM lake.sluice_offsets '
                "WHERE topic = ? AND consumer_group = ?", [TOPIC, GROUP]).fetchall()
        except duckdb.CatalogException:
            return {}
        return {p: o for p, o in rows}


class OffsetWatch:
    """Reads the lake's offsets every `interval` s on its own connection (a reader attached
    while sluice runs); keeps the latest and when their sum last grew."""

    def __init__(self, lake, interval=0.5):
        self.lake = lake
        self.interval = interval
        self.latest = {}
        self.history = []  # (monotonic time, sum of offsets)
        self.errors = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        con = None
        while not self.stop_flag.is_set():
            try:
                if con is None:
                    con = self.lake.connect()
                got = Lake.offsets(con)
                self.latest = got
                total = sum(got.values())
                if not self.history or self.history[-1][1] != total:
                    self.history.append((time.monotonic(), total))
            except Exception:  # an outage of the catalog: reconnect on the next read
                self.errors += 1
                try:
                    if con is not None:
                        con.close()
                except Exception:
                    pass
                con = None
            self.stop_flag.wait(self.interval)

    def first_growth_after(self, t):
        for when, _ in self.history:
            if when > t:
                return when - t
        return None

    def wait_for(self, target, timeout, alive=lambda: True):
        """Waits until every partition's lake offset reaches `target`; the seconds it took, or
        None on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            got = self.latest
            if all(got.get(p, 0) >= o for p, o in target.items()):
                return time.monotonic() - t0
            alive()
            time.sleep(0.2)
        return None

    def stop(self):
        self.stop_flag.set()
        self.thread.join()


def compare(lake, delivered, failed, marks):
    """The lake against the delivered messages and the broker's watermarks."""
    con = lake.connect()
    try:
        per_message = con.execute(
            "SELECT _kafka_partition, _kafka_offset, count(*), min(seq), max(seq), "
            "count(DISTINCT seq) FROM lake.chaos GROUP BY ALL").fetchall()
        total, distinct, seq_sum = con.execute(
            "SELECT count(*), count(DISTINCT seq), coalesce(sum(seq), 0) FROM lake.chaos").fetchone()
        offsets = Lake.offsets(con)
        files = con.execute("SELECT count(*) FROM ducklake_list_files('lake', 'chaos')").fetchone()[0]
    finally:
        con.close()
    expected_rows = sum(r for _, r in delivered.values())
    expected_sum = sum(sum(range(f, f + r)) for f, r in delivered.values())
    lost = duplicated = unexpected = wrong = 0
    seen = set()
    for p, o, n, lo, hi, d in per_message:
        want = delivered.get((p, o))
        if want is None:
            unexpected += n
            continue
        seen.add((p, o))
        first, rows = want
        duplicated += n - d
        if (lo, hi, d) != (first, first + rows - 1, rows):
            wrong += 1
            lost += max(0, rows - d)
    lost += sum(r for k, (_, r) in delivered.items() if k not in seen)
    return {
        "messages": len(delivered),
        "rows_produced": expected_rows,
        "rows_in_lake": total,
        "distinct_seq": distinct,
        "seq_sum_exact": seq_sum == expected_sum,
        "lost": lost,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "messages_with_wrong_rows": wrong,
        "undelivered": len(failed),
        "offsets": {str(p): offsets.get(p) for p in sorted(marks)},
        "watermarks": {str(p): o for p, o in sorted(marks.items())},
        "offsets_exact": all(offsets.get(p) == o for p, o in marks.items()),
        "files": files,
    }
