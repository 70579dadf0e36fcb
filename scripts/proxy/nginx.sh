# shellcheck shell=bash
# proxy/nginx.sh: MAINT_SWITCH=nginx. Each service's `upstream` block includes one file holding its
# `server` line (MAINT_SERVICE_<name>_INCLUDE); the scripts swap that file for one naming the shim
# (atomically), run `nginx -t`, then `nginx -s reload`: requests in flight finish on the old workers.
# Sourced by lib.sh (proxy_load); the interface is described there.

proxy_describe() { printf 'nginx'; }
proxy_check() { include_check "$1"; }
proxy_where() { include_where "$1"; }
proxy_status() { include_status "$1"; }
proxy_point() { include_point "$1" "$2"; }

# include_render NAME FILE: the upstream include that sends NAME to the shim.
include_render() {
  { include_header "$1"; printf 'server %s;\n' "$(shim_addr_for "$1")"; } >"$2"
}

proxy_test() { proxy_run "$MAINT_NGINX_TEST_CMD"; }
proxy_reload() { proxy_run "$MAINT_NGINX_RELOAD_CMD"; }
