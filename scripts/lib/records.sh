# shellcheck shell=bash
# lib/records.sh: what the scripts tell the shim and the operator, each written by a `maintenance-shim`
# subcommand: the run events, the start-up time, the run's history record, the notifications.
# Sourced by scripts/lib.sh with the others; see there.

# run_event NAME [STATUS [SERVICE...]]: tell the shim what happens around the training: one line in
# $STATE_DIR/events.jsonl (`maintenance-shim event`; app/progress/runs.py reads it), timed here: start,
# switched (EVENT_SECONDS: the switch's own time), trainer-exit, services-starting|waiting|ready. The line
# is written in the background, off the switch's path (a process start each); the next event waits for the
# one before, so the lines keep their order, and events_wait (on exit, before the history) for the last.
EVENT_PID=
run_event() {
  local name=$1 status=${2:-}
  shift $(($# < 2 ? $# : 2))
  local -a args=(event "$name" "$@" --at "${EPOCHREALTIME/,/.}" --state-dir "$STATE_DIR")
  [[ -z $status ]] || args+=(--status "$status")
  [[ -z ${EVENT_SECONDS:-} ]] || args+=(--seconds "$EVENT_SECONDS")
  record_write events.jsonl "${args[@]}"
}
# record_write FILE ARGS...: `maintenance-shim ARGS` in the background, once the record before is written.
record_write() {
  events_wait
  { shim_run "${@:2}" 9>&- 2>/dev/null || warn "cannot write $STATE_DIR/$1"; } &
  EVENT_PID=$!
}
events_wait() { [[ -z $EVENT_PID ]] || wait "$EVENT_PID" 2>/dev/null || true; EVENT_PID=; }

# history_record: append the run that just ended to $STATE_DIR/history.jsonl (maintenance-shim history
# --record); a failure is a warning, never a failed stop.
history_record() {
  events_wait
  shim_run history --record --state-dir "$STATE_DIR" >/dev/null 2>>"$MAINT_SHIM_LOG" ||
    warn "could not record the run in $STATE_DIR/history.jsonl (see $MAINT_SHIM_LOG)"
}

# notify EVENT [DETAIL]: tell the operator through MAINT_NOTIFY_URLS (`maintenance-shim notify`, app/notify.py);
# bounded, and a failure is a warning, never a failed switch.
notify() {
  [[ -n ${MAINT_NOTIFY_URLS:-} ]] || return 0
  timeout 30 "${SHIM_CMD[@]}" notify "$1" --detail "${2:-}" --services "${SERVICES[*]}" --state-dir "$STATE_DIR" \
    9>&- 2>>"$MAINT_SHIM_LOG" || warn "the $1 notification was not sent (see $MAINT_SHIM_LOG)"
}

# startup_record SINCE: the scripts took from SINCE (mono: stop_maintenance.sh's start) until the services
# answered again; kept in $STATE_DIR/startup.json (`maintenance-shim startup`), the shim's first guess at
# the time from the trainer's end to the services' return before any run is in the history
# (app/progress/runs.py read_startup). In the background, as the events.
startup_record() { record_write startup.json startup --seconds "$(since "$1")" --state-dir "$STATE_DIR"; }
