# shellcheck shell=bash
# lib/rollback.sh: undoing a start, and the settings a start recorded.
# Sourced by scripts/lib.sh with the others; see there.

# rollback_start: undo what the state file says a start did (services back, proxy back, shim gone).
# Best effort, never exits; returns 1 and fills PROBLEMS when something could not be undone.
rollback_start() {
  local name keep_shim=0
  local -a stopped=()
  PROBLEMS=()
  for name in "${SERVICES[@]}"; do [[ $(state_get "STOPPED_$name") == 1 ]] && stopped+=("$name"); done
  if [[ $MAINT_SWITCH == port ]]; then
    (shim_stop_recorded) || PROBLEMS+=("could not stop the shim")
  fi
  if ((${#stopped[@]})); then
    log "starting the stopped services again: ${stopped[*]}"
    (hooks_run START "$MAINT_START_TIMEOUT" "${stopped[@]}") || PROBLEMS+=("START hook failed for ${stopped[*]}")
    if services_wait_healthy "$MAINT_HEALTH_TIMEOUT" "${stopped[@]}"; then
      for name in "${stopped[@]}"; do state_set "S_STOPPED_$name" 0; done
    else
      PROBLEMS+=("not healthy after ${MAINT_HEALTH_TIMEOUT}s: $(describe_unhealthy)")
    fi
  fi
  if [[ $(state_get PROXY) == shim ]]; then
    (proxy_restore_files) || PROBLEMS+=("could not restore the live includes from $STATE_DIR/proxy")
    if [[ $(state_get RELOADED) == 1 ]]; then
      if proxy_cmd test && proxy_cmd reload; then
        proxy_settle live
        state_set S_RELOADED 0
      else
        keep_shim=1
        PROBLEMS+=("$(proxy_name) still runs the shim's config; its test or reload failed: ${PROXY_OUT##*$'\n'}")
      fi
    fi
  fi
  if ((!keep_shim)) && [[ $MAINT_SWITCH != port ]]; then
    (shim_stop_recorded) || PROBLEMS+=("could not stop the shim")
  fi
  if ((${#PROBLEMS[@]})); then return 1; fi
  for name in "${SERVICES[@]}"; do rm -f -- "$STATE_DIR/proxy/$name.live"; done
  state_clear
}

# use_recorded_settings: stop and rollback undo exactly what start did, whatever the env file says now: the
# recorded values go into the environment (which wins over the file) and the settings are resolved again.
use_recorded_settings() {
  [[ -n ${S_SWITCH:-} ]] && export MAINT_SWITCH=$S_SWITCH
  [[ -n ${S_SERVICES+x} ]] && export MAINT_SERVICES=$S_SERVICES
  [[ -n ${S_LISTEN:-} ]] && export MAINT_LISTEN=$S_LISTEN
  [[ -n ${S_SHIM_MANAGED:-} ]] && export MAINT_SHIM_MANAGED=$S_SHIM_MANAGED
  load_env
  check_settings
}
