#!/usr/bin/env bash
# Times `scripts/demo` as a newcomer's first run on a fresh machine meets it: a throwaway HOME,
# so an empty ~/.cache/sluice (SLUICEDEV_CACHE), no ~/.duckdb extensions, and no cargo registry,
# pip or npm cache (crates, wheels and the npm package are downloaded again). The Debian packages
# and the Rust toolchain (rustup) stay as they are on this machine.
#   bench/fresh_demo.sh [--keep] [demo arguments …]
# Prints the time to the demo's first line (set-up: downloads and the build) and the total.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keep=0
[ "${1:-}" != --keep ] || { keep=1; shift; }
fresh="$(mktemp -d "${TMPDIR:-/tmp}/sluice-fresh.XXXXXX")"
cargo_bin="$(dirname "$(command -v cargo)")"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cleanup() { [ "$keep" = 1 ] && echo "kept $fresh" >&2 || rm -rf "$fresh"; }
trap cleanup EXIT
log="$fresh/demo.log"
start=$(date +%s.%N)
# A clean environment: none of this machine's sluice, cargo or DuckDB settings.
env -i PATH="$cargo_bin:/usr/local/bin:/usr/bin:/bin" HOME="$fresh/home" \
    RUSTUP_HOME="$rustup_home" CARGO_HOME="$fresh/home/.cargo" TERM=dumb LANG=C.UTF-8 \
    "$root/scripts/demo" --dir "$fresh/demo" "$@" 2>&1 |
  while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done >"$log" || true
end=$(date +%s.%N)
first=$(grep -m1 ' sluice demo: ' "$log" | cut -d' ' -f1)
grep -E ' \[setup\] |ingested|check: ' "$log" | while read -r t rest; do
  printf '%7.1f s  %s\n' "$(echo "$t - $start" | bc)" "$rest"
done
[ -n "$first" ] || { echo "the demo did not start; log:" >&2; tail -30 "$log" >&2; exit 1; }
# The DuckDB CLI line the demo printed at its end, run as printed (in the same HOME).
cli=$(grep -A1 ' open the lake with the DuckDB CLI' "$log" | tail -1 | cut -d' ' -f2-)
echo "printed: $cli"
env -i PATH="/usr/bin:/bin" HOME="$fresh/home" sh -c "$cli"
printf 'set-up before the demo ran: %.1f s (%.1f min); total %.1f s\n' \
  "$(echo "$first - $start" | bc)" "$(echo "($first - $start) / 60" | bc -l)" "$(echo "$end - $start" | bc)"
