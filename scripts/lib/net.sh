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

# shim_check ADDR...: "" when the shim answers as it must on every address, else why not (`maintenance-shim
# probe`, app/probe.py: its health says maintenance, a sample request gets a 503 with a valid Retry-After,
# a CORS preflight from the first of MAINT_CORS_ORIGINS is allowed). Always succeeds; the answer is its output.
shim_check() { shim_probe "$@" || true; }
shim_probe() {  # [probe options] [--] ADDR...: `maintenance-shim probe` with the settings' path and origins
  shim_run probe --path "$MAINT_VERIFY_PATH" --cors-origins "$MAINT_CORS_ORIGINS" "$@" 9>&- 2>/dev/null
}
# shim_answering ADDR...: every address answers its health path as the shim does, 200 or 503 (a curl each, no
# process start: polled every 10 ms while the shim takes the ports); shim_check then says whether it is ours.
shim_answering() {
  local addr code
  for addr; do
    code=$(http_code "http://$addr/_maintenance/health")
    [[ $code == 200 || $code == 503 ]] || return 1
  done
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
