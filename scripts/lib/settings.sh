# shellcheck shell=bash
# lib/settings.sh: the arguments, and every setting as `maintenance-shim env --shell` resolved it.
# Sourced by scripts/lib.sh with the others; see there.

ENV_FILE_ARG=
ARGS=()
NODE=     # --node NODE: one node of a fleet (MAINT_SERVICE_<name>_NODES), see node_scope
ROLLING=  # --rolling: with_maintenance.sh trains on every node in turn

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
  read -r -a SHIM_CMD <<<"$MAINT_SHIM_CMD"  # a command line, split as the shell splits words
  STATE_DIR=$MAINT_STATE_DIR
  STATE_FILE=$STATE_DIR/state
  [[ -z $NODE ]] || node_scope
}

# shim_run ARGS...: the shim's command (MAINT_SHIM_CMD, after load_env) with ARGS.
declare -a SHIM_CMD=()
shim_run() { "${SHIM_CMD[@]}" "$@"; }

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

# check_settings: load the proxy's adapter and run its checks of this machine for every service (the
# include file exists, the tool it needs is installed); the values themselves were validated by load_env.
declare -a SERVICES=()
declare -A SERVICE_TAG=()
# Parsed by `env --shell` (settings/scripts.py): the shim's --listen values and where to reach them, the
# shim listener answering for each proxied service, each service's own address and port; the nodes of a
# fleet (FLEET, in order of first mention) and each service's (SERVICE_NODES[name]: " n1 n2 ").
declare -a SHIM_SPECS=() SHIM_PROBES=() FLEET=()
declare -A SHIM_ADDR=() SERVICE_PROBE=() SERVICE_PORT=() SERVICE_NODES=()
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
