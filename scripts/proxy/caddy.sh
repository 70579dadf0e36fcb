# shellcheck shell=bash
# proxy/caddy.sh: MAINT_SWITCH=caddy. Each service's reverse_proxy block imports one file holding its
# `to` line (MAINT_SERVICE_<name>_INCLUDE); the scripts swap that file for one naming the shim
# (atomically), run `caddy validate`, then `caddy reload`, which swaps the config gracefully.
# Sourced by lib.sh (proxy_load); the interface is described there.

proxy_describe() { printf 'caddy'; }
proxy_check() { include_check "$1"; }
proxy_where() { include_where "$1"; }
proxy_status() { include_status "$1"; }
proxy_point() { include_point "$1" "$2"; }

# include_render NAME FILE: the imported file that sends NAME to the shim.
include_render() {
  { include_header "$1"; printf 'to %s\n' "$(shim_addr_for "$1")"; } >"$2"
}

# caddy_run test|reload CMD: run CMD; on failure make PROXY_OUT's last line the error with its hint.
caddy_run() {
  local rc=0 err='' line from=''
  proxy_run "$2" || rc=$?
  ((rc)) || return 0
  # Caddy prints its log lines, then `Error: ...`, sometimes followed by a hint on more lines ("Did you
  # mean ...?"); the callers quote the last line, so make it the error with its hint, on one line.
  while IFS= read -r line; do
    [[ $line == 'Error: '* ]] && from=1
    [[ -n $from && -n $line ]] && err+="$line "
  done <<<"$PROXY_OUT"
  [[ -n $err ]] && PROXY_OUT+=$'\n'"${err% }"
  # A reload refused while starting the new config (e.g. a listener it could not bind) can leave that
  # config's server answering part of the requests next to the old one, through later reloads too,
  # until Caddy restarts (seen with 2.6.2).
  [[ $1 == reload && $PROXY_OUT == *'module: start: '* ]] &&
    warn "caddy refused the new config after starting part of it; it may now answer some requests with the refused config until it is restarted. Keep the shim and the services running: fix the Caddyfile, restart caddy, then run stop_maintenance.sh"
  return "$rc"
}
proxy_test() { caddy_run test "$MAINT_CADDY_TEST_CMD"; }
proxy_reload() { caddy_run reload "$MAINT_CADDY_RELOAD_CMD"; }
