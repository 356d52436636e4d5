# shellcheck shell=bash
# Helpers for scripts/demo, scripts/test and .ci/run. Source this file; it does nothing by itself.

# have_command NAME: NAME is on PATH, or in an sbin directory (Debian installs ip and iptables there,
# and a non-root PATH often lacks them).
have_command() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local dir
  for dir in /usr/local/sbin /usr/sbin /sbin; do
    [ -x "$dir/$1" ] && return 0
  done
  return 1
}

# ensure_commands COMMAND:PACKAGE[,PACKAGE...] ...
# Installs, with apt-get, the packages of every COMMAND that is missing. It installs only when running
# as root on a machine with apt-get, never asks questions, and returns 1 (after saying what is missing)
# when it cannot install.
ensure_commands() {
  local pair packages=() pkg
  for pair in "$@"; do
    if ! have_command "${pair%%:*}"; then
      IFS=, read -r -a pkg <<<"${pair#*:}"
      packages+=("${pkg[@]}")
    fi
  done
  [ ${#packages[@]} -eq 0 ] && return 0
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  if [ "$(id -u)" -ne 0 ]; then
    echo "note: missing packages: ${packages[*]} (run as root to have them installed)" >&2
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: missing packages: ${packages[*]}; install them with your package manager" >&2
    return 1
  fi
  echo "installing ${packages[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" </dev/null
}

# ensure_rust: cargo is present, and so is the C toolchain rustc links with.
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust (https://rustup.rs) and open a new shell" >&2
    exit 2
  fi
  ensure_commands cc:gcc,libc6-dev || true
}
