"""HAProxy: the live server drained and the shim's backup taken through the runtime API, no reload
(scripts/proxy/haproxy.sh); a fleet's nodes are servers of one backend."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field

from ...nodes import is_node_name
from . import Proxy, ProxySettings

_BACKEND_SERVER_RE = re.compile(r"^[^/\s]+/[^/\s]+$")


class HaproxySettings(ProxySettings):
    haproxy_socket: str = Field(
        "/run/haproxy/admin.sock", description="HAProxy's runtime API (stats socket, level admin): a path or HOST:PORT"
    )


class Haproxy(Proxy):
    name = "haproxy"
    title = "HAProxy"
    settings = HaproxySettings
    service_keys: ClassVar[dict[str, str]] = {
        "HAPROXY_SERVER": "HAProxy mode: BACKEND/SERVER of the live service (default <name>/live)",
        "HAPROXY_SHIM": "HAProxy mode: BACKEND/SERVER of the shim (default <backend>/shim)",
        "NODES": "HAProxy mode, a fleet: the service's nodes, each a server of HAPROXY_SERVER's backend "
        "(`gpu-1 gpu-2 gpu-3`); `--node NODE` takes one out, `with_maintenance.sh --rolling` each in turn",
    }

    @classmethod
    def service_defaults(cls, name: str, keys: dict[str, str]) -> dict[str, str]:
        server = keys["HAPROXY_SERVER"] or f"{name}/live"
        return {"HAPROXY_SERVER": server, "HAPROXY_SHIM": keys["HAPROXY_SHIM"] or f"{server.split('/')[0]}/shim"}

    @classmethod
    def check_service(cls, prefix: str, keys: dict[str, str], switch: str) -> list[str]:
        problems = []
        if keys.get("NODES"):
            nodes = [node for node in re.split(r"[\s,]+", keys["NODES"].strip()) if node]
            bad = [node for node in nodes if not is_node_name(node)]  # the rule of a progress report's "node"
            if bad:
                problems.append(f"{prefix}NODES: {bad[0]!r} is not a node name (letters, digits, '.', '_', '-')")
            elif len(set(nodes)) != len(nodes):
                problems.append(f"{prefix}NODES: a node is listed twice ({keys['NODES']!r})")
            if switch != cls.name:
                problems.append(f"{prefix}NODES needs MAINT_SWITCH=haproxy (a balancer in front of the nodes)")
        for key in ("HAPROXY_SERVER", "HAPROXY_SHIM"):
            if not _BACKEND_SERVER_RE.match(keys[key]):
                problems.append(f"{prefix}{key}: {keys[key]!r} is not BACKEND/SERVER")
        return problems


PROXY = Haproxy
