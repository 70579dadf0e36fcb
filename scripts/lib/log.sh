# shellcheck shell=bash
# lib/log.sh: log lines on stderr (text, or JSON through `maintenance-shim log`), and no silent failure.
# Sourced by scripts/lib.sh with the others; see there.

PROG=${0##*/}
PROG=${PROG%.sh}

log()  { say info '' "$*"; }
warn() { say warning 'warning: ' "$*"; }
die()  { DIED=${*:-1}; say error 'error: ' "$*"; exit 1; }  # DIED: why, for the rollback's notification
# say LEVEL PREFIX MESSAGE: a log line on stderr; with MAINT_LOG_FORMAT=json one JSON object instead, as
# the shim writes its own (`maintenance-shim log`, app/scriptio.py: UTC, milliseconds, Z), timed here.
say() {
  if [[ ${MAINT_LOG_FORMAT:-} == json ]] && say_json "$1" "$3"; then return 0; fi
  printf '%s: %s%s\n' "$PROG" "$2" "$3" >&2
}
say_json() {  # LEVEL MESSAGE; fails (the caller writes a text line) when the shim's command cannot
  [[ -z ${SAY_BUSY:-} ]] || return 1  # a die while finding the command: that line goes out as text
  local SAY_BUSY=1 at=${EPOCHREALTIME/,/.}
  ((${#SETTINGS_CMD[@]})) || settings_command
  "${SETTINGS_CMD[@]}" log --logger "$PROG" --at "$at" "$1" -- "$2" 9>&-
}

# indent PREFIX: copy stdin to stdout, each line after PREFIX.
indent() { local line; while IFS= read -r line || [[ -n $line ]]; do printf '%s%s\n' "$1" "$line"; done; }

# An unexpected failing command (set -e) is named on exit, so no failure is silent.
DIED=
FAILED_AT=
trap 'FAILED_AT="${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND (exit $?)"' ERR
report_unexpected() {
  [[ -z $DIED && -n $FAILED_AT ]] && say error 'error: ' "unexpected failure at $FAILED_AT"
  return 0
}
