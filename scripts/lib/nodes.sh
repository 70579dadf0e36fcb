# shellcheck shell=bash
# lib/nodes.sh: one node of a fleet behind HAProxy (--node), and the nodes out. The fleet's nodes come
# parsed from `env --shell`: FLEET, and SERVICE_NODES[name] (" n1 n2 ").
# Sourced by scripts/lib.sh with the others; see there.

# no_rolling: start and stop take one node (--node) or all; the round over every node is with_maintenance.sh's.
no_rolling() { [[ -z $ROLLING ]] || die "--rolling is with_maintenance.sh's (it takes each node out in turn)"; }

# node_scope: --node NODE takes one node of a fleet out (or back), not whole services: only the services
# whose MAINT_SERVICE_<name>_NODES list NODE, each at its HAProxy server <backend>/NODE, while the other
# nodes keep serving (HAProxy uses the shim, a backup server, only when none is left). The node has a
# state dir of its own, $MAINT_STATE_DIR/nodes/NODE, so several nodes can be out at once; hooks see
# MAINT_NODE. The shim stands as the backup all the time (MAINT_SHIM_MANAGED=external): nodes come and
# go around it.
node_scope() {
  local name
  local -a on=()
  [[ $MAINT_SWITCH == haproxy ]] ||
    die "--node needs MAINT_SWITCH=haproxy (a balancer in front of the nodes), not '$MAINT_SWITCH'"
  [[ $MAINT_SHIM_MANAGED == external ]] ||
    die "--node needs MAINT_SHIM_MANAGED=external: in a fleet the shim runs all the time as HAProxy's backup server (docs/switching.md)"
  for name in "${SERVICES[@]}"; do
    [[ ${SERVICE_NODES[$name]:-} == *" $NODE "* ]] && on+=("$name")
  done
  # Only a listed node (its name checked with the settings) gets a state dir: "--node ../x" stops here.
  ((${#on[@]})) || die "--node $NODE: no service lists it in MAINT_SERVICE_<name>_NODES (services: ${SERVICES[*]})"
  SERVICES=("${on[@]}")
  export MAINT_NODE=$NODE
  STATE_DIR=$MAINT_STATE_DIR/nodes/$NODE
  STATE_FILE=$STATE_DIR/state
}

# nodes_out: the nodes of the fleet that are out now (a state file under $MAINT_STATE_DIR/nodes), in OUT.
nodes_out() {
  local dir
  OUT=()
  for dir in "$MAINT_STATE_DIR"/nodes/*/; do
    [[ -f ${dir}state ]] && OUT+=("$(basename -- "$dir")")
  done
  return 0
}
