#!/usr/bin/env bash
# with_maintenance.sh: run CMD (e.g. a training job) with the services in maintenance around it.
#
#   with_maintenance.sh [--env-file PATH] [--node NODE | --rolling] -- CMD [ARG...]
#
# --node NODE: only that node of a fleet is out around CMD (start_maintenance.sh --node NODE). --rolling:
# one node after another, in the order of MAINT_SERVICE_<name>_NODES: take it out, run CMD on it (CMD
# gets MAINT_NODE), bring it back, next; the services stay up on the other nodes throughout. The first
# CMD that fails (or a signal) ends the round once its node is back.
#
# start_maintenance.sh, then CMD with its stdout and stderr also appended to MAINT_TRAIN_LOG (the log the
# shim follows for the live ETA), then stop_maintenance.sh when CMD ends: on success, failure, Ctrl-C or
# SIGTERM. CMD gets MAINT_PROGRESS_FILE (for trainer callbacks), PYTHONUNBUFFERED=1 and, for Rich's live
# bars, TTY_COMPATIBLE=1 and TTY_INTERACTIVE=1, each unless already set, and COLUMNS of at least 200.
# Exits with CMD's status (1 if CMD succeeded but the services could not be brought back; the
# start's status if maintenance could not start, and then CMD is not run).
set -Eeuo pipefail
[[ -n ${TRACE:-} ]] && set -x

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<EOF
usage: ${0##*/} [--env-file PATH] [--node NODE | --rolling] -- CMD [ARG...]

Start maintenance, run CMD with its output also appended to MAINT_TRAIN_LOG (default
\$MAINT_STATE_DIR/train.log, emptied first), stop maintenance when CMD ends, exit with CMD's status.
Ctrl-C, SIGTERM and SIGHUP are passed on to CMD once; the services come back after it exits.
--node NODE: only that node of the fleet is out; --rolling: every node in turn, CMD run once per node
with MAINT_NODE set, the services serving from the other nodes meanwhile (docs/switching.md).
EOF
}

CHILD=
SIGNALLED=
TRAPS=0

# on_signal SIG: pass a signal on to the running child (CMD's process group, or the start/stop script).
on_signal() {
  SIGNALLED=$1
  TRAPS=$((TRAPS + 1))
  [[ -n $CHILD ]] || return 0
  log "SIG$1: passing it on to PID $CHILD"
  if [[ $CHILD == "${CMD_PID:-}" ]]; then kill -s "$1" -- "-$CHILD" 2>/dev/null || kill -s "$1" "$CHILD" 2>/dev/null || true
  else kill -s "$1" "$CHILD" 2>/dev/null || true
  fi
}

# wait_child PID: wait for our child even when our traps interrupt the wait; sets CHILD_RC to its status.
wait_child() {
  local traps rc
  CHILD=$1
  while :; do
    traps=$TRAPS
    CHILD_RC=0
    wait "$CHILD" || CHILD_RC=$?
    # a trapped signal ends `wait` early with status > 128: keep waiting while the child lives
    ((CHILD_RC > 128 && TRAPS != traps)) || break
    kill -0 "$CHILD" 2>/dev/null && continue
    rc=0
    wait "$CHILD" 2>/dev/null || rc=$?
    ((rc == 127)) || CHILD_RC=$rc  # the child's own status, if the interrupted wait had not taken it
    break
  done
  CHILD=
}

# gpu_check: wait until the GPUs' memory is free before CMD, where nvidia-smi can tell (`maintenance-shim gpu`,
# app/gpu.py); memory still held is a warning naming the processes, and CMD runs anyway.
gpu_check() {
  local out rc=0
  ((MAINT_GPU_FREE_TIMEOUT > 0)) || return 0
  out=$(shim_run gpu --wait "$MAINT_GPU_FREE_TIMEOUT" --below "$MAINT_GPU_FREE_MIB" 2>&1 9>&-) || rc=$?
  out=${out//maintenance-shim: /}
  if ((rc == 0)); then log "$out"; else warn "$out; running ${ARGS[0]} anyway"; fi
}

main() {
  parse_args "$@"
  ((${#ARGS[@]})) || die "no command given; usage: ${0##*/} [--env-file PATH] [--node NODE | --rolling] -- CMD [ARG...]"
  [[ -z $ROLLING || -z $NODE ]] || die "--rolling takes every node in turn; give it or --node, not both"
  load_env
  state_dir_init
  if [[ -z $ROLLING ]]; then
    run_once
    return
  fi
  ((${#FLEET[@]})) || die "--rolling: no service has MAINT_SERVICE_<name>_NODES"
  (NODE=${FLEET[0]}; node_scope) || exit 1  # the fleet's requirements, checked before any node goes out
  local node rc=0 done_nodes=0
  log "rolling over ${#FLEET[@]} nodes: ${FLEET[*]}"
  for node in "${FLEET[@]}"; do
    NODE=$node
    run_once || rc=$?
    if ((rc != 0)) || [[ -n $SIGNALLED ]]; then
      log "rolling stopped at node $node (exit $rc${SIGNALLED:+, after SIG$SIGNALLED}); ${done_nodes} of ${#FLEET[@]} nodes done"
      return "$((rc ? rc : 130))"
    fi
    done_nodes=$((done_nodes + 1))
  done
  log "rolling done: CMD ran on ${FLEET[*]}, each back in service"
}

# run_once: start maintenance (of node $NODE when set), run CMD, stop it; CMD's status.
run_once() {
  local -a node_args=()
  [[ -z $NODE ]] || node_args=(--node "$NODE")
  # The log the shim follows and the progress file, as the settings say (`env --shell`: TRAIN_LOG and
  # PROGRESS_FILE are their untagged paths); unset, files in the state dir, emptied for this run, and
  # exported so the shim started below follows them.
  if [[ -n $TRAIN_LOG ]]; then
    mkdir -p -- "$(dirname -- "$TRAIN_LOG")"
  else
    TRAIN_LOG=$STATE_DIR/train.log
    : >"$TRAIN_LOG"
    export MAINT_TRAIN_LOG=$TRAIN_LOG${MAINT_TRAIN_LOG:+,$MAINT_TRAIN_LOG}
  fi
  touch -- "$TRAIN_LOG" || die "MAINT_TRAIN_LOG: cannot write $TRAIN_LOG"
  # Trainer callbacks (maintenance_shim.integrations) write here, and the shim follows it.
  if [[ -z $PROGRESS_FILE ]]; then
    PROGRESS_FILE=$STATE_DIR/progress.json
    rm -f -- "$PROGRESS_FILE"
    export MAINT_PROGRESS_FILE=$PROGRESS_FILE${MAINT_PROGRESS_FILE:+,$MAINT_PROGRESS_FILE}
  fi

  trap 'on_signal INT' INT
  trap 'on_signal TERM' TERM
  trap 'on_signal HUP' HUP

  "$HERE/start_maintenance.sh" "${node_args[@]}" 9>&- &
  wait_child $!
  if ((CHILD_RC != 0)); then
    say error 'error: ' "maintenance did not start (exit $CHILD_RC); not running: ${ARGS[*]}"
    return "$CHILD_RC"
  fi
  [[ -z $SIGNALLED ]] || { log "interrupted by SIG$SIGNALLED before CMD ran; stopping maintenance"; CMD_RC=$((128 + $(kill -l "$SIGNALLED"))); }
  [[ -n $SIGNALLED ]] || gpu_check

  if [[ -z $SIGNALLED ]]; then
    log "running${NODE:+ on node $NODE}: ${ARGS[*]} (output also appended to $TRAIN_LOG)"
    # CMD gets its own session so a Ctrl-C reaches it once, through on_signal(); the default INT/QUIT
    # handling is restored because bash starts background jobs with them ignored. The tee processes
    # ignore the signals so CMD can still write while it shuts down.
    # Unbuffered Python output, and Rich's live progress bars drawn into the pipe: Rich otherwise prints
    # only the final frame when its output is not a terminal (PyTorch Lightning's default bar). Rich 15
    # draws live frames only when it takes the output for a terminal (TTY_COMPATIBLE) that is interactive.
    export PYTHONUNBUFFERED=${PYTHONUNBUFFERED:-1} TTY_COMPATIBLE=${TTY_COMPATIBLE:-1} \
      TTY_INTERACTIVE=${TTY_INTERACTIVE:-1}
    # Rich sizes its frames from COLUMNS (80 without a terminal): at 80 a trainer's bar with loss, rate and ETA
    # columns is cut before its step count (LTX-Video-Trainer's 'Training Step …'). At least 200 columns.
    if [[ -z ${COLUMNS:-} || $COLUMNS == *[!0-9]* ]] || ((COLUMNS < 200)); then COLUMNS=200; fi
    export COLUMNS
    # (env's options before its NAME=VALUE words: after one, the rest is the command.)
    env --default-signal=INT,QUIT ${NODE:+MAINT_NODE="$NODE"} MAINT_PROGRESS_FILE="$PROGRESS_FILE" \
      setsid -- "${ARGS[@]}" <&0 9>&- \
      > >(exec env --ignore-signal=INT,TERM,HUP tee -a -- "$TRAIN_LOG") \
      2> >(exec env --ignore-signal=INT,TERM,HUP tee -a -- "$TRAIN_LOG" >&2) &
    CMD_PID=$!
    wait_child "$CMD_PID"
    CMD_RC=$CHILD_RC
    run_event trainer-exit "$CMD_RC"
    events_wait  # before stop_maintenance.sh writes the next ones
    log "${ARGS[0]} exited with status $CMD_RC${SIGNALLED:+ (after SIG$SIGNALLED)}; stopping maintenance"
  fi

  "$HERE/stop_maintenance.sh" "${node_args[@]}" 9>&- &
  wait_child $!
  if ((CHILD_RC != 0)); then
    say error 'error: ' "stop_maintenance.sh failed (exit $CHILD_RC): the shim is still in place; fix the cause and run it again"
    ((CMD_RC != 0)) || CMD_RC=1
  fi
  return "$CMD_RC"
}

main "$@"
