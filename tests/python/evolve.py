"""Schema evolution driven by tests/evolution.rs: a pyarrow producer whose schema changes, and
the stock DuckDB Python client reading the lake back.

    evolve.py produce BROKERS TOPIC STAGE PARTITIONS  -- the messages of one stage
    evolve.py verify CATALOG DATA TABLE STAGES        -- the lake holds exactly the rows of the
                                                        comma-separated STAGES (none of `lossy`)

Stages, in the order the test sends them (MESSAGES messages of ROWS rows each, ids unique):
  v1     id int64, v int32, f float32
  v2     v1 + note string + s struct<a: int32, b: string>        (two columns added)
  v3     v2 with v int64 (values past 2^31), columns reordered   (v widened)
  v1b    v1's schema again                                        (note and s missing: NULLs)
  lossy  v float64: the table's BIGINT cannot take it losslessly  (quarantined)
  f64    f float64: FLOAT -> DOUBLE, which sluice does not make   (quarantined, ducklake#1307)
CATALOG is what follows `ducklake:` in ATTACH.
"""

import sys

import pyarrow as pa
import pyarrow.ipc as ipc

STAGES = ["v1", "v2", "v3", "v1b", "lossy", "f64"]
MESSAGES = 4
ROWS = 25
STRUCT = pa.struct([("a", pa.int32()), ("b", pa.string())])


def ids(stage):
    base = STAGES.index(stage) * MESSAGES * ROWS
    return list(range(base, base + MESSAGES * ROWS))


def row(stage, i):
    """The row with id `i` as the lake must hold it (None where the stage lacks a column)."""
    v = i * 1000 + 7 if stage != "v3" else 2**33 + i
    f = i + 0.5 if stage != "f64" else i + 0.1
    note = f"note {i}" if stage in ("v2", "v3") else None
    s = {"a": i, "b": f"b{i}"} if stage in ("v2", "v3") else None
    return (i, v, f, note, s)


def batch(stage, chunk):
    rows = [row(stage, i) for i in chunk]
    cols = {"id": pa.array([r[0] for r in rows], pa.int64())}
    if stage == "lossy":
        cols["v"] = pa.array([float(r[1]) for r in rows], pa.float64())
    else:
        cols["v"] = pa.array([r[1] for r in rows], pa.int64() if stage == "v3" else pa.int32())
    cols["f"] = pa.array([r[2] for r in rows], pa.float64() if stage == "f64" else pa.float32())
    if stage in ("v2", "v3"):
        cols["note"] = pa.array([r[3] for r in rows], pa.string())
        cols["s"] = pa.array([r[4] for r in rows], STRUCT)
    if stage == "v3":
        # Columns reordered too: they match by name.
        order = ["note", "s", "id", "f", "v"]
        return pa.RecordBatch.from_pydict({k: cols[k] for k in order})
    return pa.RecordBatch.from_pydict(cols)


def produce(brokers, topic, stage, partitions):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": brokers, "linger.ms": 1})
    all_ids = ids(stage)
    for m in range(MESSAGES):
        b = batch(stage, all_ids[m * ROWS:(m + 1) * ROWS])
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, b.schema) as w:
            w.write_batch(b)
        p.produce(topic, sink.getvalue().to_pybytes(), partition=m % partitions)
    left = p.flush(30)
    print(f"produced {MESSAGES} messages of stage {stage}, {left} undelivered", file=sys.stderr)
    return 1 if left else 0


def verify(catalog, data, table, stages):
    import duckdb

    assert duckdb.__version__ == "1.5.5", duckdb.__version__
    con = duckdb.connect()
    con.execute(f"ATTACH 'ducklake:{catalog}' AS lake (DATA_PATH '{data}', READ_ONLY)")
    types = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_catalog = 'lake' AND table_name = '{table}' ORDER BY ordinal_position"
    ).fetchall()
    want_types = [("id", "BIGINT"), ("v", "BIGINT"), ("f", "FLOAT"), ("note", "VARCHAR"),
                  ("s", "STRUCT(a INTEGER, b VARCHAR)")]
    assert types == want_types, types
    got = con.execute(f'SELECT id, v, f, note, s FROM lake.main."{table}" ORDER BY id').fetchall()
    want = [row(st, i) for st in stages for i in ids(st)]
    assert len(got) == len(want), (len(got), len(want))
    for g, w in zip(got, want):
        assert g == w, (g, w)
    # Filters see every row too (min/max statistics intact after the widening).
    n = con.execute(f'SELECT count(*) FROM lake.main."{table}" WHERE v < 2000000').fetchone()[0]
    assert n == sum(1 for w in want if w[1] < 2000000), n
    errors = con.execute(
        "SELECT error, count(*) FROM lake.main.sluice_quarantine "
        f"WHERE topic <> '' AND error LIKE '%table \"{table}\"%' GROUP BY error ORDER BY error"
    ).fetchall()
    print(f"verified {len(got)} rows", file=sys.stderr)
    for e, k in errors:
        print(f"quarantined {k}: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "produce":
        sys.exit(produce(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
    if cmd == "verify":
        sys.exit(verify(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(",")))
    sys.exit(f"unknown command {cmd}")
