"""The limits of one serving process, as the settings give them (whichever HTTP protocol enforces them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """The limits of one serving process (from Settings; `max_connections` already fits the fd limit)."""

    max_header_bytes: int = 32768
    max_headers: int = 100
    header_timeout: float = 10.0
    max_connections: int = 4096
SWEEP_TICKS = 2  # uvicorn ticks every 0.1 s: deadlines are checked every 0.2 s
