# shellcheck shell=bash
# lib/proc.sh: time, processes and the hook children.
# Sourced by scripts/lib.sh with the others; see there.

is_uint() { [[ -n ${1:-} && $1 != *[!0-9]* ]]; }
now() { printf '%(%s)T' -1; }
mono() { local up; read -r up _ </proc/uptime; printf '%s' "${up/./}"; }  # centiseconds, monotonic
seconds_of() { printf '%d.%02d' "$(($1 / 100))" "$(($1 % 100))"; }  # centiseconds as seconds, e.g. 1.25
since() { seconds_of "$(( $(mono) - $1 ))"; }  # since CS (from mono), in seconds

# ---- processes -----------------------------------------------------------------------------------

# proc_starttime PID: its start time (clock ticks since boot), as the shim's supervisor records its server's
# (`maintenance-shim pid`, app/supervise.py); fails when the process is gone.
proc_starttime() { shim_run pid "$1" 9>&- 2>/dev/null; }
pid_alive() {  # alive and not a zombie (polled every 10 ms while the shim takes the ports: no process start)
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z && ${stat:0:1} != X ]]
}
# pid_is_shim PID STARTTIME: the PID is alive, started when we recorded, and runs `... serve ...`.
pid_is_shim() { is_uint "${1:-}" && [[ -n ${2:-} ]] && shim_run pid "$1" --start "$2" 9>&- 2>/dev/null; }

# run_bounded SECONDS CMD: run a hook command with bash -c, bounded, interruptible by our traps.
declare -a CHILDREN=()
run_bounded() {
  local seconds=$1 cmd=$2 pid rc=0
  timeout --kill-after=5 "$seconds" bash -c "$cmd" 9>&- &
  pid=$!
  CHILDREN+=("$pid")
  wait "$pid" || rc=$?
  return "$rc"
}
kill_children() {  # our hook processes (recorded PIDs), on interruption
  local pid
  for pid in "${CHILDREN[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  CHILDREN=()
}
