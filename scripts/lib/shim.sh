# shellcheck shell=bash
# lib/shim.sh: the shim process: launch, check, who serves, stop.
# Sourced by scripts/lib.sh with the others; see there.

SHIM_PID=
SHIM_START=
SHIM_BIND_RETRY=0
# shim_launch LISTEN...: start the shim in its own session (a Ctrl-C at the operator's terminal must not
# reach it), stdout/stderr appended to MAINT_SHIM_LOG; record its PID and start time. The shim gets
# MAINT_BIND_RETRY_SECONDS=$SHIM_BIND_RETRY (0 unless taking over ports).
shim_launch() {
  local -a args=(serve)
  local spec
  command -v -- "${SHIM_CMD[0]}" >/dev/null ||
    die "MAINT_SHIM_CMD: '${SHIM_CMD[0]}' is not an executable command (PATH=$PATH)"
  for spec; do args+=(--listen "$spec"); done
  [[ -n ${MAINT_ENV_FILE:-} ]] && args+=(--env-file "$MAINT_ENV_FILE")
  printf '\n==== %s %s: %s %s\n' "$(date '+%F %T')" "$PROG" "$MAINT_SHIM_CMD" "${args[*]}" >>"$MAINT_SHIM_LOG"
  env MAINT_BIND_RETRY_SECONDS="${SHIM_BIND_RETRY:-0}" \
    nice -n "$MAINT_SHIM_NICE" setsid "${SHIM_CMD[@]}" "${args[@]}" </dev/null >>"$MAINT_SHIM_LOG" 2>&1 9>&- &
  SHIM_PID=$!
  # Recorded at once: a Ctrl-C while its start time is read (a process start) still finds it to stop.
  state_set S_SHIM_PID "$SHIM_PID"; state_set S_SHIM_START ''
  SHIM_START=$(proc_starttime "$SHIM_PID") || SHIM_START=
}

shim_last_words() {  # the shim's last log line, for error messages
  local line
  line=$(grep -v '^\s*$' -- "$MAINT_SHIM_LOG" 2>/dev/null | tail -n 1) || true
  printf '%s' "${line:-no output}"
}

# shim_wait_ready ADDR...: wait until every address passes shim_check (one `maintenance-shim probe --wait`,
# watching the PID we launched). Returns 0 when ready, 2 when that process exited (it could not bind, or a
# bad setting), 1 on timeout; WHY says more.
shim_wait_ready() {
  local rc=0
  local -a watch=()
  [[ -z $SHIM_PID ]] || watch=(--pid "$SHIM_PID")
  WHY=$(shim_probe --wait "$MAINT_SHIM_START_TIMEOUT" "${watch[@]}" -- "$@") || rc=$?
  case $rc in
    0) WHY= ;;
    3) wait "$SHIM_PID" 2>/dev/null || true
       WHY="the shim exited during start-up: $(shim_last_words) (log: $MAINT_SHIM_LOG)"; return 2 ;;
    *) WHY="the shim is not ready after ${MAINT_SHIM_START_TIMEOUT}s: ${WHY:-maintenance-shim probe failed (exit $rc)}"
       return 1 ;;
  esac
}

# shim_start LISTEN...: launch (unless external) and verify, or die. Records the PID in the state.
shim_start() {
  if [[ $MAINT_SHIM_MANAGED == external ]]; then
    SHIM_PID=
    log "checking the externally managed shim on ${PROBES[*]}"
  else
    shim_launch "$@"
    state_set S_SHIM_PID "$SHIM_PID"; state_set S_SHIM_START "$SHIM_START"
  fi
  shim_wait_ready "${PROBES[@]}" || die "$WHY"
}

# shim_stop_recorded: stop the shim recorded in the state (never an external one).
shim_stop_recorded() {
  [[ $(state_get SHIM_MANAGED) == external ]] && return 0
  local pid
  pid=$(state_get SHIM_PID)
  shim_stop "$pid" "${S_SHIM_START:-}"
  state_set S_SHIM_PID ''
}

# serving_read: what the shim's supervisor last wrote to $STATE_DIR/shim-serving.json (app/supervise.py):
# SERVING_SUPERVISOR, SERVING_PID, SERVING_START, SERVING_RESTARTS, SERVING_LAST_EXIT and SERVING_LAST_AT
# ("" when absent).
serving_read() {
  SERVING_SUPERVISOR='' SERVING_PID='' SERVING_START='' SERVING_RESTARTS=0 SERVING_LAST_EXIT='' SERVING_LAST_AT=
  [[ -r $STATE_DIR/shim-serving.json ]] || return 0  # never written (--no-supervise), or already removed
  eval "$(shim_run serving --shell --state-dir "$STATE_DIR" 9>&- 2>/dev/null)" || true
}

# serving_summary SUPERVISOR_PID: what status_maintenance.sh says about the server the supervisor keeps.
serving_summary() {
  serving_read
  [[ $SERVING_SUPERVISOR == "$1" ]] || return 0
  if ((SERVING_RESTARTS)); then
    printf 'serving in PID %s; restarted %s time(s), last at %s after the server %s\n' "$SERVING_PID" \
      "$SERVING_RESTARTS" "$SERVING_LAST_AT" "$SERVING_LAST_EXIT"
  else
    printf 'serving in PID %s; never restarted\n' "$SERVING_PID"
  fi
}

# shim_target PID STARTTIME: the process to signal to stop our shim: the recorded supervisor while it
# lives, else the server it forked if that still serves on (its supervisor was killed); "" for neither.
shim_target() {
  if pid_is_shim "$1" "$2"; then printf '%s' "$1"; return; fi
  serving_read
  if [[ -n $SERVING_PID && $SERVING_SUPERVISOR == "$1" ]] && pid_is_shim "$SERVING_PID" "$SERVING_START"; then
    printf '%s' "$SERVING_PID"
  fi
}

# shim_stop PID STARTTIME: SIGTERM, wait, then SIGKILL with a warning; only if the PID is ours. A server
# left behind by a killed supervisor is stopped the same way.
shim_stop() {
  local pid=$1 start=$2 deadline
  [[ -n $pid ]] || return 0
  if [[ -z $start && $pid == "${SHIM_PID:-}" ]] && pid_alive "$pid"; then
    :  # the child this script launched, its start time not read yet: unreaped, its PID cannot be another's
  else
    pid=$(shim_target "$1" "$2")
  fi
  if [[ -z $pid ]]; then
    pid_alive "$1" && warn "PID $1 is no longer our shim (start time or command line differ); not signalling it"
    return 0
  fi
  [[ $pid == "$1" ]] || log "the shim's supervisor (PID $1) is gone; stopping the server it left running (PID $pid)"
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$(( $(mono) + MAINT_SHIM_STOP_TIMEOUT * 100 ))
  while pid_alive "$pid"; do
    if (( $(mono) >= deadline )); then
      warn "the shim (PID $pid) did not exit ${MAINT_SHIM_STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
      serving_read
      kill -KILL "$pid" 2>/dev/null || true
      [[ $SERVING_SUPERVISOR == "$pid" && -n $SERVING_PID ]] && pid_is_shim "$SERVING_PID" "$SERVING_START" &&
        kill -KILL "$SERVING_PID" 2>/dev/null
      sleep 0.2
      break
    fi
    sleep 0.05
  done
  wait "$pid" 2>/dev/null || true
}

# shim_listen_specs: the --listen values for the shim: MAINT_LISTEN, or in port mode the services' own
# addresses, each tagged with its service (and kind).
shim_listen_specs() { SPECS=("${SHIM_SPECS[@]}"); PROBES=("${SHIM_PROBES[@]}"); }
