# shellcheck shell=bash
# lib.sh: the functions the maintenance scripts share, one concern a file under scripts/lib/. Sourced by
# start_maintenance.sh, stop_maintenance.sh, status_maintenance.sh and with_maintenance.sh; every setting
# is documented in deploy/maintenance.env.example and docs/switching.md.
#
# Bash orchestrates, Python decides: every value the scripts use comes parsed from a `maintenance-shim`
# subcommand (env --shell, serving --shell, probe, pid, runtime, gpu), and every record they leave is
# written by one (event, startup, log, history, notify); nothing here parses or builds JSON.

LIB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

# shellcheck source=scripts/lib/log.sh
. "$LIB_DIR/lib/log.sh"
# shellcheck source=scripts/lib/settings.sh
. "$LIB_DIR/lib/settings.sh"
# shellcheck source=scripts/lib/nodes.sh
. "$LIB_DIR/lib/nodes.sh"
# shellcheck source=scripts/lib/proc.sh
. "$LIB_DIR/lib/proc.sh"
# shellcheck source=scripts/lib/records.sh
. "$LIB_DIR/lib/records.sh"
# shellcheck source=scripts/lib/state.sh
. "$LIB_DIR/lib/state.sh"
# shellcheck source=scripts/lib/net.sh
. "$LIB_DIR/lib/net.sh"
# shellcheck source=scripts/lib/shim.sh
. "$LIB_DIR/lib/shim.sh"
# shellcheck source=scripts/lib/services.sh
. "$LIB_DIR/lib/services.sh"
# shellcheck source=scripts/lib/proxy.sh
. "$LIB_DIR/lib/proxy.sh"
# shellcheck source=scripts/lib/include.sh
. "$LIB_DIR/lib/include.sh"
# shellcheck source=scripts/lib/port.sh
. "$LIB_DIR/lib/port.sh"
# shellcheck source=scripts/lib/rollback.sh
. "$LIB_DIR/lib/rollback.sh"
