# shellcheck shell=bash
# lib/state.sh: the state dir, its lock and the state file.
# Sourced by scripts/lib.sh with the others; see there.

readonly LOCK_FD=9

state_dir_init() {
  if [[ ! -d $STATE_DIR ]]; then
    (umask 077 && mkdir -p -- "$STATE_DIR") || die "cannot create the state dir $STATE_DIR (set MAINT_STATE_DIR)"
  fi
  [[ -w $STATE_DIR ]] || die "the state dir $STATE_DIR is not writable (set MAINT_STATE_DIR)"
  mkdir -p -- "$STATE_DIR/proxy"
}

# take_lock: one start/stop at a time; fd 9 is closed for every long-lived child so it never holds it.
take_lock() {
  state_dir_init
  exec 9>>"$STATE_DIR/lock"
  if ! flock -w "$MAINT_LOCK_TIMEOUT" "$LOCK_FD"; then
    die "another start or stop is running (lock $STATE_DIR/lock held for ${MAINT_LOCK_TIMEOUT}s); try again when it is done"
  fi
}

# The state file is KEY=value lines (shell-quoted), appended as each step happens; the last one wins.
state_set() { printf '%s=%q\n' "$1" "$2" >>"$STATE_FILE"; printf -v "$1" '%s' "$2"; }
# state_load: the state file's values as S_* variables; state_load_from FILE: another one's (a node's, the last
# run's), the state file staying what it was.
state_load() { state_load_from "$STATE_FILE"; }
state_load_from() {
  if [[ -f $1 ]]; then
    # shellcheck source=/dev/null
    . "$1"
  fi
}
state_get() { local var="S_$1"; printf '%s' "${!var:-}"; }
state_clear() { [[ -f $STATE_FILE ]] && mv -f -- "$STATE_FILE" "$STATE_DIR/state.last"; return 0; }
