#!/usr/bin/env bash
# stop_maintenance.sh: put the inference services back in place of maintenance-shim.
#
# Undoes exactly what start_maintenance.sh recorded in the state dir: starts the services, waits until
# their health checks pass, switches the traffic back, then stops the shim (SIGTERM, SIGKILL after
# MAINT_SHIM_STOP_TIMEOUT; only the PID we recorded). If a service does not come up the shim stays in
# place. Exit codes: 0 services live (or nothing to do); 1 failed (shim still serving); 128+N on signal N.
set -Eeuo pipefail
[[ -n ${TRACE:-} ]] && set -x

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<EOF
usage: ${0##*/} [--env-file PATH] [--node NODE]

Bring the services recorded by start_maintenance.sh back and stop the shim; see docs/switching.md.
With --node NODE: bring that node of the fleet back (what start_maintenance.sh --node NODE took out).
EOF
}

PHASE=idle

on_signal() {
  trap '' INT TERM HUP
  kill_children
  log "interrupted by SIG$1"
  case $1 in INT) exit 130 ;; HUP) exit 129 ;; *) exit 143 ;; esac
}

# rollback_stop: the services did not come back; make sure the shim answers for them again.
rollback_stop() {
  local name
  PROBLEMS=()
  if [[ $MAINT_SWITCH == port ]]; then
    if ! pid_is_shim "${S_SHIM_PID:-}" "${S_SHIM_START:-}"; then
      log "stopping the services again and giving their ports back to the shim"
      shim_listen_specs
      (port_takeover "${SERVICES[@]}") || PROBLEMS+=("the shim could not take the ports back")
      state_load
    fi
  elif [[ $(state_get PROXY) == live ]]; then
    log "pointing $(proxy_name) at the shim again"
    (proxy_to_shim) || PROBLEMS+=("$(proxy_name) could not be pointed at the shim again")
    state_load
  fi
  state_set S_STATE active
  ((${#PROBLEMS[@]} == 0))
}

on_exit() {
  local rc=$?
  trap '' INT TERM HUP
  set +e
  events_wait
  ((rc == 0 || rc > 128)) || report_unexpected
  [[ $rc -ne 0 ]] || return 0
  case $PHASE in
    stopping)
      kill_children
      local why=${DIED:-interrupted (exit $rc)}
      [[ $why == 1 ]] && why="exit $rc"
      if rollback_stop; then
        log "stop failed; the shim stays in place (still in maintenance). Fix the cause, then run ${0##*/} again"
        notify rolled-back "stop failed: $why; the shim stays in place"
      else
        notify switch-failed "stop failed: $why; the shim could not be put back: ${PROBLEMS[*]}"
        local IFS=';'
        say error 'error: ' "stop failed and the shim could not be put back: ${PROBLEMS[*]}; see status_maintenance.sh"
      fi ;;
    committed)
      shim_stop_recorded
      state_clear
      log "interrupted after switching back: the live services are serving, the shim is stopped" ;;
  esac
  exit "$rc"
}

stop_proxy() {
  if ((${#SERVICES[@]})); then
    run_event services-starting "" "${SERVICES[@]}"
    hooks_run START "$MAINT_START_TIMEOUT" "${SERVICES[@]}" || die "starting ${FAILED[*]} failed"
    if [[ -n $NODE ]]; then
      log "node $NODE: waiting for ${SERVICES[*]} to pass HAProxy's check of the node (and a HEALTH_URL with {node}, if set)"
    else
      log "waiting up to ${MAINT_HEALTH_TIMEOUT}s for the health checks of ${SERVICES[*]}"
    fi
    run_event services-waiting "" "${SERVICES[@]}"
    services_wait_healthy "$MAINT_HEALTH_TIMEOUT" "${SERVICES[@]}" ||
      die "$(describe_unhealthy) did not pass its health check within ${MAINT_HEALTH_TIMEOUT}s"
  fi
  run_event services-ready "" "${SERVICES[@]}"
  if proxy_mode; then
    proxy_to_live || die "$(proxy_name) did not take the live side back: ${PROXY_OUT##*$'\n'}"
    log "$(proxy_name) sends ${SERVICES[*]} to the services again"
  fi
  [[ -n $NODE ]] || startup_record "$T0"
  PHASE=committed
  shim_stop_recorded
}

stop_port() {
  local name
  log "handing the ports back to ${SERVICES[*]}"
  run_event services-starting "" "${SERVICES[@]}"
  port_release
  for name in "${SERVICES[@]}"; do state_set "S_STARTED_$name" 1; done
  hooks_run START "$MAINT_START_TIMEOUT" "${SERVICES[@]}" || die "starting ${FAILED[*]} failed"
  log "waiting up to ${MAINT_HEALTH_TIMEOUT}s for the health checks of ${SERVICES[*]}"
  services_wait_healthy "$MAINT_HEALTH_TIMEOUT" "${SERVICES[@]}" ||
    die "$(describe_unhealthy) did not pass its health check within ${MAINT_HEALTH_TIMEOUT}s"
  startup_record "$T0"
  run_event services-ready "" "${SERVICES[@]}"
  PHASE=committed
  shim_stop_recorded
}

T0=$(mono)  # the time the scripts take to bring the services back counts from here (startup_record)

main() {
  parse_args "$@"
  ((${#ARGS[@]} == 0)) || die "unexpected argument '${ARGS[0]}' (see --help)"
  no_rolling
  load_env
  take_lock
  state_load
  case $(state_get STATE) in
    '')
      nodes_out
      if [[ -z $NODE ]] && ((${#OUT[@]})); then
        log "no whole-service maintenance recorded; nodes out: ${OUT[*]} (bring each back with ${0##*/} --node NODE)"
      elif [[ -n $NODE ]]; then
        log "node $NODE is not out (nothing recorded in $STATE_DIR); nothing to do"
      else
        log "not in maintenance (nothing recorded in $STATE_DIR); nothing to do"
      fi
      exit 0 ;;
    starting)
      warn "the last start did not finish; undoing it"
      use_recorded_settings
      rollback_start || { local IFS=';'; die "could not undo it: ${PROBLEMS[*]}"; }
      log "done: the live services are serving"
      exit 0 ;;
    active|stopping) ;;
    *) die "unknown state '$(state_get STATE)' in $STATE_FILE" ;;
  esac
  use_recorded_settings

  PHASE=stopping
  trap on_exit EXIT
  trap 'on_signal INT' INT
  trap 'on_signal TERM' TERM
  trap 'on_signal HUP' HUP
  state_set S_STATE stopping

  case $MAINT_SWITCH in
    port) stop_port ;;
    *) stop_proxy ;;
  esac

  state_clear
  PHASE=finished
  history_record
  if [[ -n $NODE ]]; then log "node $NODE is back: ${SERVICES[*]} serving on it again"
  elif ((${#SERVICES[@]})); then log "maintenance over: ${SERVICES[*]} serving again, the shim stopped"
  else log "maintenance over: the shim stopped"
  fi
  print_summary
  notify back
  if proxy_mode && [[ -z $NODE ]] && ! proxy_report_live; then
    say error 'error: ' "the switch back is done, but a service above does not answer through $(proxy_name)"
  fi
}

# print_summary: what the run turned away (the shim wrote its final counts to the state dir as it stopped;
# history_record has added them to the run's record in history.jsonl).
print_summary() {
  local -a form=()
  [[ -f $STATE_DIR/requests-summary.json ]] || return 0
  [[ ${MAINT_LOG_FORMAT:-} == json ]] && form=(--json)
  shim_run summary "${form[@]}" --state-dir "$STATE_DIR" 2>>"$MAINT_SHIM_LOG" || warn "could not print the run summary"
}

main "$@"
