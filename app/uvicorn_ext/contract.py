"""What the shim's HTTP extension takes from uvicorn, named once, and a check that this uvicorn has it.

protocol.py subclasses uvicorn's httptools protocol and its request-response cycle, and wire.py encodes
heads with uvicorn's own header expressions. None of these is uvicorn's public API, so a release may rename
any of them. `missing()` reads the installed uvicorn (its classes, and their constructors' source for the
attributes they set) and names what is gone; server.py then serves on stock uvicorn instead of not
starting, and tests/uvicorn_ext/test_uvicorn_contract.py fails with the same names. pyproject.toml bounds uvicorn to
the releases this list was checked against.
"""

from __future__ import annotations

import importlib
import inspect
import re

HTTPTOOLS_IMPL = "uvicorn.protocols.http.httptools_impl"
MODULE_NAMES: dict[str, tuple[str, ...]] = {
    HTTPTOOLS_IMPL: ("STATUS_LINE", "HttpToolsProtocol", "RequestResponseCycle", "HEADER_RE", "HEADER_VALUE_RE"),
    "uvicorn.protocols.http.flow_control": ("HIGH_WATER_LIMIT", "FlowControl"),
}
# HttpToolsProtocol: attributes read or set, methods called, and methods overridden (uvicorn must still call them).
PROTOCOL_MEMBERS: tuple[str, ...] = (
    "access_log", "access_logger", "app", "config", "connections", "cycle", "expect_100_continue", "flow", "headers",
    "limit_concurrency", "logger", "loop", "parser", "root_path", "scope",
    "server_state", "timeout_keep_alive", "timeout_keep_alive_task", "timeout_keep_alive_handler", "transport", "url",
    "ws_protocol_class", "pipeline",
    "_unset_keepalive_if_required", "handle_websocket_upgrade", "send_400_response",
    "connection_made", "connection_lost", "data_received", "on_body", "on_message_begin", "on_headers_complete",
    "on_message_complete",
    "_should_upgrade", "_start_asgi_task",
)  # fmt: skip
# RequestResponseCycle: what WholeAnswerCycle and the protocol read or set on a cycle, and `send`.
CYCLE_MEMBERS: tuple[str, ...] = (
    "access_log", "body", "chunked_encoding", "default_headers", "disconnected", "expected_content_length",
    "keep_alive", "message_event", "more_body", "on_response", "response_complete", "response_started",
    "scope", "transport", "waiting_for_100_continue", "send",
)  # fmt: skip

# FlowControl: what the protocol reads of a connection's flow (a client not reading its answers).
FLOW_MEMBERS: tuple[str, ...] = ("write_paused",)


def _has(cls: type, name: str, source: str) -> bool:
    return hasattr(cls, name) or re.search(rf"\bself\.{re.escape(name)}\s*(?::[^=\n]+)?=(?!=)", source) is not None


def missing() -> list[str]:
    """Every name above that the installed uvicorn lacks, as `module.Name` or `Class.member`; [] if none."""
    gone: list[str] = []
    found: dict[str, object] = {}
    for module_name, names in MODULE_NAMES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            gone.append(module_name)
            continue
        for name in names:
            if hasattr(module, name):
                found[name] = getattr(module, name)
            else:
                gone.append(f"{module_name}.{name}")
    classes = (
        ("HttpToolsProtocol", PROTOCOL_MEMBERS), ("RequestResponseCycle", CYCLE_MEMBERS), ("FlowControl", FLOW_MEMBERS),
    )  # fmt: skip
    for class_name, members in classes:
        cls = found.get(class_name)
        if not isinstance(cls, type):
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):  # no source installed: attributes set in __init__ cannot be read
            source = ""
        gone.extend(f"{class_name}.{name}" for name in members if not _has(cls, name, source))
    return gone
