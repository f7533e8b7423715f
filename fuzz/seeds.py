"""Seed corpora for the fuzz targets (scripts/fuzz runs this; nothing here is committed as
binary). Writes real Arrow IPC payloads made by pyarrow, one file each, into
<out>/decode_stream, <out>/decode_file and <out>/decode_compressed, Flight tickets into
<out>/ticket and TOML configs into <out>/config.

usage: seeds.py <out-dir> <repo-root>
"""

import datetime
import decimal
import pathlib
import sys

import pyarrow as pa
import pyarrow.ipc as ipc


def batches():
    """(name, [RecordBatch, ...]) pairs: one type per payload, kept small (a few rows) so the
    fuzzer runs fast, plus a few payloads with several columns and batches."""
    n = 5
    utc = pa.timestamp("us", tz="UTC")
    cols = {
        "int64": pa.array([1, -2, None, 2**62, 0], pa.int64()),
        "int8": pa.array([1, -128, 127, None, 0], pa.int8()),
        "uint32": pa.array([0, 1, 2**32 - 1, None, 7], pa.uint32()),
        "float64": pa.array([1.5, float("nan"), None, -0.0, float("inf")], pa.float64()),
        "bool": pa.array([True, False, None, True, True]),
        "utf8": pa.array(["a", "", None, "ünïcode", "x" * 40]),
        "large_utf8": pa.array(["a", "bc", None, "d", ""], pa.large_string()),
        "binary": pa.array([b"\x00\x01", b"", None, b"\xff", b"abc"], pa.binary()),
        "fixed_binary": pa.array([b"abcd", b"efgh", None, b"ijkl", b"mnop"], pa.binary(4)),
        "utf8_view": pa.array(["short", "a string longer than twelve", None, "", "x"], pa.string_view()),
        "date32": pa.array([datetime.date(2024, 1, 1), None, datetime.date(1970, 1, 1),
                            datetime.date(2000, 2, 29), datetime.date(9999, 12, 31)]),
        "timestamp_tz": pa.array([0, 1_700_000_000_000_000, None, -1, 2], utc),
        "decimal128": pa.array([decimal.Decimal("1.23"), None, decimal.Decimal("-99.99"),
                                decimal.Decimal("0.00"), decimal.Decimal("12.50")], pa.decimal128(5, 2)),
        "list_int32": pa.array([[1, 2], [], None, [3], [None, 4]], pa.list_(pa.int32())),
        "large_list_utf8": pa.array([["a"], None, [], ["b", None], ["c"]], pa.large_list(pa.string())),
        "fixed_list": pa.array([[1, 2], [3, 4], None, [5, 6], [7, 8]], pa.list_(pa.int16(), 2)),
        "struct": pa.array([{"x": 1, "y": "a"}, None, {"x": None, "y": "b"}, {"x": 3, "y": None},
                            {"x": 4, "y": "d"}],
                           pa.struct([("x", pa.int32()), ("y", pa.string())])),
        "map": pa.array([[("k", 1)], [], None, [("a", 2), ("b", 3)], [("z", None)]],
                        pa.map_(pa.string(), pa.int64())),
        "dict_utf8": pa.array(["red", "green", None, "red", "blue"]).dictionary_encode(),
        "dict_int64": pa.DictionaryArray.from_arrays(pa.array([0, 1, 1, None, 0], pa.int8()),
                                                     pa.array([10, 20], pa.int64())),
        "sparse_union": pa.UnionArray.from_sparse(pa.array([0, 1, 0, 1, 0], pa.int8()),
                                                  [pa.array([1, 2, 3, 4, 5]),
                                                   pa.array(["a", "b", "c", "d", "e"])]),
        "dense_union": pa.UnionArray.from_dense(pa.array([0, 1, 0, 1, 1], pa.int8()),
                                                pa.array([0, 0, 1, 1, 2], pa.int32()),
                                                [pa.array([1, 2]), pa.array(["a", "b", "c"])]),
        "null": pa.nulls(n),
        "run_end": pa.RunEndEncodedArray.from_arrays(pa.array([2, 5], pa.int32()),
                                                     pa.array(["a", "b"])),
    }
    out = []
    for name, arr in cols.items():
        out.append((name, [pa.record_batch([arr], names=[name])]))
    # Several columns, several batches (one of them empty).
    wide = pa.record_batch([cols[k] for k in ("int64", "utf8", "list_int32", "dict_utf8", "struct")],
                           names=["id", "s", "l", "d", "st"])
    out.append(("wide", [wide]))
    out.append(("wide_3_batches", [wide.slice(0, 2), wide.slice(0, 0), wide.slice(2, 3)]))
    # sluice's own benchmark shape: an event with an id, a timestamp and a payload string.
    events = pa.record_batch([pa.array(range(64), pa.int64()),
                              pa.array([1_700_000_000_000_000 + i for i in range(64)], utc),
                              pa.array([f"event {i}" * (i % 4) for i in range(64)])],
                             names=["id", "timestamp", "payload"])
    out.append(("events_64", [events]))
    return out


def write(path, schema, rbs, file_format, compression, deltas=False):
    sink = pa.BufferOutputStream()
    opts = ipc.IpcWriteOptions(compression=compression, emit_dictionary_deltas=deltas)
    new = ipc.new_file if file_format else ipc.new_stream
    with new(sink, schema, options=opts) as w:
        for rb in rbs:
            w.write_batch(rb)
    path.write_bytes(sink.getvalue().to_pybytes())


def ipc_seeds(out):
    dirs = {k: out / k for k in ("decode_stream", "decode_file", "decode_compressed")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    count = 0
    for name, rbs in batches():
        schema = rbs[0].schema
        write(dirs["decode_stream"] / f"{name}.arrows", schema, rbs, False, None)
        write(dirs["decode_file"] / f"{name}.arrow", schema, rbs, True, None)
        for codec in ("lz4", "zstd"):
            write(dirs["decode_compressed"] / f"{name}.{codec}.arrows", schema, rbs, False, codec)
            write(dirs["decode_compressed"] / f"{name}.{codec}.arrow", schema, rbs, True, codec)
        count += 6
    # A stream whose dictionary grows between batches (a delta dictionary message), and one that
    # replaces it (stream format only allows replacement).
    a = pa.record_batch([pa.array(["a", "b"]).dictionary_encode()], names=["d"])
    b = pa.record_batch([pa.DictionaryArray.from_arrays(pa.array([0, 2], pa.int32()),
                                                        pa.array(["a", "b", "c"]))], names=["d"])
    write(dirs["decode_stream"] / "dict_delta.arrows", a.schema, [a, b], False, None, deltas=True)
    write(dirs["decode_stream"] / "dict_replace.arrows", a.schema, [a, b], False, None)
    write(dirs["decode_compressed"] / "dict_delta.zstd.arrows", a.schema, [a, b], False, "zstd",
          deltas=True)
    # Legacy stream framing (no 0xFFFFFFFF continuation marker, pre-0.15 readers).
    sink = pa.BufferOutputStream()
    rb = batches()[0][1][0]
    with ipc.new_stream(sink, rb.schema,
                        options=ipc.IpcWriteOptions(use_legacy_format=True)) as w:
        w.write_batch(rb)
    (dirs["decode_stream"] / "legacy.arrows").write_bytes(sink.getvalue().to_pybytes())
    # Compressible data, so the compressed bodies are real LZ4/ZSTD streams, not stored raw
    # (arrow stores a buffer uncompressed, length -1, when compressing would not shrink it).
    big = pa.record_batch([pa.array([7] * 400, pa.int64()), pa.array(["same"] * 400)],
                          names=["n", "s"])
    for codec in ("lz4", "zstd"):
        write(dirs["decode_compressed"] / f"repetitive.{codec}.arrows", big.schema, [big], False, codec)
        write(dirs["decode_compressed"] / f"repetitive.{codec}.arrow", big.schema, [big], True, codec)
    return count + 8


TICKETS = [
    "events",
    "  web.events-v2  ",
    '{"topic": "events"}',
    '{"topic": "e", "from": "latest"}',
    '{"topic": "e", "from": "earliest", "follow": true}',
    '{"topic": "e", "from": {"timestamp_ms": 1700000000000}}',
    '{"topic": "e", "from": {"offsets": {"0": 12, "3": [7, 1]}}, "follow": true, "partitions": [0, 3]}',
    '{"topic": "e", "from": {"offsets": {"-1": -5}}, "partitions": []}',
    '{"topic": "e", "from": "middle"}',
    '{"topic": "e", "form": "latest"}',
]

CONFIGS = [
    '[kafka]\ntopics = ["a"]\n',
    '[kafka]\ntopics = ["a", "^web\\\\..*"]\n[tables.map]\na = "table_a"\n',
    '[kafka]\ntopics = ["a"]\n[tables.defaults]\ntarget_file_size = "512MB"\n'
    'partition_by = ["year(ts)", "bucket(16, id)"]\nsorted_by = ["ts DESC NULLS LAST"]\n',
    '[kafka]\ntopics = ["a"]\n[tables.options.ev]\nparquet_compression = "zstd"\n'
    'parquet_compression_level = 3\nparquet_row_group_size = 122880\ntarget_file_size = "1GiB"\n',
    '[kafka]\ntopics = ["a"]\n[maintenance]\ninterval = "10m"\nlease = "30m"\n'
    'keep_snapshots = "1h"\ndelete_files_after = "7d"\n',
    '[kafka]\ntopics = ["a"]\n[flush]\nmax_bytes = 1\nmemory_cap_bytes = 18446744073709551615\n',
    '[kafka]\ntopics = ["a"]\n[log]\nlevel = "sluice=debug,info"\nformat = "json"\n',
    '[kafka]\ntopics = ["a"]\n[kafka.properties]\n"security.protocol" = "SASL_SSL"\n',
    '[kafka]\ntopics = ["a"]\n[live]\nenabled = true\naddress = "[::1]:8815"\n'
    'retention_bytes = 268435456\nauth_token = "t"\n',
    '[kafka]\ntopics = ["a"]\n[lake]\ncatalog_kind = "postgres"\ncatalog = "host=pg"\n'
    'data_path = "s3://b/p/"\n[lake.s3]\nendpoint = "http://minio:9000"\nurl_style = "path"\n',
    "512MB", "1GiB", " 1000000 ", "7 kib",
]


def main():
    out, root = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).resolve()
    n = ipc_seeds(out)
    (out / "ticket").mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(TICKETS):
        (out / "ticket" / f"ticket_{i}").write_text(t)
    (out / "config").mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(CONFIGS):
        (out / "config" / f"config_{i}.toml").write_text(c)
    examples = [root / "sluice.example.toml", root / "deploy" / "sluice.toml"]
    for p in examples:
        name = str(p.relative_to(root)).replace("/", "_")
        (out / "config" / f"repo_{name}").write_text(p.read_text())
    for d in ("decode_stream", "decode_file", "decode_compressed"):
        for p in (out / d).iterdir():
            # scripts/fuzz runs the decoders with -max_len=4096: every seed must fit whole.
            assert p.stat().st_size <= 4096, f"{p} is {p.stat().st_size} bytes"
    print(f"seeds: {n} IPC payloads, {len(TICKETS)} tickets, {len(CONFIGS) + len(examples)} configs")


if __name__ == "__main__":
    main()
