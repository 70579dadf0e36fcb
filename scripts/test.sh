#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine (apt packages when missing, a venv with
# the package and its test extras), then run every check: ruff, mypy, shellcheck and the whole pytest suite.
set -Eeuo pipefail
[[ -n ${TRACE:-} ]] && set -x

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MAINT_TEST_VENV:-$root/.venv}
python=${PYTHON:-python3}
apt_packages=(nginx-light caddy haproxy socat chromium fonts-noto-cjk fonts-noto-core wrk valgrind shellcheck curl procps prometheus
  faketime)
# npm installs axe-core for tests/web/test_a11y.py: Debian's, unless a Node.js is there that brings its own.
command -v npm >/dev/null || apt_packages+=(npm)

die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -q || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || die "could not install: ${missing[*]}"
fi

if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  missing=(python3-venv)
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}" || die "python3-venv is missing"
fi
if [[ ! -x $venv/bin/python ]]; then
  "$python" -m venv "$venv" || die "cannot create a venv with $python (need Python >= 3.11 and python3-venv)"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
# torch first, pinned: the trainers extra would otherwise pull the newest torch (a CUDA build of several GB).
"$venv/bin/python" -m pip install -q torch==2.13.0
"$venv/bin/python" -m pip install -q "${root}[test,trainers,notify]"

cd "$root"
"$venv/bin/ruff" check .
# mypy and shellcheck (a minute on a fresh clone) run beside pytest; their output is printed after it, and any of
# the three failing fails the whole.
lint_log=$(mktemp)
trap 'rm -f "$lint_log"' EXIT
{ "$venv/bin/mypy" && shellcheck -x scripts/*.sh scripts/proxy/*.sh .ci/run; } >"$lint_log" 2>&1 &
lint=$!
# Spread over workers (pytest-xdist): most of the suite's time is waiting on paced trainers, switches under load and
# timeouts, not CPU, so twice as many workers as CPUs (2 to 8). Tests that share a module-scoped fixture stay on one
# worker (--dist loadgroup, tests/support/workers.py). Arguments come after, so `-n 0` runs it in one process.
cpus=$(nproc 2>/dev/null || echo 2)
workers=$((cpus * 2 < 2 ? 2 : cpus * 2 > 8 ? 8 : cpus * 2))
status=0
"$venv/bin/python" -m pytest -n "$workers" --dist loadgroup "$@" || status=$?
lint_status=0
wait "$lint" || lint_status=$?
printf '\n==== mypy and shellcheck (run beside pytest)\n'
cat "$lint_log"
if ((lint_status)); then
  printf 'test.sh: mypy or shellcheck failed (exit %s)\n' "$lint_status" >&2
  ((status)) || status=$lint_status
fi
exit "$status"
