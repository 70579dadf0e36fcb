# shellcheck shell=bash
# lib/proc.sh: time, processes and the hook children.
# Sourced by scripts/lib.sh with the others; see there.

words() { local IFS=$' \t\n,'; read -r -a WORDS <<<"$*" || true; }  # split on blanks and commas
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
now() { printf '%(%s)T' -1; }
mono() { local up; read -r up _ </proc/uptime; printf '%s' "${up/./}"; }  # centiseconds, monotonic
since() { local cs=$(( $(mono) - $1 )); printf '%d.%02d' "$((cs / 100))" "$((cs % 100))"; }

# ---- processes -----------------------------------------------------------------------------------

proc_starttime() {  # PID -> start time in clock ticks since boot (field 22 of /proc/PID/stat)
  local stat fields
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  read -r -a fields <<<"${stat##*) }"
  printf '%s' "${fields[19]}"
}
pid_alive() {  # alive and not a zombie
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z && ${stat:0:1} != X ]]
}
# pid_is_shim PID STARTTIME: the PID is alive, started when we recorded, and runs `... serve ...`.
pid_is_shim() {
  local cmdline
  is_uint "${1:-}" && pid_alive "$1" || return 1
  [[ $(proc_starttime "$1") == "$2" ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ " $cmdline " == *" serve "* ]]
}

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
