# shellcheck shell=bash
# lib/records.sh: what the scripts tell the shim and the operator: run events, the start-up time, the history, notifications.
# Sourced by scripts/lib.sh with the others; see there.


# run_event NAME [STATUS [SERVICE...]]: tell the shim what happens around the training (one JSON line in
# $STATE_DIR/events.jsonl; app/progress/runs.py reads it): start, trainer-exit, services-starting|waiting|ready.
run_event() {
  local name=$1 status=${2:-} line item
  shift $(($# < 2 ? $# : 2))
  local -a quoted=()
  for item; do quoted+=("\"$item\""); done
  local IFS=,
  line=$(printf '{"t":%s,"event":"%s"%s%s,"services":[%s]}' "${EPOCHREALTIME/,/.}" "$name" \
    "${status:+,\"status\":$status}" "${EVENT_SECONDS:+,\"seconds\":$EVENT_SECONDS}" "${quoted[*]}")
  printf '%s\n' "$line" >>"$STATE_DIR/events.jsonl" 2>/dev/null || warn "cannot write $STATE_DIR/events.jsonl"
}

# history_record: append the run that just ended to $STATE_DIR/history.jsonl (maintenance-shim history
# --record); a failure is a warning, never a failed stop.
history_record() {
  local -a shim
  read -r -a shim <<<"$MAINT_SHIM_CMD"
  "${shim[@]}" history --record --state-dir "$STATE_DIR" >/dev/null 2>>"$MAINT_SHIM_LOG" ||
    warn "could not record the run in $STATE_DIR/history.jsonl (see $MAINT_SHIM_LOG)"
}

# notify EVENT [DETAIL]: tell the operator through MAINT_NOTIFY_URLS (`maintenance-shim notify`, app/notify.py);
# bounded, and a failure is a warning, never a failed switch.
notify() {
  [[ -n ${MAINT_NOTIFY_URLS:-} ]] || return 0
  local -a shim
  read -r -a shim <<<"$MAINT_SHIM_CMD"
  timeout 30 "${shim[@]}" notify "$1" --detail "${2:-}" --services "${SERVICES[*]}" --state-dir "$STATE_DIR" \
    9>&- 2>>"$MAINT_SHIM_LOG" || warn "the $1 notification was not sent (see $MAINT_SHIM_LOG)"
}


# startup_record SINCE: the scripts took from SINCE (mono: stop_maintenance.sh's start) until the services
# answered again; kept in $STATE_DIR/startup.json, the shim's first guess at the time from the trainer's
# end to the services' return before any run is in the history (app/runs.py read_startup).
startup_record() {
  printf '{"seconds": %s, "t": %s}\n' "$(since "$1")" "$(now)" >"$STATE_DIR/startup.json" 2>/dev/null ||
    warn "cannot write $STATE_DIR/startup.json"
}
# runtime_preset NAME: the service frees the GPU through a runtime preset, not its own STOP/START hooks.
