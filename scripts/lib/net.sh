# shellcheck shell=bash
# lib/net.sh: HTTP and TCP checks, and free ports.
# Sourced by scripts/lib.sh with the others; see there.

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
