#!/usr/bin/env bash
# Run a real Redis (Debian's redis-server) as a process of this project, for the
# greylisting tests: scripts/redis.sh start|stop|status|env
#
# - Not the system service: our own redis-server whose pid, log and working
#   dir live in the state dir (REDIS_STATE_DIR, default <repo>/.tmp/redis).
# - Only 127.0.0.1, on REDIS_PORT (default 16379, so as not to meet a system
#   Redis on 6379; parallel checkouts each set their own).
# - Nothing kept on disk: no RDB snapshots, no append-only file.
# - Installs redis-server with apt-get when it is missing and we are root.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${REDIS_STATE_DIR:-$REPO/.tmp/redis}"
[[ "$STATE_DIR" == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
HOST=127.0.0.1
PORT="${REDIS_PORT:-16379}"
PID_FILE="$STATE_DIR/redis.pid"
LOG_FILE="$STATE_DIR/redis.log"
START_TIMEOUT=15 # seconds until PING must answer
STOP_TIMEOUT=10  # seconds until the process must be gone

NAME=redis.sh
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

usage() {
  echo "usage: $0 start|stop|status|env" >&2
  exit 2
}

# PING over /dev/tcp (no redis-cli needed): true when the answer is +PONG.
pinging() {
  local answer
  answer="$(
    exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
    printf 'PING\r\n' >&3
    timeout 2 head -c 7 <&3
  )" 2>/dev/null || return 1
  [[ "$answer" == "+PONG"* ]]
}



# The pid is alive, not a zombie, and a redis-server working in our state dir (it
# rewrites its command line, so --dir, where it chdirs, is the marker).
ours() {
  alive "$1" || return 1
  [[ -d /proc/$1 ]] || return 0 # no procfs: trust kill -0
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == redis-server* || "${exe##*/}" == redis-check-rdb* ]] || return 1
  [[ "$(readlink "/proc/$1/cwd" 2>/dev/null)" == "$STATE_DIR" ]]
}

install_redis() {
  apt_install redis-server redis-server
  # The package starts the system service on 6379; ours is another port, so we leave it be.
}

do_start() {
  local pid
  pid="$(read_pid)"
  if ours "$pid" && pinging; then
    log "already running (pid $pid, $HOST:$PORT)"
    return 0
  fi
  if ! ours "$pid"; then
    install_redis
    port_in_use "$PORT" && die "$HOST:$PORT is already in use by another process; set REDIS_PORT"
    mkdir -p "$STATE_DIR"
    rm -f "$PID_FILE"
    # Arguments, not a config file: the whole setup is visible here. daemonize: the
    # first process exits once the server has forked and written the pid file.
    redis-server --bind "$HOST" --port "$PORT" --protected-mode yes \
      --save '' --appendonly no --dir "$STATE_DIR" \
      --daemonize yes --pidfile "$PID_FILE" --logfile "$LOG_FILE" \
      >"$STATE_DIR/redis.stderr" 2>&1 || {
      tail -n 20 "$STATE_DIR/redis.stderr" "$LOG_FILE" >&2 2>/dev/null || true
      die "redis-server failed to start"
    }
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    pid="$(read_pid)"
    if ours "$pid" && pinging; then
      log "started (pid $pid): redis://$HOST:$PORT, log $LOG_FILE"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$LOG_FILE" >&2 2>/dev/null || true
  pid="$(read_pid)"
  ours "$pid" && do_stop
  die "redis-server did not start"
}

do_stop() {
  local pid
  pid="$(read_pid)"
  if ! ours "$pid"; then
    [[ -n "$pid" ]] && log "pid $pid from the pid file is not ours (stale pid file)" || log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while ours "$pid"; do
    if ((SECONDS >= deadline)); then
      log "still alive after ${STOP_TIMEOUT}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

do_status() {
  local pid
  pid="$(read_pid)"
  if ours "$pid" && pinging; then
    echo "running (pid $pid): redis://$HOST:$PORT"
    return 0
  fi
  if ours "$pid"; then echo "pid $pid alive but $HOST:$PORT does not answer PING"; else echo "not running"; fi
  return 1
}

do_env() {
  cat <<EOF
REDIS_HOST=$HOST
REDIS_PORT=$PORT
REDIS_URL=redis://$HOST:$PORT
REDIS_STATE_DIR=$STATE_DIR
REDIS_LOG=$LOG_FILE
EOF
}

[[ $# -eq 1 ]] || usage
[[ "$PORT" =~ ^[0-9]+$ ]] || die "REDIS_PORT must be a port number (got '$PORT')"
case "$1" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  env) do_env ;;
  *) usage ;;
esac
