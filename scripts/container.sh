#!/usr/bin/env bash
# The container image: build it from a local release binary, and test that it serves.
#
#   scripts/container.sh build [BINARY] [TAG]   assemble the context, podman build (TAG: signalhub:local)
#   scripts/container.sh test  [TAG]            run it; check /health, a WebSocket welcome,
#                                               the health check, the non-root user, the /data volume
#
# Needs podman (apt-get install podman runc busybox-static; installed when missing). No image
# registry is used: the image is FROM scratch with the binary, the shared libraries `ldd`
# lists for it, and Debian's static busybox (for the HEALTHCHECK's wget).
# podman runs with `--runtime runc` (crun fails to set rlimits in some sandboxes).
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
  command -v podman >/dev/null && command -v runc >/dev/null && [[ -x /bin/busybox ]] && return
  apt-get update -qq && apt-get install -y -qq podman runc busybox-static >/dev/null
}

podman_() { podman --runtime runc --cgroup-manager cgroupfs --events-backend file "$@"; }

build() {
  local bin="${1:-target/release/signalhub}" tag="${2:-signalhub:local}"
  [[ -x "$bin" ]] || { echo "container.sh: no binary at $bin (cargo build --release -p signalhub)" >&2; exit 1; }
  need
  local ctx
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' RETURN
  mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/data"
  chmod 1777 "$ctx/rootfs/tmp"
  cp "$bin" "$ctx/rootfs/usr/local/bin/signalhub"
  # Every shared library the binary links, at the path the loader looks for it.
  ldd "$bin" | awk '/=> \// {print $3} /^[[:space:]]*\// {print $1}' | while read -r lib; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
  cp /bin/busybox "$ctx/rootfs/bin/busybox"
  echo "signalhub:x:65532:65532:signalhub:/data:/sbin/nologin" >"$ctx/rootfs/etc/passwd"
  echo "signalhub:x:65532:" >"$ctx/rootfs/etc/group"
  cp Containerfile "$ctx/Containerfile"
  podman_ build --format docker -q -t "$tag" -f "$ctx/Containerfile" "$ctx" >/dev/null
  echo "container.sh: built $tag ($(podman_ image inspect "$tag" --format '{{.Size}}') bytes)"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Reads the 101 and the first frame (the server's welcome) with a bare RFC 6455 handshake.
ws_welcome() {
  python3 - "$1" <<'PY'
import base64, json, os, socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, rest = buf.split(b"\r\n\r\n", 1)
assert head.startswith(b"HTTP/1.1 101"), head
while len(rest) < 2:
    rest += s.recv(4096)
n = rest[1] & 0x7F
off = 2
if n == 126:
    while len(rest) < 4: rest += s.recv(4096)
    n, off = int.from_bytes(rest[2:4], "big"), 4
while len(rest) < off + n:
    rest += s.recv(4096)
frame = json.loads(rest[off:off + n])
assert frame["type"] == "welcome", frame
print(json.dumps(frame))
PY
}

run_test() {
  local tag="${1:-signalhub:local}" name="signalhub-test-$$" port vol
  need
  port="$(free_port)"
  vol="signalhub-test-data-$$"
  cleanup() { podman_ rm -f "$name" >/dev/null 2>&1 || true; podman_ volume rm -f "$vol" >/dev/null 2>&1 || true; }
  trap cleanup RETURN
  # Host networking, listening on loopback only (tests never leave 127.0.0.0/8).
  podman_ run -d --name "$name" --network host --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 -v "$vol:/data" \
    -e SIGNALHUB_LISTEN="127.0.0.1:$port" "$tag" >/dev/null
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null || { podman_ logs "$name" >&2; echo "container.sh: /health never answered" >&2; return 1; }
  echo "container.sh: /health answered"
  ws_welcome "$port" >/dev/null
  echo "container.sh: a WebSocket got its welcome"
  [[ "$(podman_ inspect "$name" --format '{{.Config.User}}')" == "65532:65532" ]] || { echo "container.sh: not running as 65532" >&2; return 1; }
  [[ "$(podman_ exec "$name" /bin/busybox id -u)" == "65532" ]] || { echo "container.sh: process uid is not 65532" >&2; return 1; }
  echo "container.sh: runs as uid 65532"
  # The health check the image declares, run by podman itself.
  podman_ healthcheck run "$name" >/dev/null || { echo "container.sh: the image's health check failed" >&2; return 1; }
  echo "container.sh: the image's HEALTHCHECK passes"
  podman_ exec "$name" /bin/busybox test -s /data/signalhub.db || { echo "container.sh: no store on the /data volume" >&2; return 1; }
  echo "container.sh: the store is on the /data volume"
  # The image as shipped (0.0.0.0:8080, its own defaults), in a network namespace of its own
  # with no interfaces but loopback: it must start and pass its own health check.
  podman_ rm -f "$name" >/dev/null
  podman_ run -d --name "$name" --network none --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" \
    --ulimit nproc=4096:4096 "$tag" >/dev/null
  local healthy=""
  for _ in $(seq 1 50); do
    podman_ healthcheck run "$name" >/dev/null 2>&1 && { healthy=1; break; }
    sleep 0.2
  done
  [[ -n "$healthy" ]] || { podman_ logs "$name" >&2; echo "container.sh: the image's defaults do not serve" >&2; return 1; }
  echo "container.sh: the image's own defaults serve and pass the health check"
  echo "container: 1 passed, 0 failed"
}

case "${1:-}" in
  build) shift; build "$@" ;;
  test) shift; run_test "$@" ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
