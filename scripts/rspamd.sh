#!/usr/bin/env bash
# Run a real rspamd (Debian package) as a process of this project, offline,
# for integration tests: scripts/rspamd.sh start|stop|status|env
#
# - Not the system service: our own `rspamd -c test/rspamd-server/rspamd.conf` whose
#   pid, log, sockets and databases all live in the state dir
#   (RSPAMD_STATE_DIR, default <repo>/.tmp/rspamd).
# - Only 127.0.0.1: normal worker on RSPAMD_PORT (11343), controller on
#   RSPAMD_CONTROLLER_PORT (11344); no proxy and no fuzzy worker. Network
#   modules are off and DNS points at 127.0.0.1 (see test/rspamd-server/README.md).
# - Verdicts on demand through X-Test-* headers (test/rspamd-server/rspamd.local.lua).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONF_DIR="$REPO/test/rspamd-server"
STATE_DIR="${RSPAMD_STATE_DIR:-$REPO/.tmp/rspamd}"
[[ "$STATE_DIR" == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
# Compiled hyperscan databases: ~10 s of CPU to build, reusable across runs
# and state dirs, so kept apart from the state dir (safe to delete).
# With RSPAMD_STATE_DIR set and no RSPAMD_HS_CACHE_DIR, nothing is written into the checkout.
if [[ -n "${RSPAMD_HS_CACHE_DIR:-}" ]]; then
  HS_CACHE_DIR="$RSPAMD_HS_CACHE_DIR"
elif [[ -n "${RSPAMD_STATE_DIR:-}" ]]; then
  HS_CACHE_DIR="$STATE_DIR/hs-cache"
else
  HS_CACHE_DIR="$REPO/.tmp/rspamd-hs-cache"
fi
[[ "$HS_CACHE_DIR" == /* ]] || HS_CACHE_DIR="$PWD/$HS_CACHE_DIR"
HOST=127.0.0.1
PORT="${RSPAMD_PORT:-11343}"
CONTROLLER_PORT="${RSPAMD_CONTROLLER_PORT:-11344}"
PID_FILE="$STATE_DIR/rspamd.pid"
LOG_FILE="$STATE_DIR/rspamd.log"
START_TIMEOUT="${RSPAMD_START_TIMEOUT:-30}" # seconds until /ping must answer
STOP_TIMEOUT=15                             # seconds until the processes must be gone
RSPAMD_USER=_rspamd                         # created by the Debian package

NAME=rspamd.sh
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

usage() {
  echo "usage: $0 start|stop|status|env" >&2
  exit 2
}

# GET http://127.0.0.1:$1$2 and print the body; curl, else node, else bash /dev/tcp.
http_get() {
  local port=$1 path=$2
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 2 "http://$HOST:$port$path" 2>/dev/null
  elif command -v node >/dev/null 2>&1; then
    node -e '
      const [port, path] = process.argv.slice(1);
      const req = require("http").get({ host: "127.0.0.1", port, path, timeout: 2000 }, (res) => {
        let b = ""; res.on("data", (c) => (b += c));
        res.on("end", () => { process.stdout.write(b); process.exit(res.statusCode === 200 ? 0 : 1); });
      });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", () => process.exit(1));' "$port" "$path"
  else
    (
      exec 3<>"/dev/tcp/$HOST/$port" || exit 1
      printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$HOST" >&3
      timeout 2 cat <&3 | sed '1,/^\r\{0,1\}$/d'
    ) 2>/dev/null
  fi
}


pinging() {
  local body
  body="$(http_get "$PORT" /ping || true)"
  [[ "${body%%[[:space:]]*}" == pong ]]
}



install_rspamd() {
  apt_install rspamd rspamd
  # The package may start (and enable) the system service; it listens on
  # other ports (11332-11334), so it does not disturb ours and we leave it be.
}

print_log_tail() {
  if [[ -f "$LOG_FILE" ]]; then
    log "last lines of $LOG_FILE:"
    tail -n 40 "$LOG_FILE" >&2
  fi
  if [[ -s "$STATE_DIR/rspamd.stderr" ]]; then
    log "rspamd stderr ($STATE_DIR/rspamd.stderr):"
    tail -n 20 "$STATE_DIR/rspamd.stderr" >&2
  fi
}

do_start() {
  local pid
  pid="$(read_pid)"
  if ours "$pid" && pinging; then
    log "already running (pid $pid, http://$HOST:$PORT)"
    return 0
  fi
  if ours "$pid"; then
    # Alive but not answering yet (another start in progress?): wait for it.
    log "pid $pid is alive but /ping does not answer yet; waiting"
  else
    install_rspamd
    # Leftovers of an instance whose main process died hold our ports.
    if [[ -n "$pid" || -n "$(instance_pids)" ]]; then do_stop; fi
    local p
    for p in "$PORT" "$CONTROLLER_PORT"; do
      if port_in_use "$p"; then
        die "$HOST:$p is already in use by another process (not this instance); set RSPAMD_PORT / RSPAMD_CONTROLLER_PORT"
      fi
    done
    mkdir -p "$STATE_DIR" "$HS_CACHE_DIR"

    local -a args=(
      -c "$CONF_DIR/rspamd.conf"
      # CONFDIR stays the package's /etc/rspamd; our local.d/, override.d/,
      # rspamd.conf.local.override and rspamd.local.lua come from LOCAL_CONFDIR.
      "--var=LOCAL_CONFDIR=$CONF_DIR"
      # Everything rspamd writes (pid, log, control socket, caches, rrd,
      # hyperscan cache) goes to the state dir, never to /var/lib or /run.
      "--var=DBDIR=$STATE_DIR"
      "--var=RUNDIR=$STATE_DIR"
      "--var=LOGDIR=$STATE_DIR"
      "--var=TEST_HS_CACHE_DIR=$HS_CACHE_DIR"
      "--var=TEST_NORMAL_SOCKET=$HOST:$PORT"
      "--var=TEST_CONTROLLER_SOCKET=$HOST:$CONTROLLER_PORT"
      -p "$PID_FILE"
    )
    if [[ "$(id -u)" -eq 0 ]]; then
      # rspamd refuses to run its workers as root unless given -u/-g or
      # --insecure. We drop to the package's own user, as the system service
      # does: the main process keeps root (it only binds and supervises), the
      # workers that parse messages run unprivileged. That needs a state dir
      # writable by that user, hence the chown. Without that user (rspamd
      # built from source) fall back to --insecure rather than failing.
      if id "$RSPAMD_USER" >/dev/null 2>&1; then
        chown -R "$RSPAMD_USER:$RSPAMD_USER" "$STATE_DIR" "$HS_CACHE_DIR"
        args+=(-u "$RSPAMD_USER" -g "$RSPAMD_USER")
      else
        args+=(--insecure)
      fi
    fi
    # rspamd loads its config in the foreground, then forks into the
    # background, writes the pid file and the first process exits.
    if ! (cd "$STATE_DIR" && rspamd "${args[@]}") >"$STATE_DIR/rspamd.stderr" 2>&1; then
      print_log_tail
      die "rspamd failed to start"
    fi
  fi

  local deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    pid="$(read_pid)"
    if ours "$pid" && pinging; then
      log "started (pid $pid): normal http://$HOST:$PORT controller http://$HOST:$CONTROLLER_PORT, log $LOG_FILE"
      return 0
    fi
    # The pid file is written right after daemonizing: a dead pid means a
    # fatal error (e.g. cannot bind); no point in waiting any longer.
    [[ -n "$pid" ]] && ! alive "$pid" && break
    sleep 0.2
  done
  print_log_tail
  pid="$(read_pid)"
  if ours "$pid"; then
    log "pid $pid is alive but /ping did not answer 'pong' within ${START_TIMEOUT}s; stopping it"
    do_stop
  fi
  die "rspamd did not start"
}

# Every process of this instance, including workers orphaned by a main
# process that died (e.g. SIGKILL): they keep running and keep the ports bound.
# All of them (main, workers, hs_helper) hold our log file open, which is
# unique to this state dir: so only rspamd binaries with that file open are
# matched, never a system rspamd or an instance with another state dir.
# (The environment cannot serve as a marker: rspamd's setproctitle overwrites it.)
instance_pids() {
  local d exe fd
  for d in /proc/[0-9]*; do
    exe="$(readlink "$d/exe" 2>/dev/null)" || continue
    [[ "${exe##*/}" == rspamd* ]] || continue
    for fd in "$d"/fd/*; do
      if [[ "$(readlink "$fd" 2>/dev/null)" == "$LOG_FILE"* ]]; then
        echo "${d#/proc/}"
        break
      fi
    done
  done
}

# The pid from the pid file is alive and is one of this instance's processes
# (not a stale pid reused by an unrelated process).
ours() {
  alive "$1" || return 1
  local p
  for p in $(instance_pids); do [[ "$p" == "$1" ]] && return 0; done
  return 1
}

# Send $1 to the given pids, wait up to STOP_TIMEOUT for them to exit; prints survivors.
signal_and_wait() {
  local sig=$1 p left
  shift
  for p in "$@"; do kill "-$sig" "$p" 2>/dev/null || true; done
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while :; do
    left=""
    for p in "$@"; do alive "$p" && left+=" $p"; done
    [[ -z "$left" ]] && return 0
    ((SECONDS < deadline)) || break
    sleep 0.2
  done
  echo "$left"
}

do_stop() {
  local pid left stopped=""
  local -a pids
  pid="$(read_pid)"
  if ours "$pid"; then
    stopped=1
    # The main process stops its workers on SIGTERM.
    left="$(signal_and_wait TERM "$pid" $(instance_pids))"
    if [[ -n "$left" ]]; then
      log "still alive after ${STOP_TIMEOUT}s:$left; SIGKILL"
      signal_and_wait KILL $left >/dev/null
    fi
    log "stopped (pid $pid)"
  else
    [[ -n "$pid" ]] && log "pid $pid from the pid file is not ours (stale pid file)"
    pid=""
  fi
  mapfile -t pids < <(instance_pids)
  if ((${#pids[@]})); then
    log "stopping orphaned rspamd processes of this instance: ${pids[*]}"
    left="$(signal_and_wait TERM "${pids[@]}")"
    [[ -z "$left" ]] || signal_and_wait KILL $left >/dev/null
  elif [[ -z "$stopped" ]]; then
    log "not running"
  fi
  rm -f "$PID_FILE"
}

do_status() {
  local pid
  pid="$(read_pid)"
  if ours "$pid" && pinging; then
    echo "running (pid $pid): normal http://$HOST:$PORT controller http://$HOST:$CONTROLLER_PORT"
    return 0
  fi
  if ours "$pid"; then
    echo "pid $pid alive but http://$HOST:$PORT/ping does not answer"
  else
    echo "not running"
  fi
  return 1
}

do_env() {
  cat <<EOF
RSPAMD_HOST=$HOST
RSPAMD_PORT=$PORT
RSPAMD_CONTROLLER_PORT=$CONTROLLER_PORT
RSPAMD_URL=http://$HOST:$PORT
RSPAMD_STATE_DIR=$STATE_DIR
RSPAMD_HS_CACHE_DIR=$HS_CACHE_DIR
RSPAMD_LOG=$LOG_FILE
EOF
}

[[ $# -eq 1 ]] || usage
[[ "$PORT" =~ ^[0-9]+$ && "$CONTROLLER_PORT" =~ ^[0-9]+$ ]] ||
  die "RSPAMD_PORT and RSPAMD_CONTROLLER_PORT must be port numbers (got '$PORT', '$CONTROLLER_PORT')"
case "$1" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  env) do_env ;;
  *) usage ;;
esac
