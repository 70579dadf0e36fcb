# shellcheck shell=bash
# proxy/haproxy.sh: MAINT_SWITCH=haproxy, through HAProxy's runtime API: no file is written and HAProxy
# never reloads. Each service's backend has its live server and the shim as a `backup` server with a
# health check (deploy/haproxy/haproxy.cfg). To the shim: `set server BACKEND/SERVER state drain` on the
# live server: new requests go to the backup (the shim), the ones in flight finish on the service. Back:
# the live server's saved admin state (`ready`) once its health check passes again.
# Sourced by lib.sh (proxy_load); the interface is described there.

proxy_describe() { printf 'haproxy'; }

# haproxy_servers NAME -> HX_LIVE (backend/server of the service), HX_SHIM (backend/server of the shim),
# resolved and checked by load_env (defaults <name>/live and <backend>/shim). With --node NODE, the live
# server is the node's: <backend>/NODE, in the backend of HAPROXY_SERVER.
haproxy_servers() {
  HX_LIVE=$(svc "$1" HAPROXY_SERVER)
  HX_SHIM=$(svc "$1" HAPROXY_SHIM)
  [[ -z ${NODE:-} ]] || HX_LIVE=${HX_LIVE%%/*}/$NODE
}

proxy_check() {
  command -v socat >/dev/null || die "MAINT_SWITCH=haproxy needs socat to reach the runtime API (apt-get install socat)"
}

proxy_where() { haproxy_servers "$1"; printf 'server %s drained, backup %s, runtime API %s' "$HX_LIVE" "$HX_SHIM" "$MAINT_HAPROXY_SOCKET"; }

# haproxy_api COMMAND: send one runtime API command; its answer in API_OUT. Fails when nothing answers.
haproxy_api() {
  local address=$MAINT_HAPROXY_SOCKET
  if [[ $address == */* ]]; then address=UNIX-CONNECT:$address; else address=TCP:$address; fi
  API_OUT=$(printf '%s\n' "$1" | timeout 5 socat -t 5 - "$address" 2>&1 9>&-) ||
    { API_OUT="the runtime API at $MAINT_HAPROXY_SOCKET does not answer: ${API_OUT:-no output}"; return 1; }
}

# haproxy_state BACKEND/SERVER -> HX_OP (0 down .. 2 up, 3 going up) and HX_ADMIN (admin state bits:
# 0x01 forced maint, 0x08 forced drain) from `show servers state`; fails with API_OUT saying why.
haproxy_state() {
  local backend=${1%%/*} server=${1#*/} line
  local -a fields
  haproxy_api "show servers state $backend" || return 1
  while read -r line; do
    read -r -a fields <<<"$line"
    if [[ ${fields[1]:-} == "$backend" && ${fields[3]:-} == "$server" ]]; then
      HX_OP=${fields[5]}; HX_ADMIN=${fields[6]}
      return 0
    fi
  done <<<"$API_OUT"
  API_OUT="haproxy has no server $1 (${API_OUT%%$'\n'*})"
  return 1
}

# proxy_point NAME shim|live: the side NAME should be on, in $STATE_DIR/proxy/NAME.want; the first move
# to the shim saves the live server's admin state in NAME.live.
proxy_point() {
  local saved=$STATE_DIR/proxy/$1.live
  haproxy_servers "$1"
  if [[ $2 == shim && ! -f $saved ]]; then
    haproxy_state "$HX_LIVE" || die "haproxy: $API_OUT"
    { printf '%s\n' "$HX_ADMIN" >"$saved.tmp" && mv -f -- "$saved.tmp" "$saved"; } || die "cannot write $saved"
  fi
  [[ $2 == live && ! -f $saved ]] && { rm -f -- "$STATE_DIR/proxy/$1.want"; return 0; }
  printf '%s\n' "$2" >"$STATE_DIR/proxy/$1.want"
}

# haproxy_wait_up BACKEND/SERVER: until its health check says UP, at most MAINT_SWITCH_TIMEOUT.
haproxy_wait_up() {
  local deadline=$(( $(mono) + MAINT_SWITCH_TIMEOUT * 100 ))
  while :; do
    haproxy_state "$1" || { proxy_fail "$API_OUT"; return 1; }
    ((HX_OP == 2 && (HX_ADMIN & 1) == 0)) && return 0
    if (( HX_ADMIN & 1 )); then
      proxy_fail "server $1 is in maintenance in haproxy (set by hand?); set it ready first"; return 1
    fi
    if (( $(mono) >= deadline )); then
      proxy_fail "server $1 is not UP in haproxy after ${MAINT_SWITCH_TIMEOUT}s (operational state $HX_OP); check its health check"
      return 1
    fi
    sleep 0.1
  done
}

# proxy_test: the side each service goes to must be UP in haproxy: the shim's backup server (its health
# check has seen the shim we started), or the live server (the service answers its check again).
proxy_test() {
  local name want
  for name in "${SERVICES[@]}"; do
    want=$(cat -- "$STATE_DIR/proxy/$name.want" 2>/dev/null) || continue
    haproxy_servers "$name"
    if [[ $want == shim ]]; then haproxy_wait_up "$HX_SHIM" || return 1
    else haproxy_wait_up "$HX_LIVE" || return 1
    fi
  done
}

# proxy_reload: apply each service's side with `set server ... state`, then read it back.
proxy_reload() {
  local name want state saved
  for name in "${SERVICES[@]}"; do
    want=$(cat -- "$STATE_DIR/proxy/$name.want" 2>/dev/null) || continue
    haproxy_servers "$name"
    state=drain
    if [[ $want == live ]]; then
      saved=$(cat -- "$STATE_DIR/proxy/$name.live" 2>/dev/null) || saved=0
      is_uint "$saved" || saved=0
      state=ready
      ((saved & 8)) && state=drain
      ((saved & 1)) && state=maint
    fi
    haproxy_api "set server $HX_LIVE state $state" || { proxy_fail "$API_OUT"; return 1; }
    [[ -z ${API_OUT//[[:space:]]/} ]] || { proxy_fail "set server $HX_LIVE state $state: $API_OUT"; return 1; }
    haproxy_state "$HX_LIVE" || { proxy_fail "$API_OUT"; return 1; }
    local got=ready
    ((HX_ADMIN & 8)) && got=drain
    ((HX_ADMIN & 1)) && got=maint
    [[ $got == "$state" ]] || { proxy_fail "server $HX_LIVE is $got in haproxy after set server ... state $state"; return 1; }
    [[ $want == live ]] && rm -f -- "$STATE_DIR/proxy/$name.want"
  done
  return 0
}
