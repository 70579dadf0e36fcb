# shellcheck shell=bash
# lib/include.sh: the helpers of the adapters that swap one included file per service.
# Sourced by scripts/lib.sh with the others; see there.

# TARGET's mode and owner. The temp file's name starts with a dot and ends in .maint.PID, so no proxy
# that watches the directory (Traefik) loads it.
write_atomic() {
  local target=$1 source=$2 tmp
  tmp=$(dirname -- "$target")
  tmp+="/.${target##*/}.maint.$$"
  cp -- "$source" "$tmp" || die "cannot write $tmp"
  chmod --reference="$target" -- "$tmp" 2>/dev/null || true
  chown --reference="$target" -- "$tmp" 2>/dev/null || true
  mv -f -- "$tmp" "$target" || { rm -f -- "$tmp"; die "cannot replace $target"; }
}

# include_check NAME: the service's INCLUDE (required by load_env for these proxies) exists.
include_check() {
  local inc
  inc=$(svc "$1" INCLUDE)
  [[ -f $inc ]] || die "MAINT_SERVICE_${1}_INCLUDE: $inc does not exist"
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
    inc=$(state_get "INCLUDE_$name")
    [[ -n $inc ]] || inc=$(svc "$name" INCLUDE)
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

# include_status NAME: the status of an include-switched service: whom the include sends traffic to.
include_status() {
  local inc target
  inc=$(svc "$1" INCLUDE)
  if grep -qF -- "$MARKER" "$inc" 2>/dev/null; then target="the shim at $(shim_addr_for "$1")"
  else target="the live service"; fi
  local proxy saved
  proxy=$(proxy_name)
  saved=$(live_saved "$1")
  printf '%-9s %s include %s -> %s; live copy %s\n' "$1:" "$proxy" "$inc" "$target" "$saved"
}

# proxy_to_shim: point every service at the shim, test, apply. Dies on failure; the caller's rollback
