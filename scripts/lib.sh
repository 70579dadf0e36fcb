# shellcheck shell=bash
# lib.sh: settings, state, shim and proxy functions shared by the maintenance scripts.
# Sourced by start_maintenance.sh, stop_maintenance.sh, status_maintenance.sh and with_maintenance.sh;
# every setting is documented in deploy/maintenance.env.example and docs/switching.md.

LIB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

readonly LOCK_FD=9
PROG=${0##*/}
PROG=${PROG%.sh}
ENV_FILE_ARG=
ARGS=()
NODE=     # --node NODE: one node of a fleet (MAINT_SERVICE_<name>_NODES), see node_scope
ROLLING=  # --rolling: with_maintenance.sh trains on every node in turn

log()  { say info '' "$*"; }
warn() { say warning 'warning: ' "$*"; }
die()  { DIED=${*:-1}; say error 'error: ' "$*"; exit 1; }  # DIED: why, for the rollback's notification
# say LEVEL PREFIX MESSAGE: a log line on stderr; with MAINT_LOG_FORMAT=json one JSON object instead.
say() {
  if [[ ${MAINT_LOG_FORMAT:-} != json ]]; then printf '%s: %s%s\n' "$PROG" "$2" "$3" >&2; return 0; fi
  local m=${3//\\/\\\\}
  m=${m//\"/\\\"}; m=${m//$'\n'/\\n}; m=${m//$'\t'/\\t}; m=${m//[[:cntrl:]]/ }
  local -x TZ=UTC0  # as the shim's own JSON lines (logsetup.py): UTC, milliseconds, Z
  local now=${EPOCHREALTIME/,/.} frac
  frac=${now#*.}
  printf '{"t":"%(%Y-%m-%dT%H:%M:%S)T.%sZ","level":"%s","logger":"%s","message":"%s"}\n' "${now%.*}" \
    "${frac:0:3}" "$1" "$PROG" "$m" >&2
}

# An unexpected failing command (set -e) is named on exit, so no failure is silent.
DIED=
FAILED_AT=
trap 'FAILED_AT="${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND (exit $?)"' ERR
report_unexpected() {
  [[ -z $DIED && -n $FAILED_AT ]] && say error 'error: ' "unexpected failure at $FAILED_AT"
  return 0
}

# parse_args ARGS...: --env-file PATH, --node NODE, --rolling and -h/--help; everything else lands in ARGS.
parse_args() {
  while (($#)); do
    case $1 in
      --env-file) (($# >= 2)) || die "--env-file needs a path"; ENV_FILE_ARG=$2; shift 2 ;;
      --env-file=*) ENV_FILE_ARG=${1#*=}; shift ;;
      --node) (($# >= 2)) || die "--node needs a node name"; NODE=$2; shift 2 ;;
      --node=*) NODE=${1#*=}; shift ;;
      --rolling) ROLLING=1; shift ;;
      -h|--help) usage; exit 0 ;;
      --) shift; ARGS+=("$@"); return 0 ;;
      -*) die "unknown option $1 (see --help)" ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
}

# load_env: every setting, read, validated and resolved by the shim's own schema (`maintenance-shim env
# --shell`, app/settings/scripts.py; the one reference is docs/settings.md): the env file (--env-file, else
# MAINT_ENV_FILE, else ./maintenance.env when present) under the environment, defaults filled in, each
# exported, and the services as SERVICES and SERVICE_TAG. Nothing is parsed or checked here: a bad
# setting stops with the shim's one line naming it.
load_env() {
  local file=${ENV_FILE_ARG:-${MAINT_ENV_FILE:-}} out
  local -a args=(env --shell)
  [[ -n $file ]] && args+=(--env-file "$file")
  settings_command
  out=$("${SETTINGS_CMD[@]}" "${args[@]}" 9>&-) || die "the settings are not valid (see above)"
  eval "$out"
  # No MAINT_SHIM_CMD in the env file: the shim is the one that just read the settings.
  [[ -n $MAINT_SHIM_CMD ]] || MAINT_SHIM_CMD="${SETTINGS_CMD[*]}"
  export MAINT_SHIM_CMD
  STATE_DIR=$MAINT_STATE_DIR
  STATE_FILE=$STATE_DIR/state
  [[ -z $NODE ]] || node_scope
}

# no_rolling: start and stop take one node (--node) or all; the round over every node is with_maintenance.sh's.
no_rolling() { [[ -z $ROLLING ]] || die "--rolling is with_maintenance.sh's (it takes each node out in turn)"; }

# node_scope: --node NODE takes one node of a fleet out (or back), not whole services: only the services
# whose MAINT_SERVICE_<name>_NODES list NODE, each at its HAProxy server <backend>/NODE, while the other
# nodes keep serving (HAProxy uses the shim, a backup server, only when none is left). The node has a
# state dir of its own, $MAINT_STATE_DIR/nodes/NODE, so several nodes can be out at once; hooks see
# MAINT_NODE. The shim stands as the backup all the time (MAINT_SHIM_MANAGED=external): nodes come and
# go around it.
node_scope() {
  local name node
  local -a on=()
  [[ $MAINT_SWITCH == haproxy ]] ||
    die "--node needs MAINT_SWITCH=haproxy (a balancer in front of the nodes), not '$MAINT_SWITCH'"
  [[ $MAINT_SHIM_MANAGED == external ]] ||
    die "--node needs MAINT_SHIM_MANAGED=external: in a fleet the shim runs all the time as HAProxy's backup server (docs/switching.md)"
  for name in "${SERVICES[@]}"; do
    words "$(svc "$name" NODES)"
    for node in "${WORDS[@]}"; do [[ $node == "$NODE" ]] && on+=("$name"); done
  done
  # Only a listed node (its name checked with the settings) gets a state dir: "--node ../x" stops here.
  ((${#on[@]})) || die "--node $NODE: no service lists it in MAINT_SERVICE_<name>_NODES (services: ${SERVICES[*]})"
  SERVICES=("${on[@]}")
  export MAINT_NODE=$NODE
  STATE_DIR=$MAINT_STATE_DIR/nodes/$NODE
  STATE_FILE=$STATE_DIR/state
}

# fleet_nodes: every node named in the services' NODES, in order of first mention, in FLEET.
fleet_nodes() {
  local name node seen=' '
  FLEET=()
  for name in "${SERVICES[@]}"; do
    words "$(svc "$name" NODES)"
    for node in "${WORDS[@]}"; do
      [[ $seen == *" $node "* ]] && continue
      seen+="$node "; FLEET+=("$node")
    done
  done
}

# nodes_out: the nodes of the fleet that are out now (a state file under $MAINT_STATE_DIR/nodes), in OUT.
nodes_out() {
  local dir
  OUT=()
  for dir in "$MAINT_STATE_DIR"/nodes/*/; do
    [[ -f ${dir}state ]] && OUT+=("$(basename -- "$dir")")
  done
  return 0
}

# settings_command: the maintenance-shim that resolves the settings, in SETTINGS_CMD, its first word an
# absolute path: MAINT_SHIM_CMD from the environment when set, else the .venv/ beside these scripts
# (scripts/run.sh creates it), else maintenance-shim on PATH. load_env exports it as MAINT_SHIM_CMD (unless
# the env file names another), so the child scripts and the shim they start use the same one.
declare -a SETTINGS_CMD=()
settings_command() {
  local venv=${MAINT_VENV:-$LIB_DIR/../.venv} found
  if [[ -n ${MAINT_SHIM_CMD:-} ]]; then
    read -r -a SETTINGS_CMD <<<"$MAINT_SHIM_CMD"
    found=$(type -P -- "${SETTINGS_CMD[0]}") ||
      die "MAINT_SHIM_CMD: '${SETTINGS_CMD[0]}' is not an executable file (PATH=$PATH)"
  elif [[ -x $venv/bin/maintenance-shim ]]; then
    SETTINGS_CMD=("$venv/bin/maintenance-shim"); found=$(cd -- "$venv/bin" && pwd)/maintenance-shim
  else
    SETTINGS_CMD=(maintenance-shim)
    found=$(type -P maintenance-shim) ||
      die "cannot find maintenance-shim: looked for $(cd -- "$LIB_DIR/.." && pwd)/.venv/bin/maintenance-shim (scripts/run.sh --install creates it), then on PATH ($PATH), and MAINT_SHIM_CMD is not set"
  fi
  [[ $found == /* ]] || found=$(cd -- "$(dirname -- "$found")" && pwd)/${found##*/}
  SETTINGS_CMD[0]=$found
}

# ---- small helpers -------------------------------------------------------------------------------

# run_event NAME [STATUS [SERVICE...]]: tell the shim what happens around the training (one JSON line in
# $STATE_DIR/events.jsonl; app/progress/runs.py reads it): start, trainer-exit, services-starting|waiting|ready.
run_event() {
  local name=$1 status=${2:-} line item
  shift $(($# < 2 ? $# : 2))
  local -a quoted=()
  for item; do quoted+=("\"$item\""); done
  local IFS=,
  line=$(printf '{"t":%s,"event":"%s"%s%s,"services":[%s]}' "${EPOCHREALTIME/,/.}" "$name" \
    "${status:+,\"status\":$status}" "${EVENT_SECONDS:+,\"seconds\":$EVENT_SECONDS}" "${quoted[*]}")
  printf '%s\n' "$line" >>"$STATE_DIR/events.jsonl" 2>/dev/null || warn "cannot write $STATE_DIR/events.jsonl"
}

# history_record: append the run that just ended to $STATE_DIR/history.jsonl (maintenance-shim history
# --record); a failure is a warning, never a failed stop.
history_record() {
  local -a shim
  read -r -a shim <<<"$MAINT_SHIM_CMD"
  "${shim[@]}" history --record --state-dir "$STATE_DIR" >/dev/null 2>>"$MAINT_SHIM_LOG" ||
    warn "could not record the run in $STATE_DIR/history.jsonl (see $MAINT_SHIM_LOG)"
}

# notify EVENT [DETAIL]: tell the operator through MAINT_NOTIFY_URLS (`maintenance-shim notify`, app/notify.py);
# bounded, and a failure is a warning, never a failed switch.
notify() {
  [[ -n ${MAINT_NOTIFY_URLS:-} ]] || return 0
  local -a shim
  read -r -a shim <<<"$MAINT_SHIM_CMD"
  timeout 30 "${shim[@]}" notify "$1" --detail "${2:-}" --services "${SERVICES[*]}" --state-dir "$STATE_DIR" \
    9>&- 2>>"$MAINT_SHIM_LOG" || warn "the $1 notification was not sent (see $MAINT_SHIM_LOG)"
}

words() { local IFS=$' \t\n,'; read -r -a WORDS <<<"$*" || true; }  # split on blanks and commas
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
now() { printf '%(%s)T' -1; }
mono() { local up; read -r up _ </proc/uptime; printf '%s' "${up/./}"; }  # centiseconds, monotonic

# check_settings: load the proxy's adapter and run its checks of this machine for every service (the
# include file exists, the tool it needs is installed); the values themselves were validated by load_env.
declare -a SERVICES=()
declare -A SERVICE_TAG=()
# Parsed by `env --shell` (settings/scripts.py): the shim's --listen values and where to reach them, the
# shim listener answering for each proxied service, each service's own address and port.
declare -a SHIM_SPECS=() SHIM_PROBES=()
declare -A SHIM_ADDR=() SERVICE_PROBE=() SERVICE_PORT=()
check_settings() {
  local name
  proxy_mode || return 0
  proxy_load
  for name in "${SERVICES[@]}"; do proxy_check "$name"; done
}

# svc NAME KEY: the value of MAINT_SERVICE_<NAME>_<KEY>, or empty.
svc() { local var="MAINT_SERVICE_${1}_$2"; printf '%s' "${!var:-}"; }

# shim_addr_for NAME: the shim listener (HOST:PORT) that answers for service NAME in proxy modes: the
# MAINT_LISTEN entry tagged =NAME, else the first untagged entry, else the first entry.
shim_addr_for() { printf '%s' "${SHIM_ADDR[$1]:-}"; }

# ---- locking and state ---------------------------------------------------------------------------

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
state_load() {
  if [[ -f $STATE_FILE ]]; then
    # shellcheck source=/dev/null
    . "$STATE_FILE"
  fi
}
state_get() { local var="S_$1"; printf '%s' "${!var:-}"; }
state_clear() { [[ -f $STATE_FILE ]] && mv -f -- "$STATE_FILE" "$STATE_DIR/state.last"; return 0; }

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

# ---- HTTP checks ---------------------------------------------------------------------------------

http_code() {  # URL [curl args...] -> the status code, 000 when nothing answered
  local url=$1; shift
  curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" -- "$url" 2>/dev/null || true
}
# port_listening HOST:PORT: something accepts TCP connections there.
port_listening() {
  local host=${1%:*} port=${1##*:}
  host=${host#[}; host=${host%]}
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
# port_bound PORT: a listening socket (state 0A) on PORT exists on this host, any address, from
# /proc/net/tcp*; grep, not a shell loop: under load these files hold thousands of TIME_WAIT lines.
port_bound() {
  local hex
  printf -v hex '%04X' "$1"
  grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:[0-9A-F]+ 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# shim_check_once HOST:PORT: "" when the shim answers as it must, else why not.
shim_check_once() {
  local base="http://$1" headers origin code
  code=$(curl -s --max-time 3 -- "$base/_maintenance/health" 2>/dev/null) || code=
  [[ $code =~ \"maintenance\":\ ?true ]] ||
    { printf 'health check %s/_maintenance/health did not answer {"maintenance": true}' "$base"; return; }
  # X-Maintenance-Shim: check keeps this sample out of the shim's request counts (app/traffic.py).
  headers=$(curl -s -o /dev/null -D - --max-time 3 -H 'X-Maintenance-Shim: check' -- "$base$MAINT_VERIFY_PATH" \
    2>/dev/null | tr -d '\r') || true
  [[ $headers =~ ^HTTP/[0-9.]+\ 503 ]] ||
    { printf 'sample request %s%s did not answer 503 (%s)' "$base" "$MAINT_VERIFY_PATH" "${headers%%$'\n'*}"; return; }
  local re=$'\n''retry-after: *([0-9]+)'$'\n'
  shopt -s nocasematch
  if ! [[ $headers =~ $re ]] || ((BASH_REMATCH[1] < 1)); then
    shopt -u nocasematch
    printf 'sample request %s%s answered 503 without a valid Retry-After' "$base" "$MAINT_VERIFY_PATH"; return
  fi
  shopt -u nocasematch
  words "$MAINT_CORS_ORIGINS"
  origin=${WORDS[0]:-}
  if [[ -n $origin ]]; then
    [[ $origin == '*' ]] && origin=https://example.com
    headers=$(curl -s -o /dev/null -D - --max-time 3 -X OPTIONS -H "Origin: $origin" \
      -H 'Access-Control-Request-Method: POST' -- "$base$MAINT_VERIFY_PATH" 2>/dev/null | tr -d '\r') || true
    shopt -s nocasematch
    if ! [[ $headers =~ ^HTTP/[0-9.]+\ 2[0-9][0-9] && $headers == *$'\n'access-control-allow-origin:* ]]; then
      shopt -u nocasematch
      printf 'CORS preflight from %s to %s was not allowed (%s)' "$origin" "$base" "${headers%%$'\n'*}"; return
    fi
    shopt -u nocasematch
  fi
}

# ---- the shim process ----------------------------------------------------------------------------

SHIM_PID=
SHIM_START=
SHIM_BIND_RETRY=0
# shim_launch LISTEN...: start the shim in its own session (a Ctrl-C at the operator's terminal must not
# reach it), stdout/stderr appended to MAINT_SHIM_LOG; record its PID and start time. The shim gets
# MAINT_BIND_RETRY_SECONDS=$SHIM_BIND_RETRY (0 unless taking over ports).
shim_launch() {
  local -a cmd args=(serve)
  local spec
  read -r -a cmd <<<"$MAINT_SHIM_CMD"
  command -v -- "${cmd[0]}" >/dev/null ||
    die "MAINT_SHIM_CMD: '${cmd[0]}' is not an executable command (PATH=$PATH)"
  for spec; do args+=(--listen "$spec"); done
  [[ -n ${MAINT_ENV_FILE:-} ]] && args+=(--env-file "$MAINT_ENV_FILE")
  printf '\n==== %s %s: %s %s\n' "$(date '+%F %T')" "$PROG" "$MAINT_SHIM_CMD" "${args[*]}" >>"$MAINT_SHIM_LOG"
  env MAINT_BIND_RETRY_SECONDS="${SHIM_BIND_RETRY:-0}" \
    nice -n "$MAINT_SHIM_NICE" setsid "${cmd[@]}" "${args[@]}" </dev/null >>"$MAINT_SHIM_LOG" 2>&1 9>&- &
  SHIM_PID=$!
  SHIM_START=$(proc_starttime "$SHIM_PID") || SHIM_START=
}

shim_last_words() {  # the shim's last log line, for error messages
  local line
  line=$(grep -v '^\s*$' -- "$MAINT_SHIM_LOG" 2>/dev/null | tail -n 1) || true
  printf '%s' "${line:-no output}"
}

# shim_wait_ready ADDR...: wait until every address passes shim_check_once. Returns 0 when ready, 2 when
# the process we launched exited (it could not bind, or a bad setting), 1 on timeout; WHY says more.
shim_wait_ready() {
  local deadline addr
  deadline=$(( $(mono) + MAINT_SHIM_START_TIMEOUT * 100 ))
  WHY=
  for addr; do
    while :; do
      if [[ -n $SHIM_PID ]] && ! pid_alive "$SHIM_PID"; then
        wait "$SHIM_PID" 2>/dev/null || true
        WHY="the shim exited during start-up: $(shim_last_words) (log: $MAINT_SHIM_LOG)"
        return 2
      fi
      WHY=$(shim_check_once "$addr")
      [[ -z $WHY ]] && break
      if (( $(mono) >= deadline )); then WHY="the shim is not ready after ${MAINT_SHIM_START_TIMEOUT}s: $WHY"; return 1; fi
      sleep 0.05
    done
  done
}

# shim_start LISTEN...: launch (unless external) and verify, or die. Records the PID in the state.
shim_start() {
  if [[ $MAINT_SHIM_MANAGED == external ]]; then
    SHIM_PID=
    log "checking the externally managed shim on ${PROBES[*]}"
  else
    shim_launch "$@"
    state_set S_SHIM_PID "$SHIM_PID"; state_set S_SHIM_START "$SHIM_START"
  fi
  shim_wait_ready "${PROBES[@]}" || die "$WHY"
}

# shim_stop_recorded: stop the shim recorded in the state (never an external one).
shim_stop_recorded() {
  [[ $(state_get SHIM_MANAGED) == external ]] && return 0
  shim_stop "$(state_get SHIM_PID)" "$(state_get SHIM_START)"
  state_set S_SHIM_PID ''
}

# serving_read: what the shim's supervisor last wrote to $STATE_DIR/shim-serving.json (app/supervise.py):
# SERVING_SUPERVISOR, SERVING_PID, SERVING_START, SERVING_RESTARTS, SERVING_LAST_EXIT and SERVING_LAST_AT
# ("" when absent).
serving_read() {
  local -a shim
  SERVING_SUPERVISOR='' SERVING_PID='' SERVING_START='' SERVING_RESTARTS=0 SERVING_LAST_EXIT='' SERVING_LAST_AT=
  [[ -r $STATE_DIR/shim-serving.json ]] || return 0  # never written (--no-supervise), or already removed
  read -r -a shim <<<"$MAINT_SHIM_CMD"
  eval "$("${shim[@]}" serving --shell --state-dir "$STATE_DIR" 9>&- 2>/dev/null)" || true
}

# serving_summary SUPERVISOR_PID: what status_maintenance.sh says about the server the supervisor keeps.
serving_summary() {
  serving_read
  [[ $SERVING_SUPERVISOR == "$1" ]] || return 0
  if ((SERVING_RESTARTS)); then
    printf 'serving in PID %s; restarted %s time(s), last at %s after the server %s\n' "$SERVING_PID" \
      "$SERVING_RESTARTS" "$SERVING_LAST_AT" "$SERVING_LAST_EXIT"
  else
    printf 'serving in PID %s; never restarted\n' "$SERVING_PID"
  fi
}

# shim_target PID STARTTIME: the process to signal to stop our shim: the recorded supervisor while it
# lives, else the server it forked if that still serves on (its supervisor was killed); "" for neither.
shim_target() {
  if pid_is_shim "$1" "$2"; then printf '%s' "$1"; return; fi
  serving_read
  if [[ -n $SERVING_PID && $SERVING_SUPERVISOR == "$1" ]] && pid_is_shim "$SERVING_PID" "$SERVING_START"; then
    printf '%s' "$SERVING_PID"
  fi
}

# shim_stop PID STARTTIME: SIGTERM, wait, then SIGKILL with a warning; only if the PID is ours. A server
# left behind by a killed supervisor is stopped the same way.
shim_stop() {
  local pid=$1 start=$2 deadline
  [[ -n $pid ]] || return 0
  pid=$(shim_target "$1" "$2")
  if [[ -z $pid ]]; then
    pid_alive "$1" && warn "PID $1 is no longer our shim (start time or command line differ); not signalling it"
    return 0
  fi
  [[ $pid == "$1" ]] || log "the shim's supervisor (PID $1) is gone; stopping the server it left running (PID $pid)"
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$(( $(mono) + MAINT_SHIM_STOP_TIMEOUT * 100 ))
  while pid_alive "$pid"; do
    if (( $(mono) >= deadline )); then
      warn "the shim (PID $pid) did not exit ${MAINT_SHIM_STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
      serving_read
      kill -KILL "$pid" 2>/dev/null || true
      [[ $SERVING_SUPERVISOR == "$pid" && -n $SERVING_PID ]] && pid_is_shim "$SERVING_PID" "$SERVING_START" &&
        kill -KILL "$SERVING_PID" 2>/dev/null
      sleep 0.2
      break
    fi
    sleep 0.05
  done
  wait "$pid" 2>/dev/null || true
}

# shim_listen_specs: the --listen values for the shim: MAINT_LISTEN, or in port mode the services' own
# addresses, each tagged with its service (and kind).
shim_listen_specs() { SPECS=("${SHIM_SPECS[@]}"); PROBES=("${SHIM_PROBES[@]}"); }

# ---- services ------------------------------------------------------------------------------------

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
      case $kind in STOP) cmd=$(runtime_cmd sleep "$name") ;; START) cmd=$(runtime_cmd wake "$name") ;; esac
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
# since CS: centiseconds (from mono) as seconds, e.g. 1.25.
since() { local cs=$(( $(mono) - $1 )); printf '%d.%02d' "$((cs / 100))" "$((cs % 100))"; }

# startup_record SINCE: the scripts took from SINCE (mono: stop_maintenance.sh's start) until the services
# answered again; kept in $STATE_DIR/startup.json, the shim's first guess at the time from the trainer's
# end to the services' return before any run is in the history (app/runs.py read_startup).
startup_record() {
  printf '{"seconds": %s, "t": %s}\n' "$(since "$1")" "$(now)" >"$STATE_DIR/startup.json" 2>/dev/null ||
    warn "cannot write $STATE_DIR/startup.json"
}
# runtime_preset NAME: the service frees the GPU through a runtime preset, not its own STOP/START hooks.
runtime_preset() { [[ $(svc "$1" RUNTIME) != command && -n $(svc "$1" RUNTIME) ]]; }
# runtime_cmd sleep|wake|ready NAME: the command (for bash -c) that has the preset do it (app/runtimes/).
runtime_cmd() {
  local -a shim
  read -r -a shim <<<"$MAINT_SHIM_CMD"
  printf '%q ' "${shim[@]}" runtime "$1" --service "$2"
  [[ -z ${MAINT_ENV_FILE:-} ]] || printf -- '--env-file %q' "$MAINT_ENV_FILE"
}
describe_unhealthy() {
  local name url out=()
  for name in "${UNHEALTHY[@]}"; do
    url=$(svc "$name" HEALTH_URL)
    if runtime_preset "$name"; then
      out+=("$name ($(svc "$name" RUNTIME) at $(svc "$name" RUNTIME_URL): $(bash -c "$(runtime_cmd ready "$name")" 2>&1 9>&-))")
      continue
    fi
    out+=("$name (${url:-a TCP connect to $(svc "$name" LISTEN)})")
  done
  local IFS=,
  printf '%s' "${out[*]}"
}

# ---- proxies -------------------------------------------------------------------------------------
#
# One adapter per proxy, scripts/proxy/<MAINT_SWITCH>.sh, sourced by proxy_load (acme.sh's deploy hooks
# are the model): a new proxy is one new file. Each adapter defines
#   proxy_describe       the proxy's name for messages
#   proxy_check NAME     die unless this machine has what service NAME needs (files, tools); its
#                        settings (with their defaults) are fields of app/settings/scripts.py, validated there
#   proxy_point NAME SIDE  make the pending config send NAME to SIDE (shim|live); the first move to the
#                        shim saves what the live side was in $STATE_DIR/proxy/NAME.live. Safe to repeat,
#                        and kept in files, so it survives the subshells of a rollback
#   proxy_test           check the pending config before it goes live (PROXY_OUT says why not)
#   proxy_reload         make the proxy apply it, and return when it has (PROXY_OUT says why not)
#   proxy_where NAME     where NAME's switch lives, for messages ("include /etc/nginx/...")
#   proxy_status NAME    (optional) its line in status_maintenance.sh; lib.sh's default uses proxy_where
# and may use the include helpers below (nginx, caddy and traefik swap one included file per service).

readonly MARKER='# maintenance-shim: this include points at the shim'
PROXY_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)/proxy

# proxy_mode: MAINT_SWITCH names a proxy (not port or none).
proxy_mode() { [[ $MAINT_SWITCH != port && $MAINT_SWITCH != none ]]; }

# proxy_load: source the adapter that MAINT_SWITCH names, or die naming the ones there are.
proxy_load() {
  local file=$PROXY_DIR/$MAINT_SWITCH.sh known
  if ! [[ $MAINT_SWITCH =~ ^[a-z0-9_]+$ && -f $file ]]; then
    known=$(cd -- "$PROXY_DIR" 2>/dev/null && printf '%s, ' *.sh) || known=
    known=${known//.sh/}
    die "MAINT_SWITCH: '$MAINT_SWITCH' is not one of ${known}port, none"
  fi
  # shellcheck source=/dev/null
  . "$file" || die "cannot load the proxy adapter $file"
}

proxy_name() { proxy_describe; }
proxy_run() { PROXY_OUT=$(bash -c "$1" 2>&1 9>&-); }  # CMD: run a proxy's command, its output in PROXY_OUT
proxy_fail() { PROXY_OUT=$1; return 1; }              # WHY: an adapter's test or reload failed
proxy_cmd() {  # test|reload -> the adapter's proxy_test / proxy_reload; output on failure in PROXY_OUT
  PROXY_OUT=
  case $1 in test) proxy_test ;; reload) proxy_reload ;; esac
}

# write_atomic TARGET SOURCE: replace TARGET by SOURCE's content via a temp file and rename, keeping
# TARGET's mode and owner. The temp file's name starts with a dot and ends in .maint.PID, so no proxy
# that watches the directory (Traefik) loads it.
write_atomic() {
  local target=$1 source=$2 tmp
  tmp="$(dirname -- "$target")/.$(basename -- "$target").maint.$$"
  cp -- "$source" "$tmp" || die "cannot write $tmp"
  chmod --reference="$target" -- "$tmp" 2>/dev/null || true
  chown --reference="$target" -- "$tmp" 2>/dev/null || true
  mv -f -- "$tmp" "$target" || { rm -f -- "$tmp"; die "cannot replace $target"; }
}

# include_check NAME: the service's INCLUDE (required by load_env for these proxies) exists.
include_check() {
  [[ -f $(svc "$1" INCLUDE) ]] || die "MAINT_SERVICE_${1}_INCLUDE: $(svc "$1" INCLUDE) does not exist"
}

# include_header NAME: the first lines of the shim's include (the marker the scripts and status look for).
include_header() {
  printf '%s\n' "$MARKER"
  printf '# Written by start_maintenance.sh at %s; the live version is kept in %s\n' \
    "$(date '+%F %T')" "$STATE_DIR/proxy/$1.live"
}

# include_point NAME shim|live: swap NAME's include atomically. To the shim: save the live include (once),
# write what the adapter's include_render NAME FILE renders. To live: put the saved copy back, byte for byte.
include_point() {
  local name=$1 inc saved=$STATE_DIR/proxy/$1.live new="$STATE_DIR/proxy/.new"
  if [[ $2 == shim ]]; then
    inc=$(svc "$name" INCLUDE)
    if ! grep -qF -- "$MARKER" "$inc"; then
      { cp -p -- "$inc" "$saved.tmp" && mv -f -- "$saved.tmp" "$saved"; } || die "cannot save $inc to $saved"
    fi
    [[ -f $saved ]] || die "$inc already points at the shim and no live copy is saved in $STATE_DIR/proxy; restore it by hand"
    state_set "S_INCLUDE_$name" "$inc"
    include_render "$name" "$new"
    write_atomic "$inc" "$new"
    rm -f -- "$new"
  else
    inc=$(state_get "INCLUDE_$name"); inc=${inc:-$(svc "$name" INCLUDE)}
    [[ -f $saved && -n $inc ]] || return 0
    write_atomic "$inc" "$saved"
  fi
}
include_where() { printf 'include %s' "$(svc "$1" INCLUDE)"; }

# live_saved NAME: where the live side of NAME's switch is saved, for status.
live_saved() {
  if [[ -f $STATE_DIR/proxy/$1.live ]]; then printf 'saved in %s' "$STATE_DIR/proxy/$1.live"; else printf 'not saved'; fi
}

# proxy_status NAME: a status line for NAME's switch (an adapter may define its own, as include_status below).
proxy_status() { printf '%-9s %s %s; live side %s\n' "$1:" "$(proxy_name)" "$(proxy_where "$1")" "$(live_saved "$1")"; }

# include_status NAME: the status of an include-switched service: whom the include sends traffic to.
include_status() {
  local inc target
  inc=$(svc "$1" INCLUDE)
  if grep -qF -- "$MARKER" "$inc" 2>/dev/null; then target="the shim at $(shim_addr_for "$1")"
  else target="the live service"; fi
  printf '%-9s %s include %s -> %s; live copy %s\n' "$1:" "$(proxy_name)" "$inc" "$target" "$(live_saved "$1")"
}

# proxy_to_shim: point every service at the shim, test, apply. Dies on failure; the caller's rollback
# puts the live side back (and applies it when S_RELOADED says the proxy may have switched).
proxy_to_shim() {
  local name
  for name in "${SERVICES[@]}"; do proxy_point "$name" shim; done
  state_set S_PROXY shim
  proxy_cmd test || die "$(proxy_name) config test failed with the shim's config: $(tail -n 1 <<<"$PROXY_OUT")"
  state_set S_RELOADED 1
  proxy_cmd reload || die "$(proxy_name) reload failed: $(tail -n 1 <<<"$PROXY_OUT")"
  proxy_settle shim
}

# proxy_restore_files: point every service at its live side again in the pending config; safe to repeat.
proxy_restore_files() {
  local name
  for name in "${SERVICES[@]}"; do proxy_point "$name" live; done
  state_set S_PROXY live
}

# proxy_to_live: restore the live side, test, apply. Returns non-zero (PROXY_OUT says why) when the test
# fails; the shim's side is then pended again so the proxy's config stays consistent.
proxy_to_live() {
  local name
  proxy_restore_files
  if ! proxy_cmd test; then
    local test_out=$PROXY_OUT
    for name in "${SERVICES[@]}"; do proxy_point "$name" shim; done
    state_set S_PROXY shim
    PROXY_OUT=$test_out
    return 1
  fi
  proxy_cmd reload || return 1
  proxy_settle live
  for name in "${SERVICES[@]}"; do rm -f -- "$STATE_DIR/proxy/$name.live"; done
}

# proxy_report_live: after the switch back, every PROXY_URL must reach its service: 502, 504 or no answer
# through the proxy means the proxy cannot reach it (an upstream on the wrong port, a service that is not
# there). Each such service is said loudly, on an error line of its own; returns 1 when there was one.
proxy_report_live() {
  local name url code bad=0
  for name in "${SERVICES[@]}"; do
    url=$(svc "$name" PROXY_URL)
    [[ -n $url ]] || continue
    code=$(http_code "$url")
    case $code in
      502|504|000)
        bad=1
        say error 'error: ' "$name is NOT reachable through $(proxy_name): $url answers ${code/#000/nothing (refused or timed out)}; check its upstream ($(proxy_where "$name")) against where the service listens" ;;
    esac
  done
  return "$bad"
}

# proxy_settle shim|live: wait until each PROXY_URL shows the expected side (when set), then
# MAINT_SETTLE_SECONDS so the old workers finish the requests they hold.
proxy_settle() {
  local want=$1 name url deadline body
  deadline=$(( $(mono) + MAINT_SWITCH_TIMEOUT * 100 ))
  for name in "${SERVICES[@]}"; do
    url=$(svc "$name" PROXY_URL)
    [[ -n $url ]] || continue
    while :; do
      body=$(curl -s --max-time 2 -- "${url%/}/_maintenance/health" 2>/dev/null) || body=
      if [[ $want == shim && $body == *'"maintenance"'* ]] || [[ $want == live && $body != *'"maintenance": true'* && $body != *'"maintenance":true'* ]]; then
        break
      fi
      if (( $(mono) >= deadline )); then
        warn "$name: $url does not show the $want side ${MAINT_SWITCH_TIMEOUT}s after the reload"
        break
      fi
      sleep 0.1
    done
  done
  sleep "$MAINT_SETTLE_SECONDS"
}

# ---- port mode -----------------------------------------------------------------------------------

# free_port: a loopback port nobody uses right now (in any TCP state), taken below the kernel's
# ephemeral range so no outgoing connection can be holding it a moment later.
free_port() {
  local port lo=32768 hex
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  ((lo > 12000)) || lo=61000
  while :; do
    port=$(( 10000 + RANDOM % (lo - 10000) ))
    printf -v hex '%04X' "$port"
    grep -qE "^ *[0-9]+: [0-9A-F]+:$hex " /proc/net/tcp /proc/net/tcp6 2>/dev/null || { printf '%s' "$port"; return 0; }
  done
}

ports_of() {  # NAME... -> PORTS (the services' LISTEN ports)
  local name
  PORTS=()
  for name; do PORTS+=("${SERVICE_PORT[$name]}"); done
}
any_port_bound() { local port; for port; do port_bound "$port" && return 0; done; return 1; }

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
  local name rc pid hooks_done=0 bind_deadline=0 stop_deadline offset
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
      WHY=$(shim_check_once_all "${PROBES[@]}")
      [[ -z $WHY ]] && break
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
    if { ((hooks_done)) && (( $(mono) >= bind_deadline )); } || (( $(mono) >= stop_deadline )); then
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
shim_check_once_all() { local addr why; for addr; do why=$(shim_check_once "$addr"); [[ -z $why ]] || { printf '%s' "$why"; return; }; done; }

# port_release: stop our shim, returning as soon as its listeners are closed (it may still be exiting).
port_release() {
  local pid start deadline
  pid=$(state_get SHIM_PID); start=$(state_get SHIM_START)
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

# ---- undo ----------------------------------------------------------------------------------------

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
        PROBLEMS+=("$(proxy_name) still runs the shim's config; its test or reload failed: $(tail -n 1 <<<"$PROXY_OUT")")
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
