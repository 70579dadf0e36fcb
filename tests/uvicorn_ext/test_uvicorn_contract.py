"""The fence around uvicorn: every private member the extension uses is named in contract.py, the installed
uvicorn has them all, and a uvicorn that lacks one still serves the 503s (on its stock protocol)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from maintenance_shim.uvicorn_ext import contract
from tests.support import ROOT, clean_env, request, start_server, wait_http

PROTOCOL = ROOT / "app" / "uvicorn_ext" / "protocol.py"
OURS = ("ShimHttpProtocol", "WholeAnswerCycle")


def _used_uvicorn_members() -> set[str]:
    """Attributes the extension's two subclasses use on themselves, on a cycle or on super() that their own
    bodies do not define: what they take from uvicorn's classes."""
    tree = ast.parse(PROTOCOL.read_text())
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name in OURS]
    defined: set[str] = set()
    for cls in classes:
        for item in cls.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and not item.name.startswith("__"):
                defined.add(item.name)
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                defined.add(item.target.id)
            elif isinstance(item, ast.Assign):
                for value in ast.walk(item.value):  # __slots__ = ("name", ...)
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        defined.add(value.value)
    used: set[str] = set()
    for cls in classes:
        for node in ast.walk(cls):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            on_self = isinstance(owner, ast.Name) and owner.id in {"self", "cycle", "previous"}
            on_super = isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super"
            on_self_cycle = isinstance(owner, ast.Attribute) and owner.attr == "cycle"
            if (on_self or on_super or on_self_cycle) and not node.attr.startswith("__"):
                used.add(node.attr)
    overridden = defined & _UVICORN_CALLS  # ours, but uvicorn calls them: they must still exist upstream
    return (used - defined) | overridden


# Methods of ours that uvicorn calls (overrides): each must still exist upstream to be called at all.
_UVICORN_CALLS = {"connection_made", "connection_lost", "data_received", "on_body", "on_message_begin",
                  "on_headers_complete", "on_message_complete", "_should_upgrade", "_start_asgi_task", "send"}


def test_the_contract_names_every_member_the_extension_uses() -> None:
    named = set(contract.PROTOCOL_MEMBERS) | set(contract.CYCLE_MEMBERS)
    guard_members = {"guard", "_max_head", "_max_headers", "_timeout"}  # set by protocol_class, ours
    unnamed = _used_uvicorn_members() - named - guard_members
    assert not unnamed, f"protocol.py uses uvicorn members that contract.py does not name: {sorted(unnamed)}"


def test_the_installed_uvicorn_has_everything_the_extension_uses() -> None:
    gone = contract.missing()
    assert gone == [], f"this uvicorn lacks {gone}: update app/uvicorn_ext/ and pyproject's bound together"


def test_pyproject_bounds_uvicorn_above() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    line = next(line for line in text.splitlines() if '"uvicorn[standard]' in line)
    assert ",<" in line, f"uvicorn needs an upper bound (the contract was checked against a range): {line}"


# A uvicorn release that renamed a private member: the member is deleted before the shim is imported.
_RENAMED = """
import sys
from uvicorn.protocols.http import httptools_impl
del httptools_impl.HttpToolsProtocol.send_400_response
del httptools_impl.HEADER_RE
from maintenance_shim.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.e2e
def test_a_uvicorn_without_the_members_still_serves_503s(tmp_path: Path) -> None:
    log = tmp_path / "shim.log"
    server = start_server(
        lambda ports: [sys.executable, "-c", _RENAMED, "serve", "--listen", f"127.0.0.1:{ports[0]}=studio"],
        log, count=2, what="the shim on a uvicorn without the members", cwd=tmp_path,
        env_for=lambda ports: clean_env({"MAINT_ADMIN_LISTEN": f"127.0.0.1:{ports[1]}",
                                         "MAINT_STATE_DIR": str(tmp_path / "state")}),
    )
    port = server.port
    try:
        wait_http(f"http://127.0.0.1:{port}/_maintenance/health", timeout=90)
        for path, accept in [("/", "text/html"), ("/api/x", "application/json")]:
            status, headers, body = request(f"http://127.0.0.1:{port}", "GET", path, {"Accept": accept})
            assert status == 503, body[:200]
            assert headers["cache-control"] == "no-store"
            assert int(headers["retry-after"]) > 0
    finally:
        server.stop()
    output = log.read_text()
    assert "send_400_response" in output and "stock uvicorn" in output, output
    assert output.count("lacks what the shim's HTTP extension uses") == 1, output
    assert "Traceback" not in output, output
