"""uvicorn's Server with the deadline sweep on its tick, the readiness signal and the orphan check."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING

import uvicorn

from ..supervise import signal_ready
from .limits import SWEEP_TICKS

if TYPE_CHECKING:
    from .protocol import ConnectionGuard

logger = logging.getLogger("maintenance_shim")


class _RefusedHandshakeFilter(logging.Filter):
    """Drops uvicorn's error for a WebSocket refused with an HTTP 503, which is what we mean to do.

    uvicorn's websockets-sansio protocol logs "returned without completing handshake" even after the
    app answered the handshake through the `websocket.http.response` extension.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


class ShimServer(uvicorn.Server):
    """uvicorn's Server, sweeping expired request deadlines on its 0.1 s tick."""

    def __init__(self, config: uvicorn.Config, guard: ConnectionGuard | None, supervised: bool = False) -> None:
        super().__init__(config)
        self.guard = guard
        self.supervisor = os.getppid() if supervised else 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            signal_ready()

    async def on_tick(self, counter: int) -> bool:
        if self.guard is not None and counter % SWEEP_TICKS == 0:
            self.guard.sweep(self.server_state.connections, asyncio.get_running_loop().time())
        if self.supervisor and counter % 50 == 0 and os.getppid() != self.supervisor:
            logger.warning(
                "the supervisor (PID %d) is gone: serving on unsupervised (stop this server, PID %d, with SIGTERM)",
                self.supervisor,
                os.getpid(),
            )
            self.supervisor = 0
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.guard is not None:
            self.guard.flush_all(asyncio.get_running_loop().time())
        await super().shutdown(sockets)
