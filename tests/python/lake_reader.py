"""A stock DuckDB (Python client 1.5.5) reader of a DuckLake that sluice is filling.

usage: lake_reader.py TARGET DATA TABLE STOP_FILE INTERVAL_S

TARGET is what follows `ducklake:` in ATTACH (e.g. `sqlite:/path/lake.sqlite`). The lake is
attached READ_ONLY once and `count(*)` of TABLE is read every INTERVAL_S seconds until STOP_FILE
exists, then once more; every few reads the lake is detached and attached again (a new reader
arriving). Prints one JSON object: {"counts": [...], "errors": [...]}.
"""
import json
import os
import sys
import time

import duckdb

target, data, table, stop_file, interval = sys.argv[1:6]
interval = float(interval)
attach = f"ATTACH 'ducklake:{target}' AS lake (DATA_PATH '{data}', READ_ONLY)"
con = duckdb.connect()
counts, errors = [], []
attached = False
reads = 0
last = False
while True:
    if os.path.exists(stop_file):
        last = True
    try:
        if attached and reads % 5 == 4:
            con.execute("DETACH lake")
            attached = False
        if not attached:
            con.execute(attach)
            attached = True
        counts.append(con.execute(f'SELECT count(*) FROM lake."{table}"').fetchone()[0])
    except Exception as e:  # every failure is reported, none retried
        errors.append(f"{type(e).__name__}: {e}")
    reads += 1
    if last:
        break
    time.sleep(interval)
print(json.dumps({"counts": counts, "errors": errors}))
