#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, lints, unit and integration tests
# (each starts real servers on loopback), against real services this script starts
# (PostgreSQL for the store, a local Ethereum node with an ERC-20 for wallet tiers), the
# WebSocket codec against Autobahn|Testsuite (scripts/autobahn.sh), a short
# load-generator run that must deliver every publication in order, the container image built
# and run with podman, the TypeScript client's
# tests against the real binary (including the READMEs' install-from-the-repository commands,
# run as written into a new project), and the dashboard's tests in headless Chromium.
# Installs what it needs: Debian's postgresql, chromium and podman when missing, npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# No incremental caches: CI builds once from a clean clone, and they only cost disk.
export CARGO_INCREMENTAL=0
# Tests of external services fail (not skip) when the service is missing.
export SIGNALHUB_REQUIRE_EXTERNAL=1
# io_uring is the kernel's: where it is refused (sysctl, seccomp) the server falls back and
# the direct-write tests skip, saying so; SIGNALHUB_REQUIRE_IO_URING=1 makes that a failure.
echo "kernel.io_uring_disabled = $(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo unknown)"

work="$(mktemp -d)"
eth_pid=""
cleanup() {
  [[ -n "$eth_pid" ]] && kill "$eth_pid" 2>/dev/null || true
  [[ -n "${SIGNALHUB_TEST_POSTGRES_DIR:-}" ]] && scripts/postgres.sh destroy "$SIGNALHUB_TEST_POSTGRES_DIR" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== PostgreSQL (scripts/postgres.sh)"
eval "$(scripts/postgres.sh)"

echo "== Ethereum dev node with an ERC-20 (scripts/eth)"
if ! command -v node >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
(cd scripts/eth && npm ci --no-audit --no-fund --loglevel=error)
node scripts/eth/devnode.mjs >"$work/eth.json" 2>"$work/eth.log" &
eth_pid=$!
for _ in $(seq 1 120); do
  [[ -s "$work/eth.json" ]] && break
  kill -0 "$eth_pid" 2>/dev/null || { cat "$work/eth.log" >&2; echo "devnode.mjs exited" >&2; exit 1; }
  sleep 0.5
done
SIGNALHUB_TEST_ETH="$(head -n 1 "$work/eth.json")"
export SIGNALHUB_TEST_ETH

echo "== cargo test"
cargo test --workspace

# On CI (.ci/run sets SIGNALHUB_TEST_LEAN=1) the debug build is not needed past this point:
# free its disk before the release build (a CI run once died of a full disk right here).
if [[ "${SIGNALHUB_TEST_LEAN:-}" == 1 ]]; then
  rm -rf target/debug
fi

echo "== Autobahn|Testsuite on the WebSocket codec (scripts/autobahn.sh: cases 1-7, 9, 10)"
scripts/autobahn.sh

echo "== bench smoke run (200 connections, 50 publications, full in-order delivery required)"
cargo build --release -p signalhub -p signalhub-bench
target/release/signalhub-bench --server-bin target/release/signalhub \
  --connections 200 --messages 50 --rate 0 --require-all
echo "== bench smoke run with the ordinary client (--reader tungstenite), same checks"
target/release/signalhub-bench --server-bin target/release/signalhub \
  --connections 200 --messages 50 --rate 0 --require-all --reader tungstenite
echo "== bench smoke run against the minimal yardstick server (signalhub-minimal), same checks"
target/release/signalhub-minimal 0 smoke-minimal-key 2>"$work/minimal.err" &
minimal_pid=$!
minimal_port=""
for _ in $(seq 1 100); do
  minimal_port="$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/minimal.err")"
  [[ -n "$minimal_port" ]] && break
  sleep 0.1
done
[[ -n "$minimal_port" ]] || { cat "$work/minimal.err" >&2; echo "signalhub-minimal did not listen" >&2; exit 1; }
target/release/signalhub-bench --url "http://127.0.0.1:$minimal_port" --api-key smoke-minimal-key \
  --server-pid "$minimal_pid" --connections 200 --messages 50 --rate 0 --require-all
kill "$minimal_pid"
wait "$minimal_pid" 2>/dev/null || true
echo "== comparison series tools (crates/bench/compare/series.sh, summarize.py): one tiny round"
crates/bench/compare/series.sh --bin-dir target/release --servers "plain minimal" \
  --connections 20 --messages 5 --rate 0 >"$work/series.jsonl"
[[ "$(wc -l <"$work/series.jsonl")" == 4 ]] || { cat "$work/series.jsonl" >&2; echo "series.sh: expected 4 runs" >&2; exit 1; }
crates/bench/compare/summarize.py "$work/series.jsonl" | grep -q '| as-is | 1 | tungstenite | minimal | 100 / 100 |'
echo "bench-smoke: 4 passed, 0 failed"

echo "== container image (scripts/container.sh): from the release binary; /health, a WebSocket, non-root, /data"
scripts/container.sh build target/release/signalhub
scripts/container.sh test

echo "== TypeScript client (clients/js) against the real binary"
(cd clients/js && npm ci --no-audit --no-fund --loglevel=error && npm test)

echo "== dashboard (web/): the committed dist matches a rebuild; browser tests in Chromium"
[[ -x /usr/bin/chromium ]] || { apt-get update -qq && apt-get install -y -qq chromium; }
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build && npm run typecheck)
git diff --exit-code -- web/dist
(cd web && npm test)
echo "scripts/test.sh: all suites passed"
