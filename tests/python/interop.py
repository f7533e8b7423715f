"""Interop check driven by tests/interop.rs.

    interop.py produce BROKERS TOPIC     -- pyarrow writes every IPC format x codec to Kafka
    interop.py verify CATALOG DATA TABLE -- the stock DuckDB Python client reads the lake back
    interop.py verify-reference CATALOG DATA TABLE TOTAL ROWS_PER_MESSAGE SEED
        -- the lake holds exactly what producer/python/arrow_producer.py sent with those
           arguments (start 0); CATALOG is what follows `ducklake:` in ATTACH. For an s3://
           DATA path, SLUICEDEV_S3_ENDPOINT/_KEY_ID/_SECRET give the S3 server.

The table covers the Arrow types producers send, with nulls in every column; the same
deterministic table is rebuilt on both sides, so `verify` compares value for value.
"""

import datetime as dt
import decimal
import sys

import pyarrow as pa
import pyarrow.ipc as ipc

ROWS = 300
COMBOS = [(fmt, comp) for fmt in ("stream", "file") for comp in (None, "lz4", "zstd")]


def expected() -> pa.Table:
    n = ROWS
    null = lambda i: i % 7 == 3  # noqa: E731 - every column has nulls at the same rows
    col = lambda f, t: pa.array([None if null(i) else f(i) for i in range(n)], t)  # noqa: E731
    utc = dt.timezone.utc
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "i8": col(lambda i: (i % 256) - 128, pa.int8()),
            "i16": col(lambda i: i * 100 - 15000, pa.int16()),
            "i32": col(lambda i: i * 1_000_003 - 2_000_000_000, pa.int32()),
            "i64": col(lambda i: i * 10**15 - 2**62, pa.int64()),
            "u8": col(lambda i: i % 256, pa.uint8()),
            "u16": col(lambda i: i * 200, pa.uint16()),
            "u32": col(lambda i: i * 14_000_000, pa.uint32()),
            "u64": col(lambda i: 2**64 - 1 - i, pa.uint64()),
            "f32": col(lambda i: i * 0.5 - 10.25, pa.float32()),
            "f64": col(lambda i: i / 3.0, pa.float64()),
            "flag": col(lambda i: i % 2 == 0, pa.bool_()),
            "s": col(lambda i: f"text {i} ünïcødé ✓", pa.utf8()),
            "ls": col(lambda i: "L" * (i % 50), pa.large_utf8()),
            "bin": col(lambda i: bytes([i % 256, 0, 255]) * (i % 5), pa.binary()),
            "ts_tz": col(lambda i: dt.datetime(2026, 1, 1, tzinfo=utc) + dt.timedelta(seconds=i, microseconds=i), pa.timestamp("us", tz="UTC")),
            "ts": col(lambda i: dt.datetime(2025, 6, 30, 12) + dt.timedelta(minutes=i), pa.timestamp("us")),
            "d": col(lambda i: dt.date(2000, 1, 1) + dt.timedelta(days=i * 11), pa.date32()),
            "dec": col(lambda i: decimal.Decimal(i * 12345 - 1_000_000).scaleb(-4), pa.decimal128(18, 4)),
            "dict": pa.array([None if null(i) else ["red", "green", "blue"][i % 3] for i in range(n)]).dictionary_encode(),
            "lst": col(lambda i: [i, None, -i] if i % 4 else [], pa.list_(pa.int64())),
            "st": col(lambda i: {"a": i, "b": None if i % 5 == 0 else f"b{i}"}, pa.struct([("a", pa.int32()), ("b", pa.string())])),
        }
    )


def encode(batches, fmt, compression) -> bytes:
    sink = pa.BufferOutputStream()
    new = ipc.new_stream if fmt == "stream" else ipc.new_file
    with new(sink, batches[0].schema, options=ipc.IpcWriteOptions(compression=compression)) as w:
        for b in batches:
            w.write_batch(b)
    return sink.getvalue().to_pybytes()


def produce(brokers: str, topic: str) -> int:
    from confluent_kafka import Producer

    table = expected()
    per = ROWS // len(COMBOS)
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 1})
    for k, (fmt, comp) in enumerate(COMBOS):
        part = table.slice(k * per, per)
        # Two batches per message: multi-batch payloads are part of the contract.
        half = per // 2
        batches = part.slice(0, half).to_batches() + part.slice(half).to_batches()
        p.produce(topic, encode(batches, fmt, comp), partition=0)
    left = p.flush(30)
    print(f"produced {len(COMBOS)} messages, {left} undelivered", file=sys.stderr)
    return 1 if left else 0


def lake_table(catalog: str, data: str, table: str, order: str) -> pa.Table:
    """The whole table, read by the stock DuckDB Python client."""
    import os

    import duckdb

    assert duckdb.__version__ == "1.5.5", duckdb.__version__
    con = duckdb.connect()
    if data.startswith("s3://"):
        endpoint = os.environ["SLUICEDEV_S3_ENDPOINT"].removeprefix("http://")
        con.execute(
            f"CREATE SECRET (TYPE s3, KEY_ID '{os.environ['SLUICEDEV_S3_KEY_ID']}', "
            f"SECRET '{os.environ['SLUICEDEV_S3_SECRET']}', ENDPOINT '{endpoint}', "
            "URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')"
        )
    con.execute(f"ATTACH 'ducklake:{catalog}' AS lake (DATA_PATH '{data}', READ_ONLY)")
    got = con.sql(f'SELECT * FROM lake.main."{table}" ORDER BY {order}').arrow()
    return got.read_all() if hasattr(got, "read_all") else got


def verify(catalog: str, data: str, table: str) -> int:
    return compare(lake_table(catalog, data, table, "id"), expected())


def verify_reference(catalog, data, table, total, rows_per_message, seed) -> int:
    import os
    import random

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "producer", "python"))
    import arrow_producer

    rng = random.Random(seed)
    batches, sent = [], 0
    while sent < total:
        n = min(rows_per_message, total - sent)
        batches.append(arrow_producer.events(sent, n, rng))
        sent += n
    return compare(lake_table(catalog, data, table, "seq"), pa.Table.from_batches(batches))


def compare(got: pa.Table, want: pa.Table) -> int:
    problems = []
    if got.num_rows != want.num_rows:
        problems.append(f"rows: got {got.num_rows}, want {want.num_rows}")
    if got.column_names != want.column_names:
        problems.append(f"columns: got {got.column_names}, want {want.column_names}")
    for name in want.column_names:
        if name not in got.column_names:
            continue
        g, w = got.column(name).to_pylist(), want.column(name).to_pylist()
        if g != w:
            bad = next(i for i, (a, b) in enumerate(zip(g, w)) if a != b) if len(g) == len(w) else -1
            problems.append(f"column {name} ({got.schema.field(name).type}): first difference at row {bad}: got {g[bad]!r}, want {w[bad]!r}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"verified {got.num_rows} rows x {got.num_columns} columns", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "produce":
        sys.exit(produce(sys.argv[2], sys.argv[3]))
    if cmd == "verify":
        sys.exit(verify(sys.argv[2], sys.argv[3], sys.argv[4]))
    if cmd == "verify-reference":
        a = sys.argv
        sys.exit(verify_reference(a[2], a[3], a[4], int(a[5]), int(a[6]), int(a[7])))
    sys.exit(f"unknown command {cmd}")
