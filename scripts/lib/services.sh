# shellcheck shell=bash
# lib/services.sh: the services: their hooks, their health, their runtime presets.
# Sourced by scripts/lib.sh with the others; see there.

# hooks_run KIND TIMEOUT NAME...: run MAINT_SERVICE_<NAME>_<KIND> for every NAME that has one, in
# parallel, each bounded; FAILED lists the services whose hook failed or timed out. A service with a
# runtime preset (MAINT_SERVICE_<NAME>_RUNTIME) is put to sleep (STOP) and woken until ready (START) by it.
hooks_run() {
  local kind=$1 seconds=$2 name rc
  shift 2
  local -A pids=()
  FAILED=()
  for name; do
    local cmd; cmd=$(svc "$name" "$kind")
    if runtime_preset "$name"; then
      case $kind in
        STOP) cmd=$(runtime_cmd sleep "$name") ;;
        START) cmd=$(runtime_cmd wake "$name") ;;
      esac
    fi
    [[ -n $cmd ]] || continue
    log "$name: ${kind,,}: $cmd"
    timeout --kill-after=5 "$seconds" bash -c "$cmd" 9>&- &
    pids[$name]=$!
    CHILDREN+=("$!")
  done
  for name in "${!pids[@]}"; do
    rc=0; wait "${pids[$name]}" || rc=$?
    if ((rc == 124 || rc == 137)); then FAILED+=("$name (${kind,,} timed out after ${seconds}s)")
    elif ((rc != 0)); then FAILED+=("$name (${kind,,} exited $rc)")
    fi
  done
  CHILDREN=()
  ((${#FAILED[@]} == 0))
}

# services_wait_healthy TIMEOUT NAME...: poll every service's HEALTH_URL (2xx), else a TCP connect to
# its LISTEN address, until all pass; UNHEALTHY lists the ones that did not.
services_wait_healthy() {
  local seconds=$1 name url deadline
  shift
  local -a pending=("$@") next
  deadline=$(( $(mono) + seconds * 100 ))
  while :; do
    next=()
    for name in "${pending[@]}"; do
      url=$(svc "$name" HEALTH_URL)
      if runtime_preset "$name"; then  # the preset's own readiness check (a completion answered, ...)
        bash -c "$(runtime_cmd ready "$name")" >/dev/null 2>&1 9>&- || next+=("$name")
      elif [[ -n $NODE ]]; then
        # One node of a fleet: its own URL ({node} in HEALTH_URL), else HAProxy's check of the server
        # decides (proxy_test waits for it); the service's URL would answer from the other nodes.
        [[ $url == *'{node}'* ]] || continue
        [[ $(http_code "${url//\{node\}/$NODE}") == 2* ]] || next+=("$name")
      elif [[ -n $url ]]; then
        [[ $(http_code "$url") == 2* ]] || next+=("$name")
      elif [[ -n ${SERVICE_PROBE[$name]:-} ]]; then
        port_listening "${SERVICE_PROBE[$name]}" || next+=("$name")
      fi
    done
    pending=("${next[@]}")
    ((${#pending[@]} == 0)) && { UNHEALTHY=(); return 0; }
    if (( $(mono) >= deadline )); then UNHEALTHY=("${pending[@]}"); return 1; fi
    sleep 0.2
  done
}
# runtime_preset NAME: the service frees the GPU through a runtime preset, not its own STOP/START hooks.
runtime_preset() { local var="MAINT_SERVICE_${1}_RUNTIME"; [[ ${!var:-command} != command ]]; }
# runtime_cmd sleep|wake|ready NAME: the command (for bash -c) that has the preset do it (app/runtimes/).
runtime_cmd() {
  printf '%q ' "${SHIM_CMD[@]}" runtime "$1" --service "$2"
  [[ -z ${MAINT_ENV_FILE:-} ]] || printf -- '--env-file %q' "$MAINT_ENV_FILE"
}
describe_unhealthy() {
  local name url out=() said
  for name in "${UNHEALTHY[@]}"; do
    url=$(svc "$name" HEALTH_URL)
    if runtime_preset "$name"; then
      said=$(bash -c "$(runtime_cmd ready "$name")" 2>&1 9>&-)
      local runtime="MAINT_SERVICE_${name}_RUNTIME" runtime_url="MAINT_SERVICE_${name}_RUNTIME_URL"
      out+=("$name (${!runtime:-} at ${!runtime_url:-}: $said)")
      continue
    fi
    out+=("$name (${url:-a TCP connect to $(svc "$name" LISTEN)})")
  done
  local IFS=,
  printf '%s' "${out[*]}"
}
