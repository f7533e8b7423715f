"""pyarrow.flight checks driven by tests/flight.rs and tests/flight_lake.rs.

    flight_client.py replay URL TOPIC N         -- list, schema, full replay, resume, bad tickets
    flight_client.py follow URL TOPIC FIRST N   -- prints "following", then expects seq FIRST..FIRST+N
    flight_client.py auth URL TOPIC N TOKEN     -- refused without / with a wrong token, reads with it
    flight_client.py tls URL TOPIC N CA TOKEN   -- grpc+tls://: refused in plaintext, without the CA,
                                                   without the token; reads with CA and token
    flight_client.py mtls URL TOPIC N CA CERT KEY OTHER_CERT OTHER_KEY
                                                -- refused without a client certificate and with one
                                                   of another CA; reads with CERT
    flight_client.py lake_replay URL TOPIC N    -- a read from offset 0 (lake, then ring) and a
                                                   resume after each of its batches
    flight_client.py lake_time URL TOPIC MS FIRST END
                                                -- a read from a timestamp returns FIRST..END
    flight_client.py slow_lake URL TOPIC STALL FIRST END
                                                -- a follower stalls STALL s, then expects FIRST..END
"""

import json
import sys

import pyarrow as pa
import pyarrow.flight as fl


def read(client, ticket):
    reader = client.do_get(fl.Ticket(json.dumps(ticket) if isinstance(ticket, dict) else ticket))
    batches = []
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return batches
        batches.append((chunk.data, json.loads(chunk.app_metadata.to_pybytes())))


def seqs(batches):
    return [s for b, _ in batches for s in b.column("seq").to_pylist()]


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def replay(url, topic, n):
    client = fl.connect(url)
    infos = list(client.list_flights())
    info = next(i for i in infos if i.descriptor.path == [topic.encode()])
    if info.total_records != n:
        fail(f"list_flights total_records {info.total_records} != {n}")
    schema = client.get_schema(fl.FlightDescriptor.for_path(topic)).schema
    if schema.names[:3] != ["seq", "uuid", "event"]:
        fail(f"schema {schema.names}")
    # GetFlightInfo: rows, schema, the offset range per partition, and a ticket that reads it.
    info = client.get_flight_info(fl.FlightDescriptor.for_path(topic))
    offsets = json.loads(info.app_metadata)["offsets"]
    per_partition = n // 100 // 2  # 100 rows per message, round robin over 2 partitions
    want = {"0": [0, per_partition - 1], "1": [0, per_partition - 1]}
    if info.total_records != n or info.total_bytes <= 0 or offsets != want or info.schema != schema:
        fail(f"get_flight_info: {info.total_records} rows, {info.total_bytes} bytes, offsets {offsets}")
    via_info = read(client, info.endpoints[0].ticket.ticket.decode())
    if len(seqs(via_info)) != n:
        fail(f"the FlightInfo ticket read {len(seqs(via_info))} rows, not {n}")

    full = read(client, topic)  # bare topic: earliest, no follow
    got = seqs(full)
    if sorted(got) != list(range(n)):
        fail(f"replay returned {len(got)} rows, not seq 0..{n}")
    for b, m in full:
        if m["topic"] != topic or b.num_rows == 0 or not {"partition", "offset", "batch", "batches"} <= m.keys():
            fail(f"bad app_metadata {m}")

    # Resume after the 7th batch: the union of both reads is the full read, no gap, no duplicate.
    first = full[:7]
    last = {}
    for _, m in first:
        last[str(m["partition"])] = [m["offset"], m["batch"] + 1]
    rest = read(client, {"topic": topic, "from": {"offsets": last}})
    if seqs(first) + seqs(rest) != got:
        fail(f"resume: {len(seqs(first))} + {len(seqs(rest))} rows differ from the full read of {len(got)}")

    # One partition only.
    p0 = read(client, {"topic": topic, "partitions": [0]})
    if any(m["partition"] != 0 for _, m in p0) or not p0:
        fail("partition filter")

    errors = {}
    for name, ticket in [
        ("malformed", '{"topic": '),
        ("unknown_field", {"topic": topic, "form": "latest"}),
        ("unknown_topic", "no-such-topic"),
        ("out_of_range", {"topic": topic, "from": {"offsets": {"0": -5}}}),
    ]:
        try:
            read(client, ticket)
            fail(f"{name} ticket was accepted")
        except pa.ArrowException as e:  # FlightError, ArrowInvalid (INVALID_ARGUMENT), ...
            errors[name] = str(e)
    for name, want in [
        ("malformed", "bad ticket: ticket is not valid"),
        ("unknown_field", "unknown field `form`"),
        ("unknown_topic", 'topic "no-such-topic" is not being ingested'),
        ("out_of_range", "position partition 0 offset -5 of topic"),
    ]:
        if want not in errors[name]:
            fail(f"{name}: {errors[name]!r} lacks {want!r}")
    try:
        client.get_flight_info(fl.FlightDescriptor.for_path("no-such-topic"))
        fail("get_flight_info of an unknown topic succeeded")
    except fl.FlightServerError as e:
        fail(f"get_flight_info of an unknown topic: not NOT_FOUND but {e}")
    except pa.ArrowException as e:  # NOT_FOUND maps to ArrowKeyError
        if 'topic "no-such-topic" is not being ingested' not in str(e):
            fail(f"get_flight_info of an unknown topic: {e}")
    # The server keeps serving after errors.
    if sorted(seqs(read(client, topic))) != list(range(n)):
        fail("replay after errors")
    stats = json.loads(next(iter(client.do_action(fl.Action("stats", b"")))).body.to_pybytes())
    if stats["topics"][topic]["rows"] != n:
        fail(f"stats {stats}")
    print(f"replayed {n} rows in {len(full)} batches; resumed after 7; errors ok", file=sys.stderr)


def follow(url, topic, first, n):
    client = fl.connect(url)
    reader = client.do_get(fl.Ticket(json.dumps({"topic": topic, "from": "latest", "follow": True})))
    reader.schema  # the server has resolved "latest" once the schema arrives
    print("following", flush=True)
    got = []
    while len(got) < n:
        chunk = reader.read_chunk()
        got.extend(chunk.data.column("seq").to_pylist())
    reader.cancel()
    if sorted(got) != list(range(first, first + n)):
        fail(f"follow got {len(got)} rows: {got[:3]}...")
    print(f"followed {n} rows", file=sys.stderr)


def followers(url, topic, first, n, count):
    """`count` concurrent followers from "latest"; all must see seq first..first+n, in the same order."""
    import threading

    results, errors = [None] * count, []
    ready = threading.Barrier(count + 1)

    def one(i):
        try:
            client = fl.connect(url)
            reader = client.do_get(fl.Ticket(json.dumps({"topic": topic, "from": "latest", "follow": True})))
            reader.schema
            ready.wait()
            got = []
            while len(got) < n:
                got.extend(reader.read_chunk().data.column("seq").to_pylist())
            reader.cancel()
            results[i] = got
        except Exception as e:  # reported below
            errors.append(repr(e))
            ready.abort()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    ready.wait()
    print("following", flush=True)
    for t in threads:
        t.join(120)
    if errors:
        fail(f"followers failed: {errors[:3]}")
    if any(r != results[0] for r in results) or sorted(results[0]) != list(range(first, first + n)):
        fail("followers saw different streams")
    print(f"{count} followers received identical streams of {n} rows", file=sys.stderr)


def slow(url, topic):
    """Reads one batch, then stalls; expects to be cut off with the lag error."""
    import os
    import threading
    import time

    threading.Timer(60, lambda: os._exit(3)).start()  # never hang the test

    client = fl.connect(url)
    reader = client.do_get(fl.Ticket(json.dumps({"topic": topic, "from": "latest", "follow": True})))
    reader.schema
    print("following", flush=True)
    reader.read_chunk()
    print("stalling", flush=True)
    time.sleep(float(sys.argv[4]))
    try:
        for _ in range(100_000):
            reader.read_chunk()
        fail("the slow reader was never cut off")
    except pa.ArrowException as e:
        msg = str(e)
        if "lagged" not in msg:
            fail(f"unexpected error {msg!r}")
        print(f"cut off: {msg.splitlines()[0]}", file=sys.stderr, flush=True)
        os._exit(0)


def schema_change(url, topic, before, after):
    """Follows from earliest: the stream ends cleanly at the schema change after `before` rows;
    resuming from the last app_metadata continues with the new schema for `after` rows."""
    client = fl.connect(url)
    first = read(client, {"topic": topic, "follow": True})  # ends by itself at the change
    if sum(b.num_rows for b, _ in first) != before:
        fail(f"first stream had {sum(b.num_rows for b, _ in first)} rows, not {before}")
    last = {}
    for _, m in first:
        last[str(m["partition"])] = [m["offset"], m["batch"] + 1]
    reader = client.do_get(fl.Ticket(json.dumps({"topic": topic, "from": {"offsets": last}, "follow": True})))
    got = []
    while len(got) < after:
        chunk = reader.read_chunk()
        got.extend(chunk.data.column("seq").to_pylist())
    reader.cancel()
    event_type = str(reader.schema.field("event").type)
    if sorted(got) != list(range(before, before + after)) or "dictionary" not in event_type:
        fail(f"after the change: {len(got)} rows, event type {event_type}")
    print(f"schema change: {before} rows, clean end, then {after} rows as {event_type}", file=sys.stderr)


def auth(url, topic, n, token):
    """A bearer-token endpoint: calls without the token, or with a wrong one, are refused as
    UNAUTHENTICATED; with it, a replay reads every row."""
    client = fl.connect(url)
    refused = {}
    for name, options in [("none", None),
                          ("wrong", fl.FlightCallOptions(headers=[(b"authorization", b"Bearer nope")]))]:
        try:
            list(client.list_flights(options=options) if options else client.list_flights())
            fail(f"list_flights with {name} token was accepted")
        except fl.FlightUnauthenticatedError as e:
            refused[name] = str(e)
    for name, msg in refused.items():
        if "needs a bearer token" not in msg:
            fail(f"{name}: {msg!r}")
    options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    infos = list(client.list_flights(options=options))
    if [i.descriptor.path for i in infos] != [[topic.encode()]]:
        fail(f"list_flights with the token: {infos}")
    reader = client.do_get(fl.Ticket(topic), options=options)
    got = reader.read_all().column("seq").to_pylist()
    if sorted(got) != list(range(n)):
        fail(f"replay with the token read {len(got)} rows, not seq 0..{n}")
    print(f"refused without and with a wrong token ({refused['none']}); read {n} rows with it",
          file=sys.stderr)


def refusal(connect, what):
    """The error a client made by `connect()` gets from list_flights: "<class>: <first line>"."""
    try:
        list(connect().list_flights(options=fl.FlightCallOptions(timeout=30)))
    except pa.ArrowException as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"
    fail(f"{what} was accepted")


def read_all_rows(client, topic, n, options=None):
    """list_flights names only `topic`; a replay of it reads seq 0..n."""
    options = options or fl.FlightCallOptions()
    infos = list(client.list_flights(options=options))
    if [i.descriptor.path for i in infos] != [[topic.encode()]]:
        fail(f"list_flights: {infos}")
    got = client.do_get(fl.Ticket(topic), options=options).read_all().column("seq").to_pylist()
    if sorted(got) != list(range(n)):
        fail(f"replay read {len(got)} rows, not seq 0..{n}")


def tls(url, topic, n, ca, token):
    """A TLS endpoint with a bearer token: plaintext, a client that does not trust the CA, and a
    call without the token are refused (each refusal printed); with the CA and token, a replay
    reads every row."""
    if not url.startswith("grpc+tls://"):
        fail(f"not a TLS url: {url}")
    root = open(ca, "rb").read()
    plain = url.replace("grpc+tls://", "grpc://", 1)
    print("plaintext:", refusal(lambda: fl.connect(plain), "a plaintext client"), file=sys.stderr)
    print("untrusted:", refusal(lambda: fl.connect(url), "a client without the CA"), file=sys.stderr)
    print("no token:", refusal(lambda: fl.connect(url, tls_root_certs=root), "a call without the token"),
          file=sys.stderr)
    client = fl.connect(url, tls_root_certs=root)
    options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    read_all_rows(client, topic, n, options)
    print(f"read {n} rows over TLS with the token", file=sys.stderr)


def mtls(url, topic, n, ca, cert, key, other_cert, other_key):
    """A TLS endpoint that asks for client certificates of CA: a client without one, and one with
    a certificate of another CA, are refused (each refusal printed); with CERT, a replay reads
    every row."""
    root = open(ca, "rb").read()
    pem = lambda path: open(path, "rb").read()
    print("no certificate:", refusal(lambda: fl.connect(url, tls_root_certs=root), "a client without a certificate"),
          file=sys.stderr)
    print("other CA:", refusal(lambda: fl.connect(url, tls_root_certs=root, cert_chain=pem(other_cert),
                                                 private_key=pem(other_key)),
                               "a client certificate of another CA"), file=sys.stderr)
    client = fl.connect(url, tls_root_certs=root, cert_chain=pem(cert), private_key=pem(key))
    read_all_rows(client, topic, n)
    print(f"read {n} rows with the client certificate", file=sys.stderr)


def per_partition(batches):
    """{partition: [seq, ...]} in the order read."""
    out = {}
    for b, m in batches:
        out.setdefault(m["partition"], []).extend(b.column("seq").to_pylist())
    return out


def positions_after(batches):
    """The resume position of every partition read: [offset, batch + 1] of its last batch."""
    last = {}
    for _, m in batches:
        last[str(m["partition"])] = [m["offset"], m["batch"] + 1]
    return last


def lake_replay(url, topic, n):
    """A read from offset 0 of every partition returns seq 0..n once, each partition's batches
    in (offset, batch) order; resuming after any batch of it gives exactly the rest."""
    client = fl.connect(url)
    start = {"topic": topic, "from": {"offsets": {"0": 0, "1": 0}}}
    full = read(client, start)
    if sorted(seqs(full)) != list(range(n)):
        fail(f"read from offset 0: {len(seqs(full))} rows, not seq 0..{n} once each")
    seen = {}
    for _, m in full:
        pos = (m["offset"], m["batch"])
        if pos <= seen.get(m["partition"], (-1, -1)):
            fail(f"partition {m['partition']}: {pos} after {seen[m['partition']]}")
        seen[m["partition"]] = pos
    stats = json.loads(next(iter(client.do_action(fl.Action("stats", b"")))).body.to_pybytes())
    want = per_partition(full)
    for cut in range(len(full) + 1):
        first = full[:cut]
        rest = read(client, {"topic": topic, "from": {"offsets": {"0": 0, "1": 0, **positions_after(first)}}})
        got = per_partition(first)
        for p, s in per_partition(rest).items():
            got.setdefault(p, []).extend(s)
        if got != want:
            fail(f"resume after {cut} batches differs from the uninterrupted read")
    print(f"read {n} rows from offset 0 in {len(full)} batches, {stats['lake_batches']} from the lake; "
          "every resume exact", file=sys.stderr)


def slow_lake(url, topic, stall, first, end):
    """Follows from latest, reads one batch, stalls `stall` s; then expects seq first..end once
    each, in order, without being cut off."""
    import os
    import threading
    import time

    threading.Timer(120, lambda: os._exit(3)).start()  # never hang the test
    client = fl.connect(url)
    reader = client.do_get(fl.Ticket(json.dumps({"topic": topic, "from": "latest", "follow": True})))
    reader.schema
    print("following", flush=True)
    got = reader.read_chunk().data.column("seq").to_pylist()
    print("stalling", flush=True)
    time.sleep(stall)
    while len(got) < end - first:
        got.extend(reader.read_chunk().data.column("seq").to_pylist())
    reader.cancel()
    if got != list(range(first, end)):
        fail(f"the slow follower got {len(got)} rows, {len(set(got))} distinct, not seq {first}..{end} in order")
    print(f"the slow follower received seq {first}..{end} once each, in order", file=sys.stderr, flush=True)
    os._exit(0)


def lake_time(url, topic, ms, first, end):
    """A read from timestamp `ms` (no follow) returns exactly seq first..end, once each."""
    client = fl.connect(url)
    got = seqs(read(client, {"topic": topic, "from": {"timestamp_ms": ms}}))
    if sorted(got) != list(range(first, end)):
        fail(f"read from timestamp {ms}: {len(got)} rows, {len(set(got))} distinct, "
             f"from {min(got, default=None)} to {max(got, default=None)}, not seq {first}..{end}")
    print(f"read seq {first}..{end} once each from timestamp {ms}", file=sys.stderr)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "replay":
        replay(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "follow":
        follow(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "followers":
        followers(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif cmd == "schema":
        schema_change(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "auth":
        auth(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif cmd == "tls":
        tls(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif cmd == "mtls":
        mtls(sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:10])
    elif cmd == "slow":
        slow(sys.argv[2], sys.argv[3])
    elif cmd == "lake_replay":
        lake_replay(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "lake_time":
        lake_time(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif cmd == "slow_lake":
        slow_lake(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        fail(f"unknown command {cmd}")
