#!/usr/bin/env bash
# An interleaved comparison series: in every round, each server (signalhub with the plain
# write path, signalhub with io_uring, the minimal Rust server signalhub-minimal, Node's `ws`)
# is benched with each reader (the bench's lean client and tokio-tungstenite), one run after
# the other, so a slow phase of the machine hits all of them alike. Prints one JSON line per
# run on stdout: the bench's report plus the labels `series_server`, `series_reader`,
# `series_round`, `series_phase` ("as-is" or "loaded") and `series_load_percent`.
# Summarize with: crates/bench/compare/summarize.py < series.jsonl
#
# Usage: crates/bench/compare/series.sh [--rounds N] [--load PERCENT] [--connections N]
#          [--messages N] [--rate R] [--payload-bytes B] [--servers "plain io_uring minimal node"]
#          [--readers "lean tungstenite"] [--bin-dir target/release]
#   --load PERCENT  runs the whole series beside `stress-ng --cpu 1 --cpu-load PERCENT`
#                   (apt-get install stress-ng), stopped when the series ends.
# Node's server needs `npm ci` in crates/bench/compare once. Everything listens on 127.0.0.1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
rounds=1 load="" connections=10000 messages=100 rate=10 payload=300
servers="plain io_uring minimal node" readers="lean tungstenite"
bin_dir="${CARGO_TARGET_DIR:-$repo/target}/release"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --load) load="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --messages) messages="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --payload-bytes) payload="$2"; shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --readers) readers="$2"; shift 2 ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "series.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "series.sh: --rounds must be >= 1" >&2; exit 2; }
if [[ -n "$load" && ! "$load" =~ ^([1-9][0-9]?|100)$ ]]; then
  echo "series.sh: --load must be a percentage 1..100" >&2; exit 2
fi
for b in signalhub signalhub-bench signalhub-minimal; do
  [[ -x "$bin_dir/$b" ]] || { echo "series.sh: $bin_dir/$b missing (cargo build --release -p signalhub -p signalhub-bench)" >&2; exit 2; }
done
if [[ " $servers " == *" node "* && ! -d "$here/node_modules/ws" ]]; then
  echo "series.sh: Node's ws is not installed (cd crates/bench/compare && npm ci)" >&2; exit 2
fi

work="$(mktemp -d)"
load_pid="" server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  [[ -n "$load_pid" ]] && kill "$load_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

phase="as-is"
if [[ -n "$load" ]]; then
  command -v stress-ng >/dev/null || { echo "series.sh: stress-ng not found (apt-get install stress-ng)" >&2; exit 2; }
  stress-ng --cpu 1 --cpu-load "$load" --timeout 86400 --quiet &
  load_pid=$!
  phase="loaded"
  sleep 2
fi

common=(--connections "$connections" --messages "$messages" --rate "$rate" --payload-bytes "$payload")
key="series-$$-$RANDOM"

# Starts a server that prints "listening on 127.0.0.1:PORT" on stderr; sets server_pid and port.
start_external() {
  "$@" 2>"$work/server.err" &
  server_pid=$!
  port=""
  for _ in $(seq 1 100); do
    port="$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/server.err" | head -n 1)"
    [[ -n "$port" ]] && return 0
    sleep 0.1
  done
  echo "series.sh: $1 printed no listening line" >&2
  cat "$work/server.err" >&2
  exit 1
}

run_one() { # server reader round
  local server="$1" reader="$2" round="$3" report=""
  local bench=("$bin_dir/signalhub-bench" "${common[@]}" --reader "$reader")
  echo "series.sh: round $round ($phase) $server, reader $reader" >&2
  case "$server" in
    plain) report="$("${bench[@]}" --server-bin "$bin_dir/signalhub" --server-env SIGNALHUB_IO_URING=false)" || true ;;
    io_uring) report="$("${bench[@]}" --server-bin "$bin_dir/signalhub" --server-env SIGNALHUB_IO_URING=true)" || true ;;
    minimal|node)
      if [[ "$server" == minimal ]]; then
        start_external "$bin_dir/signalhub-minimal" 0 "$key"
      else
        start_external node "$here/node-ws-server.mjs" 0 "$key"
      fi
      report="$("${bench[@]}" --url "http://127.0.0.1:$port" --api-key "$key" --server-pid "$server_pid")" || true
      kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
      server_pid="" ;;
    *) echo "series.sh: unknown server $server (plain, io_uring, minimal, node)" >&2; exit 2 ;;
  esac
  # A failed run is still a line of the series, marked as such.
  [[ -n "$report" ]] || report='{"error":"the bench printed no report"}'
  SERIES_REPORT="$report" python3 -c '
import json, os, sys
r = json.loads(os.environ["SERIES_REPORT"])
server, reader, rnd, phase, load = sys.argv[1:6]
r.update(series_server=server, series_reader=reader, series_round=int(rnd),
         series_phase=phase, series_load_percent=int(load) if load else None)
print(json.dumps(r), flush=True)
' "$server" "$reader" "$round" "$phase" "$load"
}

for round in $(seq 1 "$rounds"); do
  for server in $servers; do
    for reader in $readers; do
      run_one "$server" "$reader" "$round"
    done
  done
done
