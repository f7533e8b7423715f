"""Table options read back by the stock DuckDB Python client (tests/options.rs).

    table_options.py verify CATALOG DATA TABLE DAYS ROWS_PER_DAY ROW_GROUP CODECS

The table is partitioned by year/month/day of `ts` and holds ROWS_PER_DAY rows on each of DAYS
days from 2026-03-01. Checks: every data file lies under its day's hive-style directory; each
day reads back exactly; a query filtered to one day reads only that day's files (DuckDB's
EXPLAIN ANALYZE lists them); the largest row group has exactly ROW_GROUP rows; the files' Parquet
codecs are exactly CODECS (comma-separated, e.g. ZSTD or SNAPPY,ZSTD). Prints one line per
check.
"""

import re
import sys

import duckdb


def verify(catalog, data, table, days, per_day, row_group, codecs):
    assert duckdb.__version__ == "1.5.5", duckdb.__version__
    con = duckdb.connect()
    con.execute(f"ATTACH 'ducklake:{catalog}' AS lake (DATA_PATH '{data}', READ_ONLY)")
    files = [r[0] for r in con.execute(
        f"SELECT data_file FROM ducklake_list_files('lake', '{table}') ORDER BY 1").fetchall()]
    by_day = {}
    for f in files:
        m = re.search(r"/year=2026/month=3/day=(\d+)/[^/]+\.parquet$", f)
        assert m, f"not under a day directory: {f}"
        by_day.setdefault(int(m.group(1)), []).append(f)
    assert sorted(by_day) == list(range(1, days + 1)), sorted(by_day)
    print(f"{len(files)} files under year=2026/month=3/day=1..{days}")
    for d in range(1, days + 1):
        n, s = con.execute(
            f"SELECT count(*), sum(id) FROM lake.main.\"{table}\" "
            f"WHERE ts >= TIMESTAMPTZ '2026-03-{d:02d} 00:00:00+00' "
            f"AND ts < TIMESTAMPTZ '2026-03-{d:02d} 00:00:00+00' + INTERVAL 1 DAY").fetchone()
        first = (d - 1) * per_day
        want = sum(range(first, first + per_day))
        assert (n, s) == (per_day, want), (d, n, s, want)
        plan = con.execute(
            f"EXPLAIN ANALYZE SELECT count(*) FROM lake.main.\"{table}\" "
            f"WHERE ts >= TIMESTAMPTZ '2026-03-{d:02d} 00:00:00+00' "
            f"AND ts < TIMESTAMPTZ '2026-03-{d:02d} 00:00:00+00' + INTERVAL 1 DAY").fetchall()[0][1]
        read = int(re.search(r"Total Files Read: (\d+)", plan).group(1))
        flat = re.sub(r"[\s│]", "", plan)
        named = [f for f in files if f.rsplit("/", 1)[1].replace("-", "") in flat.replace("-", "")]
        assert read == len(by_day[d]) and sorted(named) == sorted(by_day[d]), (d, read, named)
    print(f"each of {days} days reads back exactly; a one-day query reads only that day's files")
    groups = con.execute(
        "SELECT max(row_group_num_rows), list(DISTINCT compression ORDER BY compression) "
        "FROM parquet_metadata(?)", [files]).fetchone()
    assert groups[0] == row_group, groups
    assert groups[1] == codecs.split(","), groups
    print(f"row groups of at most {groups[0]} rows; codecs {','.join(groups[1])}")
    # sorted_by: within each file, ids descending (DuckLake sorts the rows it writes).
    for f in files:
        ids = [r[0] for r in con.execute("SELECT id FROM read_parquet(?)", [f]).fetchall()]
        assert ids == sorted(ids, reverse=True), f
    print("rows of every file in id DESC order")
    return 0


if __name__ == "__main__":
    if sys.argv[1] != "verify":
        sys.exit(f"unknown command {sys.argv[1]}")
    a = sys.argv[2:]
    sys.exit(verify(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), a[6]))
