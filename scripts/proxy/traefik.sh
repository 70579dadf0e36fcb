# shellcheck shell=bash
# proxy/traefik.sh: MAINT_SWITCH=traefik, through Traefik's file provider. Each service's Traefik service
# (the one its router names) is defined in a file of its own in the directory the provider watches
# (MAINT_SERVICE_<name>_INCLUDE, deploy/traefik/dynamic/studio.yml). The scripts replace that file
# atomically with one that sends the service to the shim, and Traefik, which watches it, swaps its
# handlers without a restart (requests in flight finish); then its API must show the new side.
# Sourced by lib.sh (proxy_load); the interface is described there.

proxy_describe() { printf 'traefik'; }
traefik_service() { svc "$1" TRAEFIK_SERVICE; }  # resolved and checked by load_env (default: the name)
# traefik_ref NAME: the SERVICE@file=http://SHIM_ADDR the API shows for NAME on the shim's side.
traefik_ref() { local var="MAINT_SERVICE_${1}_TRAEFIK_SERVICE"; printf '%s@file=http://%s' "${!var:-}" "${SHIM_ADDR[$1]:-}"; }

proxy_check() { include_check "$1"; }
proxy_where() {
  local service="MAINT_SERVICE_${1}_TRAEFIK_SERVICE" inc="MAINT_SERVICE_${1}_INCLUDE"
  printf 'service %s@file in %s' "${!service:-}" "${!inc:-}"
}
proxy_point() { include_point "$1" "$2"; }

# include_render NAME FILE: the dynamic config that defines NAME's Traefik service as the shim.
include_render() {
  {
    include_header "$1"
    local service="MAINT_SERVICE_${1}_TRAEFIK_SERVICE"
    printf 'http:\n  services:\n    %s:\n      loadBalancer:\n        servers:\n          - url: "http://%s"\n' \
      "${!service:-}" "${SHIM_ADDR[$1]:-}"
  } >"$2"
}

# traefik_get PATH: the API answers PATH with a 2xx.
traefik_get() { curl -sf -o /dev/null --max-time 3 -- "$MAINT_TRAEFIK_API$1" 2>/dev/null; }

proxy_test() {
  traefik_get /api/overview ||
    proxy_fail "traefik's API at $MAINT_TRAEFIK_API does not answer (is traefik running, with its API enabled?)"
}

# proxy_reload: Traefik reloads by itself when a watched file changes (at most every
# providersThrottleDuration, 2 s by default); wait until its API shows every service on its side
# (`maintenance-shim probe --side --traefik-service` reads the API's JSON).
proxy_reload() {
  local name inc want late
  local -A on=()  # shim|live -> the services' SERVICE@file=SHIM_URL, to wait for in one process each
  for name in "${SERVICES[@]}"; do
    inc=$(svc "$name" INCLUDE)
    want=live; grep -qF -- "$MARKER" "$inc" 2>/dev/null && want=shim
    on[$want]+=" $(traefik_ref "$name")"
  done
  for want in "${!on[@]}"; do
    local -a targets
    read -r -a targets <<<"${on[$want]}"  # our own list: no blanks in a service name or an address
    late=$(shim_run probe --side "$want" --wait "$MAINT_SWITCH_TIMEOUT" --traefik-api "$MAINT_TRAEFIK_API" \
      -- "${targets[@]}" 2>/dev/null 9>&-) && continue
    late=${late%%$'\n'*}  # the first that did not switch, as it was given
    for name in "${SERVICES[@]}"; do [[ $late == "$(traefik_service "$name")@file="* ]] && break; done
    proxy_fail "traefik did not take $(svc "$name" INCLUDE) within ${MAINT_SWITCH_TIMEOUT}s: its API does not show ${late%%=*} on the $want side (a config error? see traefik's log)"
    return 1
  done
}
