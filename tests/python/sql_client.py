"""Flight SQL clients of sluice's real-time views, driven by tests/realtime.rs.

    sql_client.py watch URL TABLE SECONDS   -- with the ADBC Flight SQL driver, asks the view
                                               TABLE_live per partition for count, distinct seq,
                                               max and sum of seq, and the lake table's count in
                                               the same query, again and again for SECONDS;
                                               prints one JSON line per answer
    sql_client.py adbc URL SQL              -- one query with ADBC; prints its rows as JSON
    sql_client.py pyarrow URL SQL           -- the same with pyarrow.flight alone (a hand-made
                                               CommandStatementQuery: GetFlightInfo, then DoGet)
    sql_client.py adbc_error URL SQL        -- the same, expecting an error: prints its text
    sql_client.py quack URI TOKEN EXT SQL  -- stock DuckDB (Python client) with the quack extension
                                               EXT: quack_query(URI, SQL) with TOKEN; prints its
                                               rows as JSON, or the error's text
    sql_client.py refused URL SQL TOKEN     -- ADBC without a token, with a wrong one: prints the
                                               errors' codes; then with TOKEN: prints the rows
"""

import json
import sys
import time

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as fsql
import pyarrow.flight as fl


def connect(url, token=None):
    kwargs = {}
    if token is not None:
        kwargs[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    return fsql.connect(url, db_kwargs=kwargs)


def rows_of(table):
    return [list(r.values()) for r in table.to_pylist()]


def adbc_query(url, sql, token=None):
    with connect(url, token) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def watch(url, table, seconds):
    sql = (
        f'SELECT "_kafka_partition" AS p, count(*) AS n, count(DISTINCT seq) AS d, '
        f'max(seq) AS mx, sum(seq)::BIGINT AS s, (SELECT count(*) FROM "{table}") AS committed '
        f'FROM "{table}_live" GROUP BY p ORDER BY p'
    )
    end = time.time() + seconds
    answered = False
    with connect(url) as conn, conn.cursor() as cur:
        while time.time() < end:
            t0 = time.time()
            try:
                cur.execute(sql)
            except Exception as e:
                # Until the topic's first batch, neither the lake nor the ring has its table.
                if answered or "does not exist" not in str(e):
                    raise
                time.sleep(0.05)
                continue
            answered = True
            got = cur.fetch_arrow_table().to_pylist()
            t1 = time.time()
            print(json.dumps({"t0": t0, "t1": t1, "rows": got}), flush=True)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(tag, payload):
    """A length-delimited protobuf field."""
    return varint(tag << 3 | 2) + varint(len(payload)) + payload


def pyarrow_query(url, sql):
    command = field(1, sql.encode())
    url_ = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    any_ = field(1, url_) + field(2, command)
    client = fl.connect(url)
    info = client.get_flight_info(fl.FlightDescriptor.for_command(any_))
    tables = [client.do_get(e.ticket).read_all() for e in info.endpoints]
    assert all(t.schema == info.schema for t in tables), "DoGet schema differs from FlightInfo's"
    return tables[0]


def refused(url, sql, token):
    for name, tok in [("none", None), ("wrong", token + "x")]:
        try:
            adbc_query(url, sql, tok)
            print(json.dumps({name: "accepted"}))
        except Exception as e:  # the driver's error names the gRPC status
            text = str(e)
            code = "UNAUTHENTICATED" if "Unauthenticated" in text or "UNAUTHENTICATED" in text else text
            print(json.dumps({name: code}))
    print(json.dumps({"token": rows_of(adbc_query(url, sql, token))}))


def quack(uri, token, ext, sql):
    import duckdb

    con = duckdb.connect()
    con.execute(f"LOAD '{ext}'")
    try:
        rows = con.execute("FROM quack_query(?, ?, token => ?)", [uri, sql, token]).fetchall()
        return [list(r) for r in rows]
    except Exception as e:
        return str(e).splitlines()[0]


def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "watch":
        watch(url, sys.argv[3], float(sys.argv[4]))
    elif mode == "adbc":
        print(json.dumps(rows_of(adbc_query(url, sys.argv[3])), default=str))
    elif mode == "adbc_error":
        try:
            adbc_query(url, sys.argv[3])
        except Exception as e:
            print(str(e))
        else:
            sys.exit("the query was answered")
    elif mode == "pyarrow":
        print(json.dumps(rows_of(pyarrow_query(url, sys.argv[3])), default=str))
    elif mode == "quack":
        print(json.dumps(quack(url, sys.argv[3], sys.argv[4], sys.argv[5]), default=str))
    elif mode == "refused":
        refused(url, sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
