"""The shim's extension of uvicorn: limits in the HTTP protocol, heads written whole, the server's tick.

`http_protocol()` is the one door in: it hands out the extended protocol when the installed uvicorn still
has everything contract.py names, and otherwise stock uvicorn's with its own limits and one warning, so a
renamed private member upstream costs the fast path and the finer limits, never the 503s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import contract
from .limits import Limits

if TYPE_CHECKING:
    from .protocol import ConnectionGuard

logger = logging.getLogger("maintenance_shim")

__all__ = ["HttpChoice", "Limits", "http_protocol"]


@dataclass(frozen=True)
class HttpChoice:
    """What uvicorn.Config gets for `http`, the guard the server sweeps (None on stock uvicorn), extra
    Config arguments, and a line for the log."""

    http: Any
    guard: ConnectionGuard | None
    description: str
    config: dict[str, Any] = field(default_factory=dict)


def http_protocol(limits: Limits, answer_now: Any = None) -> HttpChoice:
    """The extended protocol bound to `limits` (and the app's `answer_now`, see protocol.py), or stock
    uvicorn's where this uvicorn cannot carry it."""
    gone = contract.missing()
    if not gone:
        try:
            from .protocol import protocol_class
        except Exception as error:  # an import-time failure of the extension must not stop the 503s
            gone = [f"{type(error).__name__}: {error}"]
        else:
            http = protocol_class(limits, answer_now)
            return HttpChoice(http, http.guard, http.guard.describe())
    logger.warning(
        "this uvicorn lacks what the shim's HTTP extension uses (%s): serving on stock uvicorn, with its own "
        "connection limit and head-size limit only (install a uvicorn within pyproject.toml's bounds)",
        ", ".join(gone[:8]) + (f" and {len(gone) - 8} more" if len(gone) > 8 else ""),
    )
    stock = {"limit_concurrency": limits.max_connections, "h11_max_incomplete_event_size": limits.max_header_bytes}
    return HttpChoice(
        "h11",
        None,
        f"stock uvicorn (h11): at most {limits.max_connections} connections, "
        f"heads up to {limits.max_header_bytes} bytes",
        stock,
    )
