# shellcheck shell=bash
# lib/log.sh: log lines on stderr (text, or JSON through `maintenance-shim log`), and no silent failure.
# Sourced by scripts/lib.sh with the others; see there.

PROG=${0##*/}
PROG=${PROG%.sh}

log()  { say info '' "$*"; }
warn() { say warning 'warning: ' "$*"; }
die()  { DIED=${*:-1}; say error 'error: ' "$*"; exit 1; }  # DIED: why, for the rollback's notification
# say LEVEL PREFIX MESSAGE: a log line on stderr; with MAINT_LOG_FORMAT=json one JSON object instead.
say() {
  if [[ ${MAINT_LOG_FORMAT:-} != json ]]; then printf '%s: %s%s\n' "$PROG" "$2" "$3" >&2; return 0; fi
  local m=${3//\\/\\\\}
  m=${m//\"/\\\"}; m=${m//$'\n'/\\n}; m=${m//$'\t'/\\t}; m=${m//[[:cntrl:]]/ }
  local -x TZ=UTC0  # as the shim's own JSON lines (logsetup.py): UTC, milliseconds, Z
  local now=${EPOCHREALTIME/,/.} frac
  frac=${now#*.}
  printf '{"t":"%(%Y-%m-%dT%H:%M:%S)T.%sZ","level":"%s","logger":"%s","message":"%s"}\n' "${now%.*}" \
    "${frac:0:3}" "$1" "$PROG" "$m" >&2
}

# An unexpected failing command (set -e) is named on exit, so no failure is silent.
DIED=
FAILED_AT=
trap 'FAILED_AT="${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND (exit $?)"' ERR
report_unexpected() {
  [[ -z $DIED && -n $FAILED_AT ]] && say error 'error: ' "unexpected failure at $FAILED_AT"
  return 0
}
