#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, lints, unit and integration tests
# (each starts real servers on loopback), and a short load-generator run that must deliver
# every publication in order. Installs nothing system-wide that it does not need.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== bench smoke run (200 connections, 50 publications, full in-order delivery required)"
cargo build --release -p signalhub -p signalhub-bench
target/release/signalhub-bench --server-bin target/release/signalhub \
  --connections 200 --messages 50 --rate 0 --require-all
echo "bench-smoke: 1 passed, 0 failed"
