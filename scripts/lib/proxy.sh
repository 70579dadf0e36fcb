# shellcheck shell=bash
# lib/proxy.sh: the proxy adapters: loading one, and the switch through it.
# Sourced by scripts/lib.sh with the others; see there.

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
PROXY_DIR=$LIB_DIR/proxy

# proxy_mode: MAINT_SWITCH names a proxy (not port or none).
proxy_mode() { [[ $MAINT_SWITCH != port && $MAINT_SWITCH != none ]]; }

# proxy_load: source the adapter that MAINT_SWITCH names, or die naming the ones there are.
proxy_load() {
  local file=$PROXY_DIR/$MAINT_SWITCH.sh  # a name the settings accepted: a proxy registered in app/settings/proxies/
  [[ -f $file ]] || die "MAINT_SWITCH: no adapter $file for '$MAINT_SWITCH'"
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
proxy_status() {
  local proxy where saved
  proxy=$(proxy_name)
  where=$(proxy_where "$1")
  saved=$(live_saved "$1")
  printf '%-9s %s %s; live side %s\n' "$1:" "$proxy" "$where" "$saved"
}

# puts the live side back (and applies it when S_RELOADED says the proxy may have switched).
proxy_to_shim() {
  local name
  for name in "${SERVICES[@]}"; do proxy_point "$name" shim; done
  state_set S_PROXY shim
  proxy_cmd test || die "$(proxy_name) config test failed with the shim's config: ${PROXY_OUT##*$'\n'}"
  state_set S_RELOADED 1
  proxy_cmd reload || die "$(proxy_name) reload failed: ${PROXY_OUT##*$'\n'}"
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
  local name url code bad=0 proxy where
  for name in "${SERVICES[@]}"; do
    url=$(svc "$name" PROXY_URL)
    [[ -n $url ]] || continue
    code=$(http_code "$url")
    case $code in
      502|504|000)
        bad=1
        proxy=$(proxy_name)
        where=$(proxy_where "$name")
        say error 'error: ' "$name is NOT reachable through $proxy: $url answers ${code/#000/nothing (refused or timed out)}; check its upstream ($where) against where the service listens" ;;
    esac
  done
  return "$bad"
}

# proxy_settle shim|live: wait until each PROXY_URL shows the expected side (when set; `maintenance-shim
# probe --side`: its /_maintenance/health says maintenance or not), then MAINT_SETTLE_SECONDS so the old
# workers finish the requests they hold.
proxy_settle() {
  local want=$1 name url
  local -a urls=()
  local -A late=()
  for name in "${SERVICES[@]}"; do
    url=$(svc "$name" PROXY_URL)
    [[ -z $url ]] || urls+=("$url")
  done
  if ((${#urls[@]})); then  # one process for all, within one deadline
    while IFS= read -r url; do [[ -z $url ]] || late[$url]=1; done < <(shim_run probe --side "$want" \
      --wait "$MAINT_SWITCH_TIMEOUT" -- "${urls[@]}" 2>/dev/null 9>&- || true)
    for name in "${SERVICES[@]}"; do
      url=$(svc "$name" PROXY_URL)
      [[ -z $url || -z ${late[$url]:-} ]] ||
        warn "$name: $url does not show the $want side ${MAINT_SWITCH_TIMEOUT}s after the reload"
    done
  fi
  sleep "$MAINT_SETTLE_SECONDS"
}
