# Shell helpers shared by scripts/rspamd.sh and scripts/redis.sh, which run a Debian server as a
# process of this project. Sourced, not run; the caller sets NAME (for messages), HOST and PID_FILE.

log() { printf '%s: %s\n' "$NAME" "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# Something accepts TCP connections on $HOST:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

read_pid() {
  local pid=""
  [[ -s "$PID_FILE" ]] && pid="$(tr -dc '0-9' <"$PID_FILE")"
  printf '%s' "$pid"
}

# A process that exists and is not a zombie (a killed main process whose
# parent is a non-reaping PID 1, as in some containers, stays a zombie).
alive() {
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0 # no procfs: trust kill -0
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

# apt_install PACKAGE BINARY: install the Debian package when BINARY is missing (as root only).
apt_install() {
  local package=$1 binary=$2
  command -v "$binary" >/dev/null 2>&1 && return 0
  [[ "$(id -u)" -eq 0 ]] ||
    die "$binary is not installed and we are not root: run as root once, or: sudo apt-get install -y --no-install-recommends $package"
  command -v apt-get >/dev/null 2>&1 || die "$binary is not installed and apt-get is missing: install $package by hand"
  log "installing $package with apt-get"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package"
  command -v "$binary" >/dev/null 2>&1 || die "apt-get finished but there is no $binary binary"
}
