#!/usr/bin/env python3
"""Reference producer: PostHog-shaped events written as Arrow IPC with pyarrow and sent to Kafka
with confluent-kafka. Producers in other languages do the same: build a RecordBatch, serialize
it with the IPC stream (or file) writer, and send the bytes as the message value.

    python arrow_producer.py --brokers localhost:9092 --topic events --total 100000

Each row has a unique, gapless `seq` (starting at --start), so a consumer can check counts and
sums exactly.
"""

import argparse
import json
import random
import sys
import time
import uuid

import pyarrow as pa
import pyarrow.ipc as ipc
from confluent_kafka import Producer

SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("uuid", pa.string(), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("distinct_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("properties", pa.string(), nullable=False),
        pa.field("team_id", pa.int32(), nullable=False),
        pa.field("session_duration_ms", pa.int64()),
        pa.field("revenue", pa.float64()),
        pa.field("is_mobile", pa.bool_(), nullable=False),
    ]
)
EVENTS = ["$pageview", "$autocapture", "$pageleave", "$identify", "signed_up", "purchase"]
EPOCH_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def events(start: int, n: int, rng: random.Random) -> pa.RecordBatch:
    seqs = list(range(start, start + n))
    names = [rng.choice(EVENTS) for _ in seqs]
    mobile = [rng.random() < 0.25 for _ in seqs]
    props = [
        json.dumps(
            {
                "$current_url": f"https://app.example.com/project/{rng.randrange(100)}",
                "$browser": rng.choice(["Chrome", "Firefox", "Safari"]),
                "$os": rng.choice(["Mac OS X", "Windows", "Linux", "iOS"]),
                "$device_type": "Mobile" if m else "Desktop",
                "$session_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "$lib": "python-reference",
            }
        )
        for m in mobile
    ]
    return pa.record_batch(
        [
            pa.array(seqs, pa.int64()),
            pa.array([str(uuid.UUID(int=rng.getrandbits(128))) for _ in seqs]),
            pa.array(names),
            pa.array([f"user_{rng.randrange(50_000):05}" for _ in seqs]),
            pa.array([EPOCH_US + s * 1000 for s in seqs], pa.timestamp("us", tz="UTC")),
            pa.array(props),
            pa.array([rng.randrange(1, 9) for _ in seqs], pa.int32()),
            pa.array([None if rng.random() < 0.2 else rng.randrange(3_600_000) for _ in seqs], pa.int64()),
            pa.array([rng.randrange(100_000) / 100 if e == "purchase" else None for e in names], pa.float64()),
            pa.array(mobile, pa.bool_()),
        ],
        schema=SCHEMA,
    )


def encode(batches, fmt: str = "stream", compression=None) -> bytes:
    """Serializes batches (one schema) as one Arrow IPC message value."""
    sink = pa.BufferOutputStream()
    options = ipc.IpcWriteOptions(compression=compression)
    new = ipc.new_stream if fmt == "stream" else ipc.new_file
    with new(sink, batches[0].schema, options=options) as writer:
        for b in batches:
            writer.write_batch(b)
    return sink.getvalue().to_pybytes()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", default="localhost:9092")
    p.add_argument("--topic", default="events")
    p.add_argument("--partitions", type=int, default=4, help="messages go round robin to these partitions")
    p.add_argument("--total", type=int, default=100_000)
    p.add_argument("--start", type=int, default=0, help="seq of the first row")
    p.add_argument("--rows-per-message", type=int, default=1000)
    p.add_argument("--format", choices=["stream", "file"], default="stream")
    p.add_argument("--compression", choices=["none", "lz4", "zstd"], default="none")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    producer = Producer({"bootstrap.servers": args.brokers, "linger.ms": 5, "message.max.bytes": 67108864})
    compression = None if args.compression == "none" else args.compression
    rng = random.Random(args.seed)
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(err)

    sent, message, t0 = 0, 0, time.time()
    while sent < args.total:
        n = min(args.rows_per_message, args.total - sent)
        value = encode([events(args.start + sent, n, rng)], args.format, compression)
        while True:
            try:
                producer.produce(args.topic, value, partition=message % args.partitions, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        sent += n
        message += 1
    left = producer.flush(60)
    if failures or left:
        print(f"delivery failed: {failures[:3]} ({left} undelivered)", file=sys.stderr)
        return 1
    dt = time.time() - t0
    print(f"produced {sent} rows in {message} messages in {dt:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
