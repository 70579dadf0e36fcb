#!/usr/bin/env bash
# status_maintenance.sh: say what is switched where, from the state dir (read-only; takes no lock).
# Exit codes: 0 in maintenance and the shim answers; 1 something needs attention (a start or stop did not
# finish, the shim is gone); 3 not in maintenance.
set -Eeuo pipefail
[[ -n ${TRACE:-} ]] && set -x

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<EOF
usage: ${0##*/} [--env-file PATH] [--node NODE]

Print the maintenance state recorded in MAINT_STATE_DIR: mode, shim PID and health, and for every
service where its traffic goes; the nodes of a fleet that are out (--node NODE: that node's state).
See docs/switching.md.
EOF
}

main() {
  local state name pid rc=0 addr
  parse_args "$@"
  ((${#ARGS[@]} == 0)) || die "unexpected argument '${ARGS[0]}' (see --help)"
  load_env
  state_load
  state=$(state_get STATE)
  nodes_out
  if [[ -z $NODE ]] && ((${#OUT[@]})); then
    # A fleet: the nodes out now, each with what its own state says (status_maintenance.sh --node NODE).
    for name in "${OUT[@]}"; do
      state_load_from "$MAINT_STATE_DIR/nodes/$name/state"
      printf 'node out: %s, %s since %s (%s)\n' "$name" "$(state_get STATE)" \
        "$(date -d "@$(state_get SINCE)" '+%F %T')" "stop_maintenance.sh --node $name brings it back"
    done
    unset "${!S_@}"
    state_load
  fi
  if [[ -z $state ]]; then
    if ((${#OUT[@]})) && [[ -z $NODE ]]; then
      printf 'no whole-service maintenance (state dir %s); %s node(s) out\n' "$STATE_DIR" "${#OUT[@]}"
      exit 0
    fi
    printf 'not in maintenance (state dir %s)\n' "$STATE_DIR"
    if proxy_mode; then
      proxy_load
      proxy_report_live || { printf 'warning:  a service does not answer through %s (see above)\n' "$(proxy_name)"; exit 1; }
    fi
    if [[ -f $STATE_DIR/state.last ]]; then
      state_load_from "$STATE_DIR/state.last"
      printf 'last maintenance began %s (MAINT_SWITCH=%s)\n' "$(date -d "@$(state_get SINCE)" '+%F %T')" "$(state_get SWITCH)"
    fi
    exit 3
  fi
  use_recorded_settings
  printf 'state:    %s since %s (MAINT_SWITCH=%s, by PID %s)\n' "$state" \
    "$(date -d "@$(state_get SINCE)" '+%F %T')" "$MAINT_SWITCH" "$(state_get PID)"
  [[ $state == active ]] || { printf 'warning:  a %s did not finish; run stop_maintenance.sh to finish or undo it\n' "${state%ing}"; rc=1; }

  shim_listen_specs
  pid=$(state_get SHIM_PID)
  if [[ $MAINT_SHIM_MANAGED == external ]]; then
    printf 'shim:     managed outside these scripts\n'
  elif [[ -n $pid ]] && pid_is_shim "$pid" "$(state_get SHIM_START)"; then
    printf 'shim:     PID %s, running (%s)\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    serving_summary "$pid" | indent 'shim:     '
  elif [[ -n $pid ]] && [[ -n $(shim_target "$pid" "$(state_get SHIM_START)") ]]; then
    serving_read
    printf 'shim:     the supervisor (PID %s) is gone; its server (PID %s) serves on, unsupervised (a crash now is not restarted)\n' \
      "$pid" "$SERVING_PID"
    rc=1
  else
    printf 'shim:     not running%s (log: %s)\n' "${pid:+ (recorded PID $pid is gone)}" "$MAINT_SHIM_LOG"
    rc=1
  fi
  for addr in "${PROBES[@]}"; do
    if [[ $(http_code "http://$addr/_maintenance/health") == 200 ]]; then
      printf 'listen:   %s answers\n' "$addr"
    else
      printf 'listen:   %s does NOT answer\n' "$addr"; rc=1
    fi
  done

  for name in "${SERVICES[@]}"; do
    case $MAINT_SWITCH in
      port)
        printf '%-9s port %s taken over by the shim\n' "$name:" "$(svc "$name" LISTEN)" ;;
      none)
        printf '%-9s no traffic switch\n' "$name:" ;;
      *)  # a proxy: its adapter says where the switch lives
        proxy_status "$name" ;;
    esac
    [[ $(state_get "STOPPED_$name") == 1 ]] && printf '          service stopped by start_maintenance.sh\n'
  done

  if ((${#PROBES[@]})) && [[ $(http_code "http://${PROBES[0]}/_maintenance/status") == 200 ]]; then
    shim_run status --url "http://${PROBES[0]}" 2>/dev/null | indent 'shim:     ' || true
  fi
  exit "$rc"
}

main "$@"
