#!/usr/bin/env bash
# start_maintenance.sh: put maintenance-shim in place of the inference services.
#
# Starts the shim and checks it (health, a sample 503 with Retry-After, a CORS preflight), then switches
# the traffic (MAINT_SWITCH: a proxy adapter in scripts/proxy/, or port takeover), then drains and stops
# the services. Any failure or interruption puts the live services back and exits non-zero.
# Exit codes: 0 in maintenance; 1 failed (rolled back); 3 already in maintenance; 128+N on signal N.
set -Eeuo pipefail
[[ -n ${TRACE:-} ]] && set -x

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<EOF
usage: ${0##*/} [--env-file PATH] [--node NODE]

Switch the services listed in MAINT_SERVICES over to maintenance-shim (mode MAINT_SWITCH).
With --node NODE (a fleet behind HAProxy, MAINT_SERVICE_<name>_NODES): take only that node out; the
other nodes keep serving, and the shim answers only once every node of a service is out.
The env file is --env-file, else \$MAINT_ENV_FILE, else ./maintenance.env; see docs/switching.md.
EOF
}

PHASE=idle

on_signal() {
  trap '' INT TERM HUP
  kill_children
  log "interrupted by SIG$1"
  case $1 in INT) exit 130 ;; HUP) exit 129 ;; *) exit 143 ;; esac
}

on_exit() {
  local rc=$?
  trap '' INT TERM HUP
  set +e
  events_wait
  ((rc == 0 || rc > 128)) || report_unexpected
  [[ $PHASE == starting && $rc -ne 0 ]] || return 0
  kill_children
  log "rolling back"
  local why=${DIED:-interrupted (exit $rc)}
  [[ $why == 1 ]] && why="exit $rc"
  if rollback_start; then
    log "start failed; rolled back: the live services are serving, the shim is stopped"
    notify rolled-back "start failed: $why; rolled back, the live services are serving"
  else
    notify switch-failed "start failed: $why; the rollback is incomplete: ${PROBLEMS[*]}"
    local IFS=';'
    say error 'error: ' "start failed and the ROLLBACK IS INCOMPLETE: ${PROBLEMS[*]}. State kept in $STATE_DIR; see status_maintenance.sh"
  fi
  exit "$rc"
}

start_proxy() {
  local name
  shim_listen_specs
  [[ $MAINT_SHIM_MANAGED == external ]] || log "starting the shim on ${SPECS[*]}"
  local t0
  t0=$(mono)
  shim_start "${SPECS[@]}"
  OWN_CS=$((OWN_CS + $(mono) - t0))
  log "the shim answers on ${PROBES[*]} (health, 503 with Retry-After${MAINT_CORS_ORIGINS:+, CORS preflight})"
  if proxy_mode; then
    proxy_to_shim
    local proxy where
    proxy=$(proxy_name)
    for name in "${SERVICES[@]}"; do
      where=$(proxy_where "$name")
      if [[ -n $NODE ]]; then
        log "$name: node $NODE is out of $proxy ($where); the other nodes serve it, the shim at ${SHIM_ADDR[$name]:-} once none is left"
      else
        log "$name: $proxy now sends it to the shim at ${SHIM_ADDR[$name]:-} ($where)"
      fi
    done
  fi
  if ((${#SERVICES[@]})); then
    drain "${SERVICES[@]}"
    for name in "${SERVICES[@]}"; do state_set "S_STOPPED_$name" 1; done
    hooks_run STOP "$MAINT_STOP_TIMEOUT" "${SERVICES[@]}" || die "stopping ${FAILED[*]} failed"
  fi
}

start_port() {
  shim_listen_specs
  log "trial run of the shim on spare loopback ports"
  local t0
  t0=$(mono)
  port_trial
  OWN_CS=$((OWN_CS + $(mono) - t0))
  drain "${SERVICES[@]}"
  log "stopping ${SERVICES[*]}; the shim takes ${SPECS[*]} as soon as they are free"
  port_takeover "${SERVICES[@]}"
  log "the shim answers on ${PROBES[*]}"
}

T0=$(mono)  # the switch in, timed from here: the `switched` event; the way back has no drain and no shim
OWN_CS=0    # to start, so their time (the drain, the shim's start-up and checks) is left out of it

# drain NAME...: the DRAIN hooks.
drain() {
  local t0
  t0=$(mono)
  hooks_run DRAIN "$MAINT_DRAIN_TIMEOUT" "$@" || warn "draining did not finish: ${FAILED[*]}; stopping anyway"
  OWN_CS=$((OWN_CS + $(mono) - t0))
}

main() {
  parse_args "$@"
  ((${#ARGS[@]} == 0)) || die "unexpected argument '${ARGS[0]}' (see --help)"
  no_rolling
  load_env
  check_settings
  take_lock
  state_load
  case $(state_get STATE) in
    '') ;;
    active)
      log "already in maintenance since $(date -d "@${S_SINCE:-}" '+%F %T') (MAINT_SWITCH=${S_SWITCH:-}, services: ${S_SERVICES:-}); nothing done. Run stop_maintenance.sh first."
      exit 3 ;;
    starting)
      warn "a previous start did not finish (state in $STATE_DIR); undoing it first"
      (use_recorded_settings && rollback_start) ||
        die "could not undo the previous start; fix it (see status_maintenance.sh) and run stop_maintenance.sh"
      unset "${!S_@}" ;;
    stopping)
      die "a previous stop did not finish; run stop_maintenance.sh to complete it" ;;
    *) die "unknown state '$(state_get STATE)' in $STATE_FILE" ;;
  esac

  PHASE=starting
  trap on_exit EXIT
  trap 'on_signal INT' INT
  trap 'on_signal TERM' TERM
  trap 'on_signal HUP' HUP
  state_set S_STATE starting
  state_set S_SINCE "$(now)"
  state_set S_PID $$
  state_set S_SWITCH "$MAINT_SWITCH"
  state_set S_SERVICES "$MAINT_SERVICES"
  state_set S_LISTEN "$MAINT_LISTEN"
  state_set S_SHIM_MANAGED "$MAINT_SHIM_MANAGED"
  state_set S_ENV_FILE "${MAINT_ENV_FILE:-}"
  state_set S_NODE "$NODE"
  : >"$STATE_DIR/events.jsonl"
  rm -f -- "$STATE_DIR/progress-summary.json" "$STATE_DIR/requests-summary.json"
  run_event start

  case $MAINT_SWITCH in
    port) start_port ;;
    *) start_proxy ;;
  esac

  state_set S_STATE active
  EVENT_SECONDS=$(since "$((T0 + OWN_CS))") run_event switched
  PHASE=finished
  if [[ -n $NODE ]]; then
    log "node $NODE is out (services stopped on it: ${SERVICES[*]}); bring it back with stop_maintenance.sh --node $NODE"
  else
    log "in maintenance (MAINT_SWITCH=$MAINT_SWITCH${SERVICES[*]:+, services stopped: ${SERVICES[*]}}); undo with stop_maintenance.sh"
  fi
  notify start
}

main "$@"
