#!/usr/bin/env bash
# Autobahn|Testsuite's fuzzingclient against signalhub's WebSocket codec (crates/wire), through
# the echo harness crates/wire/examples/echo.rs (the codec alone, not a signalhub server mode).
#
# Runs cases 1-7 (framing, pings/pongs, reserved bits, opcodes, fragmentation, UTF-8,
# close handling), 9 (performance: text and binary messages of 64 KiB to 16 MiB, whole,
# fragmented and in chopped writes, and runs of 1000 messages) and 10 (auto-fragmentation).
# All of case 9 runs: with the harness built in release mode it takes about 15 s of the
# whole run's ~30 s on 2 cores, so it needs no trimming to 9.1.*/9.2.*.
# Cases 11-13 (permessage-deflate) are not run: the echo harness negotiates no extension.
#
# Fails (exit 1) on any case whose behavior is not OK, NON-STRICT or INFORMATIONAL (the
# suite's grade for info-only cases, e.g. 7.1.6 and 7.13.x) or whose behaviorClose is not
# OK or INFORMATIONAL; prints the counts per behavior and the run time.
#
# Installs what it needs: autobahntestsuite from PyPI into a cache directory
# (${SIGNALHUB_AUTOBAHN_CACHE:-$HOME/.cache/signalhub/autobahn-py}) with pyenv's Python
# 2.7.18 (the suite is Python 2 only), adding the empty zope/__init__.py that
# `pip install --target` leaves out.
set -euo pipefail
cd "$(dirname "$0")/.."

python2=""
for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7.18/bin/python2.7 "$(command -v python2.7 || true)"; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then
    python2="$candidate"
    break
  fi
done
if [[ -z "$python2" ]]; then
  echo "autobahn.sh: no Python 2.7.18 (looked in ${PYENV_ROOT:-$HOME/.pyenv}/versions and PATH)" >&2
  exit 1
fi

cache="${SIGNALHUB_AUTOBAHN_CACHE:-$HOME/.cache/signalhub/autobahn-py}"
if [[ ! -f "$cache/autobahntestsuite/wstest.py" ]]; then
  echo "== installing autobahntestsuite into $cache"
  mkdir -p "$cache"
  "$python2" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$cache" autobahntestsuite
fi
mkdir -p "$cache/zope"
[[ -f "$cache/zope/__init__.py" ]] || : >"$cache/zope/__init__.py"

echo "== building the echo harness (crates/wire/examples/echo.rs, release)"
cargo build --release -q -p signalhub-wire --example echo
target_dir="${CARGO_TARGET_DIR:-target}"
echo_bin="$target_dir/release/examples/echo"

work="$(mktemp -d)"
echo_pid=""
cleanup() {
  [[ -n "$echo_pid" ]] && kill "$echo_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port: bind to 0, read it back, release it for the harness.
port="$("$python2" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
"$echo_bin" "127.0.0.1:$port" 2>"$work/echo.log" &
echo_pid=$!
for _ in $(seq 1 100); do
  grep -q "echo listening" "$work/echo.log" 2>/dev/null && break
  kill -0 "$echo_pid" 2>/dev/null || { cat "$work/echo.log" >&2; echo "autobahn.sh: echo exited" >&2; exit 1; }
  sleep 0.1
done

cat >"$work/fuzzingclient.json" <<EOF
{
  "outdir": "$work/reports/servers",
  "servers": [{"agent": "signalhub-wire", "url": "ws://127.0.0.1:$port"}],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF

echo "== wstest fuzzingclient: cases 1-7, 9, 10 against 127.0.0.1:$port"
start=$(date +%s)
(cd "$work" && PYTHONPATH="$cache" "$python2" -m autobahntestsuite.wstest \
  -m fuzzingclient -s "$work/fuzzingclient.json" >"$work/wstest.log" 2>&1) || {
  tail -n 40 "$work/wstest.log" >&2
  echo "autobahn.sh: wstest failed" >&2
  exit 1
}
elapsed=$(( $(date +%s) - start ))

"$python2" - "$work/reports/servers/index.json" "$elapsed" <<'EOF'
import json, sys
from collections import Counter
index = json.load(open(sys.argv[1]))
results = index["signalhub-wire"]
behaviors = Counter(r["behavior"] for r in results.values())
closes = Counter(r["behaviorClose"] for r in results.values())
def key(case):
    return [int(p) for p in case.split(".")]
bad = [
    (case, r["behavior"], r["behaviorClose"])
    for case, r in sorted(results.items(), key=lambda kv: key(kv[0]))
    if r["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL")
    or r["behaviorClose"] not in ("OK", "INFORMATIONAL")
]
print("autobahn: %d cases in %s s" % (len(results), sys.argv[2]))
print("  behavior:      " + ", ".join("%s %d" % kv for kv in sorted(behaviors.items())))
print("  behaviorClose: " + ", ".join("%s %d" % kv for kv in sorted(closes.items())))
for grade in ("NON-STRICT", "INFORMATIONAL"):
    cases = sorted((c for c, r in results.items() if r["behavior"] == grade), key=key)
    if cases:
        print("  %s: %s" % (grade, " ".join(cases)))
for case, behavior, close in bad:
    print("  FAILED %s: behavior %s, behaviorClose %s" % (case, behavior, close))
if bad:
    sys.exit(1)
print("autobahn: all cases OK, NON-STRICT or INFORMATIONAL")
EOF
