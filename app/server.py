"""Run the shim: bind every listener, then one uvicorn server serves all sockets."""

from __future__ import annotations

import errno
import gc
import logging
import os
import resource
import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from .logsetup import configure_logging, throttle_tracebacks, uvicorn_log_config
from .main import create_app, create_tracker
from .settings.env import SettingsError
from .settings.shim import AdminAddress, Listener, Settings
from .supervise import Supervisor, server_signals
from .uvicorn_ext import Limits, http_protocol
from .uvicorn_ext.server import ShimServer, _RefusedHandshakeFilter

logger = logging.getLogger("maintenance_shim")
EXIT_BIND_FAILED = 1
BACKLOG = 2048
WAITING_FOR_PORT = "loaded and retrying"  # in the log line scripts/lib/port.sh waits for


class BindError(Exception):
    """A listener's address cannot be bound."""


def bind(listener: Listener, retry_seconds: float = 0.0, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket for `listener`; raises BindError with a readable reason (see bind_all)."""
    return bind_all([listener], retry_seconds, backlog)[0]


def _listen(listener: Listener, backlog: int) -> socket.socket:
    """One attempt: a listening socket for `listener`, or the OSError of the bind (BindError: unresolvable)."""
    try:
        infos = socket.getaddrinfo(listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise BindError(f"cannot resolve {listener.host}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def bind_all(listeners: list[Listener], retry_seconds: float = 0.0, backlog: int = 2048) -> list[socket.socket]:
    """A listening TCP socket for each of `listeners`, in their order; raises BindError with a readable
    reason (the sockets bound so far closed).

    While an address is in use, binding it is retried every 10 ms for `retry_seconds`, the others being
    bound as soon as they are free (the services of port mode stop in parallel, in any order), and the
    first refusal of each is logged (WAITING_FOR_PORT): in port mode the scripts start the shim before they
    stop the services, wait for that line (the app is built by then), then stop them; the shim takes each
    port the moment it is free and listens at once, so clients queue instead of being refused.
    """
    bound: dict[int, socket.socket] = {}
    waiting: set[int] = set()
    deadline = time.monotonic() + retry_seconds
    try:
        while True:
            for index, listener in enumerate(listeners):
                if index in bound:
                    continue
                try:
                    bound[index] = _listen(listener, backlog)
                except OSError as error:
                    if error.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                        raise BindError(f"cannot listen on {listener.host}:{listener.port}: {error.strerror}") from None
                    if index not in waiting:  # the scripts' port mode waits for this line before stopping
                        waiting.add(index)
                        logger.warning("%s:%s is in use: %s every 10 ms for up to %g s (MAINT_BIND_RETRY_SECONDS)",
                                       listener.host, listener.port, WAITING_FOR_PORT, retry_seconds)
            if len(bound) == len(listeners):
                return [bound[index] for index in range(len(listeners))]
            time.sleep(0.01)
    except BindError:
        for sock in bound.values():
            sock.close()
        raise


def bind_unix(path: Path, backlog: int = 2048) -> socket.socket:
    """A listening Unix socket at `path` (mode 0660); a stale socket file from a dead shim is replaced."""
    if path.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # nothing listens: left behind by a shim that died
        else:
            raise BindError(f"cannot listen on unix:{path}: another process is listening there")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o117)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise BindError(f"cannot listen on unix:{path}: {error.strerror}") from None
    sock.set_inheritable(True)
    return sock


def bind_admin(address: AdminAddress) -> socket.socket:
    """The admin listener's socket; a BindError names MAINT_ADMIN_LISTEN."""
    try:
        if address.path is not None:
            return bind_unix(address.path)
        return bind(Listener(address.host, address.port, "", "api"))
    except BindError as error:
        raise BindError(f"MAINT_ADMIN_LISTEN: {error} (choose another address, or off)") from None


def bind_default_admin(address: AdminAddress) -> socket.socket | None:
    """The default admin listener, admin.sock in the state directory (created 0700 when missing). It never
    stops start-up: when it cannot be had (another live shim there, a path too long) this shim runs without
    one, and says how to name another (MAINT_ADMIN_LISTEN)."""
    assert address.path is not None
    try:
        if len(bytes(address.path)) > 107:
            raise BindError(f"cannot listen on unix:{address.path}: the path is longer than 107 bytes")
        address.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return bind_unix(address.path)
    except (BindError, OSError) as error:
        logger.warning(
            "no admin listener: %s; set MAINT_ADMIN_LISTEN (unix:PATH or HOST:PORT) or MAINT_STATE_DIR for one",
            error,
        )
        return None



FD_RESERVE = 64  # descriptors kept free for listeners, logs, followed files, threads and the event loop
FD_CEILING = 1 << 20  # what an unlimited hard limit is raised to when fs.nr_open cannot be read


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (at most fs.nr_open); returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        ceiling = FD_CEILING
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return ceiling if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:
        logger.warning("cannot raise the file-descriptor limit from %d to %d: %s", soft, target, error)
        return soft
    return target


def connection_limit(wanted: int, fd_limit: int) -> int:
    """MAINT_MAX_CONNECTIONS, lowered so that accepting never runs out of file descriptors."""
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 16
    fitting = max(fd_limit - in_use - FD_RESERVE, 1)
    if fitting < wanted:
        logger.warning(
            "MAINT_MAX_CONNECTIONS is %d but the file-descriptor limit is %d: serving at most %d connections "
            "(raise LimitNOFILE or `ulimit -n`)",
            wanted,
            fd_limit,
            fitting,
        )
        return fitting
    return wanted


def settle_heap() -> None:
    """Keep the garbage collector off the start-up heap and out of the request path.

    Everything loaded so far lives as long as the process: `gc.freeze()` moves it out of the collector's
    sight, and a larger first-generation threshold makes collections rare (requests allocate little that
    reference counting does not free). Measured in bench/: p99 at 256 connections 55 ms -> 18 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def serve(settings: Settings, reload_settings: Callable[[], Settings] | None = None) -> int:
    """Serve until SIGINT/SIGTERM/SIGQUIT; on SIGHUP (supervised), `reload_settings` gives the settings the
    next server is built from. Returns the process exit code."""
    configure_logging(settings.log_level, settings.log_format)
    main_pid = os.getpid()
    started = datetime.now().astimezone()  # a duration ETA (MAINT_ETA=45m) counts from here, reloads too
    app = create_app(settings, create_tracker(settings, started))
    sockets: list[socket.socket] = []
    admin = settings.admin_address
    try:
        sockets.extend(bind_all(list(settings.listeners), settings.bind_retry_seconds, BACKLOG))
        if admin is not None and admin.default:
            admin_socket = bind_default_admin(admin)
            if admin_socket is None:
                admin = None
            else:
                sockets.append(admin_socket)
        elif admin is not None:
            sockets.append(bind_admin(admin))
    except BindError as error:
        for sock in sockets:
            sock.close()
        logger.error("%s", error)
        return EXIT_BIND_FAILED
    for listener in settings.listeners:
        logger.info("answering for %s on %s:%s", listener.service or "an unnamed service", listener.host, listener.port)
    if admin is not None:
        logger.info("admin listener (progress push, metrics, API docs) on %s", admin)
    else:
        logger.info("no admin listener (MAINT_ADMIN_LISTEN=off): progress comes from files and logs only")
    run_server = _server_runner(settings, app, sockets, announce=True)

    def reload() -> Callable[[], int]:
        assert reload_settings is not None
        fresh = reload_settings()
        if fresh.listeners != settings.listeners or fresh.admin_address != admin:
            raise SettingsError(["MAINT_LISTEN and MAINT_ADMIN_LISTEN change only with a restart"])
        configure_logging(fresh.log_level, fresh.log_format)
        return _server_runner(fresh, create_app(fresh, create_tracker(fresh, started)), sockets, announce=False)

    settle_heap()
    try:
        if not settings.supervise:
            return run_server()
        return Supervisor(run_server, settings.state_dir, sockets,
                          reload=reload if reload_settings is not None else None).run()
    finally:
        if admin is not None and admin.path is not None and os.getpid() == main_pid:
            admin.path.unlink(missing_ok=True)


def _server_runner(settings: Settings, app: ASGIApp, sockets: list[socket.socket], announce: bool) -> Callable[[], int]:
    """The function that serves `app` on `sockets` with these settings' limits (in the forked server)."""
    limits = Limits(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        header_timeout=settings.header_timeout,
        max_connections=connection_limit(settings.max_connections, raise_fd_limit()),
    )
    http = http_protocol(limits, getattr(app, "answer_now", None))
    if announce:
        logger.info("limits: %s", http.description)
    config = uvicorn.Config(
        app,
        http=http.http,
        **http.config,
        lifespan="on",
        access_log=False,
        log_config=uvicorn_log_config(settings.log_format),
        server_header=False,
        proxy_headers=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
        backlog=BACKLOG,
    )
    logging.getLogger("uvicorn.error").addFilter(_RefusedHandshakeFilter())
    throttle_tracebacks()  # uvicorn.Config applied uvicorn's handlers: a traceback per connection is not logged

    def run_server() -> int:
        server_signals(settings.supervise)
        server = ShimServer(config, http.guard, supervised=settings.supervise)
        # Server.run (not asyncio.run(server.serve())) keeps uvicorn's uvloop loop factory.
        server.run(sockets=sockets)
        return 0 if server.started else EXIT_BIND_FAILED

    return run_server
