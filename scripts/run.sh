#!/usr/bin/env bash
# Install maintenance-shim into a venv (created when missing) and run it in the foreground.
# With no arguments and no maintenance.env it answers 503 on 127.0.0.1:8080; arguments go to `serve`.
#   run.sh --install   install (or update) only, say where the command is, and exit
set -Eeuo pipefail
[[ -n ${TRACE:-} ]] && set -x

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MAINT_VENV:-$root/.venv}
python=${PYTHON:-python3}

die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q python3-venv || die "python3-venv is missing"
fi
if [[ ! -x $venv/bin/python ]]; then
  "$python" -m venv "$venv" || die "cannot create a venv with $python (need Python >= 3.11)"
fi
"$venv/bin/python" -m pip install -q "$root" || die "pip install failed"
venv=$(cd -- "$venv" && pwd)
shim=$venv/bin/maintenance-shim
# How to call the command: the scripts find it by themselves; a shell needs the path, or a link on PATH.
if [[ $(command -v maintenance-shim 2>/dev/null) != "$shim" ]]; then
  printf 'run.sh: installed %s (the scripts in %s find it there)\n' "$shim" "$root/scripts" >&2
  printf 'run.sh: call it as %s, or put it on PATH: %sln -sf %s /usr/local/bin/maintenance-shim\n' \
    "$shim" "$( ((EUID == 0)) || printf 'sudo ')" "$shim" >&2
fi
[[ ${1:-} == --install ]] && exit 0
exec "$shim" serve "$@"
