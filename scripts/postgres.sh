#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the store tests: 127.0.0.1 on a free port, data and
# socket under a new temp dir, trust authentication, one database `signalhub_test`.
#
#   eval "$(scripts/postgres.sh)"        # new cluster; exports the variables below
#   scripts/postgres.sh stop DIR         # stop it (fast shutdown), keep the data
#   scripts/postgres.sh start DIR        # start it again on the same port
#   scripts/postgres.sh destroy DIR      # stop it and remove DIR
#   scripts/postgres.sh freeze DIR       # SIGSTOP the server processes (a hung server)
#   scripts/postgres.sh thaw DIR         # SIGCONT them
#
# A new cluster prints, on standard output only (logs go to standard error):
#   export SIGNALHUB_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/signalhub_test
#   export SIGNALHUB_TEST_POSTGRES_DIR=DIR
#   export SIGNALHUB_TEST_POSTGRES_CTL='/abs/path/scripts/postgres.sh DIR'
# The store's outage test runs "$SIGNALHUB_TEST_POSTGRES_CTL stop" and "... start" through the
# CTL form (script path, then DIR; the subcommand goes first: `postgres.sh stop DIR`).
#
# Installs Debian's `postgresql` with apt-get when no initdb/pg_ctl is found (needs root).
# initdb and postgres refuse to run as root: as root, the cluster runs as the `postgres`
# user (created by Debian's package), else as a dedicated `signalhub-pg` system user.
set -euo pipefail

SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
MARKER=".signalhub-postgres"
DB_NAME="signalhub_test"
DB_SUPERUSER="postgres"

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  sed -n '2,18p' "$SCRIPT" >&2
  exit 2
}

# The directory holding initdb, pg_ctl, postgres and createdb, newest Debian version first.
find_bin_dir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
      echo "$d"
      return 0
    fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  return 1
}

ensure_installed() {
  if find_bin_dir; then
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die "initdb/pg_ctl not found; install PostgreSQL (Debian: apt-get install postgresql)"
  log "initdb/pg_ctl not found: installing Debian's postgresql"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  find_bin_dir || die "postgresql installed but initdb/pg_ctl still not found"
}

# The OS user the cluster runs as (empty: the current, non-root user).
os_user() {
  if [[ "$(id -u)" != 0 ]]; then
    echo ""
  elif id -u postgres >/dev/null 2>&1; then
    echo "postgres"
  else
    if ! id -u signalhub-pg >/dev/null 2>&1; then
      useradd --system --no-create-home --shell /usr/sbin/nologin signalhub-pg >&2
    fi
    echo "signalhub-pg"
  fi
}

# Runs a command as the cluster's OS user.
as_owner() {
  local user
  user="$(cat "$DIR/os_user")"
  if [[ -n "$user" ]]; then
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

check_dir() {
  [[ -n "${DIR:-}" ]] || usage
  [[ -f "$DIR/$MARKER" ]] || die "$DIR is not a cluster made by this script"
  BIN="$(cat "$DIR/bin_dir")"
}

running() {
  as_owner "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

start_cluster() {
  if running; then
    log "already running ($DIR)"
    return 0
  fi
  as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 start >&2
}

stop_cluster() {
  if ! running; then
    log "not running ($DIR)"
    return 0
  fi
  as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >&2
}

# The postmaster and its children (the server's processes, all started by this script).
server_pids() {
  local pid
  pid="$(head -1 "$DIR/data/postmaster.pid" 2>/dev/null)" || die "not running ($DIR)"
  echo "$pid" $(pgrep -P "$pid" || true)
}

# Sends signal $1 to each server process, one at a time. A child may end between the listing
# and the signal (a backend whose client left, reaped as soon as the postmaster runs): a
# process that is gone is skipped, any other failure is an error. Freezing stops the postmaster
# first (no new children); thawing resumes it last (it reaps nothing while the children wake).
signal_server() {
  local pids pid postmaster
  pids="$(server_pids)"
  postmaster="${pids%% *}"
  if [[ "$1" == STOP ]]; then
    pids="$postmaster ${pids#"$postmaster"}"
  else
    pids="${pids#"$postmaster"} $postmaster"
  fi
  for pid in $pids; do
    if ! as_owner kill "-$1" "$pid" 2>/dev/null && kill -0 "$pid" 2>/dev/null; then
      die "could not send SIG$1 to $pid"
    fi
  done
  if [[ "$1" == CONT ]]; then
    # Nothing of the cluster may stay stopped.
    for pid in $(server_pids); do
      if [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == T ]]; then
        die "process $pid is still stopped after SIGCONT"
      fi
    done
  fi
}

new_cluster() {
  BIN="$(ensure_installed)"
  local user port
  user="$(os_user)"
  DIR="$(mktemp -d "${TMPDIR:-/tmp}/signalhub-pg.XXXXXX")"
  DIR="$(cd "$DIR" && pwd -P)"
  touch "$DIR/$MARKER"
  echo "$BIN" >"$DIR/bin_dir"
  echo "$user" >"$DIR/os_user"
  if [[ -n "$user" ]]; then
    chown "$user" "$DIR"
  fi
  chmod 700 "$DIR"

  as_owner "$BIN/initdb" -D "$DIR/data" -U "$DB_SUPERUSER" --auth=trust --encoding=UTF8 \
    --locale=C --no-sync >"$DIR/initdb.log" 2>&1 ||
    { cat "$DIR/initdb.log" >&2; die "initdb failed"; }

  local tries=0
  while true; do
    port="$(free_port)" || die "no free port found"
    {
      echo "# added by scripts/postgres.sh"
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $port"
      echo "unix_socket_directories = '$DIR'"
      echo "max_connections = 200"
      echo "shared_buffers = 32MB"
      echo "fsync = on"
      echo "synchronous_commit = on"
    } >"$DIR/data/postgresql.auto.conf"
    if start_cluster; then
      break
    fi
    tries=$((tries + 1))
    [[ $tries -lt 5 ]] || { cat "$DIR/postgres.log" >&2; die "could not start PostgreSQL"; }
    log "start failed on port $port; trying another port"
  done
  echo "$port" >"$DIR/port"

  as_owner "$BIN/createdb" -h 127.0.0.1 -p "$port" -U "$DB_SUPERUSER" "$DB_NAME" >&2
  log "$("$BIN/postgres" --version) on 127.0.0.1:$port, data in $DIR"

  echo "export SIGNALHUB_TEST_POSTGRES=postgres://$DB_SUPERUSER@127.0.0.1:$port/$DB_NAME"
  echo "export SIGNALHUB_TEST_POSTGRES_DIR=$DIR"
  echo "export SIGNALHUB_TEST_POSTGRES_CTL='$SCRIPT $DIR'"
}

case "${1:-new}" in
  new)
    new_cluster
    ;;
  start)
    DIR="${2:-}"
    check_dir
    start_cluster
    ;;
  stop)
    DIR="${2:-}"
    check_dir
    stop_cluster
    ;;
  destroy)
    DIR="${2:-}"
    check_dir
    stop_cluster
    rm -rf -- "$DIR"
    ;;
  freeze)
    DIR="${2:-}"
    check_dir
    signal_server STOP
    ;;
  thaw)
    DIR="${2:-}"
    check_dir
    signal_server CONT
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    usage
    ;;
esac
