# Sourced by the other scripts: where sluice's build outputs and downloaded parts live.
# Everything is kept outside the clone (under ~/.cache/sluice by default) so that CI on the
# same machine and later clones reuse it.
export SLUICEDEV_CACHE="${SLUICEDEV_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SLUICEDEV_CACHE/target}"
# DuckDB's official libduckdb.so 1.5.5 (from the npm package @duckdb/node-bindings-linux-x64);
# the duckdb crate links it instead of compiling DuckDB (36 min) from source.
export DUCKDB_LIB_DIR="${DUCKDB_LIB_DIR:-$SLUICEDEV_CACHE/duckdb/lib}"
export LD_LIBRARY_PATH="$DUCKDB_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# DuckDB's own default extension directory, so sluice, the DuckDB CLI and the DuckDB Python
# client all find the extensions installed from the PyPI wheels.
export SLUICEDEV_EXTENSIONS="$HOME/.duckdb/extensions"
export SLUICEDEV_VENV="${SLUICEDEV_VENV:-$SLUICEDEV_CACHE/venv}"
export SLUICEDEV_PYTHON="$SLUICEDEV_VENV/bin/python"
export SLUICEDEV_BIN="$CARGO_TARGET_DIR/release/sluice"
# The Kafka-compatible broker tansu (cargo install'ed by scripts/setup).
export SLUICEDEV_TANSU="$SLUICEDEV_CACHE/tools/bin/tansu"
