# shellcheck shell=bash
# lib/port.sh: port mode: the shim takes the services' own ports.
# Sourced by scripts/lib.sh with the others; see there.


# port_trial: run the shim once on free loopback ports, tagged like the real listeners, and check it,
# so a broken shim or setting fails before any service is stopped.
port_trial() {
  local name port
  local -a specs=() probes=()
  for name in "${SERVICES[@]}"; do
    port=$(free_port)
    specs+=("127.0.0.1:$port=${SERVICE_TAG[$name]}"); probes+=("127.0.0.1:$port")
  done
  shim_launch "${specs[@]}"
  state_set S_SHIM_PID "$SHIM_PID"; state_set S_SHIM_START "$SHIM_START"
  local rc=0
  shim_wait_ready "${probes[@]}" || rc=$?
  shim_stop "$SHIM_PID" "$SHIM_START"
  state_set S_SHIM_PID ''
  ((rc == 0)) || die "trial run of the shim failed: $WHY"
}

# port_takeover NAME...: stop the services (STOP hooks in parallel) and have the shim listen on their
# ports the moment they are free. The shim is launched first and the hooks run once it is loaded and
# retrying the bind (its log says so; or it already serves, or exits, or MAINT_SHIM_START_TIMEOUT passes),
# so its start-up (about a second) is not a window of refused connections; it retries the bind every
# 10 ms for the hooks' time plus MAINT_BIND_RETRY_SECONDS. If it exits anyway (a port still taken), it is
# relaunched the moment every port is free, for up to MAINT_BIND_RETRY_SECONDS after the hooks are done.
port_takeover() {
  local name rc pid hooks_done=0 bind_deadline=0 stop_deadline offset t
  local -A pids=()
  ports_of "$@"
  offset=$(stat -c %s -- "$MAINT_SHIM_LOG" 2>/dev/null) || offset=0
  local retry=$(( MAINT_STOP_TIMEOUT + MAINT_BIND_RETRY_SECONDS ))
  SHIM_BIND_RETRY=$(( retry > 600 ? 600 : retry )) shim_launch "${SPECS[@]}"  # the shim's bound: 600 s
  state_set S_SHIM_PID "$SHIM_PID"; state_set S_SHIM_START "$SHIM_START"
  shim_wait_loaded "$offset"
  for name; do state_set "S_STOPPED_$name" 1; done
  for name; do
    local cmd; cmd=$(svc "$name" STOP)
    [[ -n $cmd ]] || { warn "$name: no MAINT_SERVICE_${name}_STOP hook; waiting for its port to be free"; continue; }
    log "$name: stop: $cmd"
    timeout --kill-after=5 "$MAINT_STOP_TIMEOUT" bash -c "$cmd" 9>&- &
    pids[$name]=$!; CHILDREN+=("$!")
  done
  stop_deadline=$(( $(mono) + (MAINT_STOP_TIMEOUT + MAINT_BIND_RETRY_SECONDS) * 100 ))
  while :; do
    if [[ -n $SHIM_PID ]] && pid_alive "$SHIM_PID"; then
      if shim_answering "${PROBES[@]}"; then  # then one probe says whether it is our shim, as it must be
        WHY=$(shim_check "${PROBES[@]}")
        [[ -z $WHY ]] && break
      else
        WHY="the shim does not answer on ${PROBES[*]} yet"
      fi
    elif [[ -z $SHIM_PID ]] || ! any_port_bound "${PORTS[@]}"; then
      [[ -n $SHIM_PID ]] && { wait "$SHIM_PID" 2>/dev/null || true; WHY="the shim exited: $(shim_last_words)"; }
      SHIM_BIND_RETRY=$MAINT_BIND_RETRY_SECONDS shim_launch "${SPECS[@]}"
      state_set S_SHIM_PID "$SHIM_PID"; state_set S_SHIM_START "$SHIM_START"
    fi
    if ((!hooks_done)); then
      hooks_done=1
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && hooks_done=0; done
      ((hooks_done)) && bind_deadline=$(( $(mono) + MAINT_BIND_RETRY_SECONDS * 100 ))
    fi
    t=$(mono)
    if { ((hooks_done)) && ((t >= bind_deadline)); } || ((t >= stop_deadline)); then
      if any_port_bound "${PORTS[@]}"; then
        die "the services' ports (${PORTS[*]}) are still in use ${MAINT_BIND_RETRY_SECONDS}s after the STOP hooks finished${WHY:+; last attempt: $WHY}"
      fi
      die "the shim did not take over ${SPECS[*]}${WHY:+: $WHY} (log: $MAINT_SHIM_LOG)"
    fi
    sleep 0.01
  done
  FAILED=()
  for name in "${!pids[@]}"; do
    rc=0; wait "${pids[$name]}" || rc=$?
    ((rc == 0)) || FAILED+=("$name (stop exited $rc)")
  done
  CHILDREN=()
  ((${#FAILED[@]} == 0)) || die "stopping ${FAILED[*]} failed"
}
# shim_wait_loaded OFFSET: until the shim just launched has built its app and is retrying the bind (its
# log, past byte OFFSET, says "loaded and retrying": app/server.py), serves (its supervisor wrote the
# state file), or is gone; at most MAINT_SHIM_START_TIMEOUT. Never fails: the takeover loop after it
# handles every case.
shim_wait_loaded() {
  local deadline
  deadline=$(( $(mono) + MAINT_SHIM_START_TIMEOUT * 100 ))
  while pid_alive "$SHIM_PID" && (( $(mono) < deadline )); do
    grep -qF 'loaded and retrying' < <(tail -c "+$(( $1 + 1 ))" -- "$MAINT_SHIM_LOG" 2>/dev/null) && return 0
    if [[ -f $STATE_DIR/shim-serving.json ]]; then
      serving_read
      [[ $SERVING_SUPERVISOR == "$SHIM_PID" ]] && return 0
    fi
    sleep 0.02
  done
  return 0
}

# port_release: stop our shim, returning as soon as its listeners are closed (it may still be exiting).
port_release() {
  local pid start deadline
  pid=$(state_get SHIM_PID)
  start=$(state_get SHIM_START)
  ports_of "${SERVICES[@]}"
  [[ -n $pid ]] && pid=$(shim_target "$pid" "$start")
  if [[ -n $pid ]]; then
    start=$(proc_starttime "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(( $(mono) + MAINT_SHIM_STOP_TIMEOUT * 100 ))
    while any_port_bound "${PORTS[@]}" && pid_alive "$pid"; do
      if (( $(mono) >= deadline )); then shim_stop "$pid" "$start"; break; fi
      sleep 0.005
    done
  fi
}
