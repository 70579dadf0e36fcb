"""Framework-neutral plumbing shared by the trainer callbacks: where progress goes, and never failing.

Standard library only: importing this module never imports torch, transformers or lightning.
"""

from __future__ import annotations

import atexit
import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from ..reporter import Reporter

logger = logging.getLogger("maintenance_shim.integrations")

Phase = Literal["training", "evaluating", "saving"]
TRAINING: Phase = "training"
EVALUATING: Phase = "evaluating"
SAVING: Phase = "saving"

ENV_FILE = "MAINT_PROGRESS_FILE"
ENV_URL = "MAINT_PUSH_URL"
# MAINT_LIGHTNING_AUTO=0 keeps Lightning's entry point from attaching the callback by itself.
ENV_AUTO = "MAINT_LIGHTNING_AUTO"
ENV_TOKEN = "MAINT_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
ENV_NODE = "MAINT_NODE"  # the fleet node this trainer runs on (with_maintenance.sh --rolling sets it)
PUSH_PATH = "/_maintenance/progress"


class Target(Protocol):
    """What a callback reports to: the progress file's Reporter or a PushReporter."""

    total: int | None

    def update(self, step: int, total: int | None = None, phase: str | None = None, message: str | None = None) -> bool:
        """Record a step; True when it went out (or was queued) now."""
        ...

    def close(self) -> None:
        """Send the latest update if it has not gone out yet."""
        ...


UNIX_PREFIX = "unix:"  # MAINT_PUSH_URL=unix:/run/maintenance-shim/admin.sock: the admin listener's socket


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the shim's default admin listener, admin.sock in its state directory)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def put_progress(endpoint: str, token: str, document: dict[str, object], timeout: float) -> None:
    """PUT one progress document to ``endpoint`` (from push_endpoint: http(s) or ``unix:PATH``); raises
    urllib.error.HTTPError for an answer >= 400 and OSError when nothing answers."""
    body = json.dumps(document).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if endpoint.startswith(UNIX_PREFIX):
        connection = _UnixConnection(endpoint[len(UNIX_PREFIX) :], timeout)
        try:
            connection.request("PUT", PUSH_PATH, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except http.client.HTTPException as error:
            raise OSError(f"{endpoint}: {error!r}") from None
        finally:
            connection.close()
        if response.status >= 400:
            raise urllib.error.HTTPError(endpoint, response.status, response.reason, response.headers, None)
        return
    request = urllib.request.Request(endpoint, data=body, method="PUT", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - checked to be http(s)
        pass


def push_endpoint(url: str) -> str:
    """The progress endpoint for a shim URL: a base URL gets ``/_maintenance/progress`` appended; the admin
    listener's Unix socket is ``unix:/absolute/path`` (the path of the socket, nothing after it)."""
    value = url.strip()
    if value.startswith(UNIX_PREFIX):
        if not value[len(UNIX_PREFIX) :].startswith("/"):
            raise ValueError(f"push URL unix:PATH needs an absolute path, not {url!r}")
        return value
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"push URL must be http://, https:// or unix:/path, not {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(PUSH_PATH):
        path += PUSH_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class PushReporter:
    """Push progress to ``PUT /_maintenance/progress`` from a background thread; never blocks the caller.

    Same pacing as :class:`maintenance_shim.reporter.Reporter`: at most once every ``min_interval``
    seconds, at once on a phase change and on the last step. Only the latest update waits to be sent; a
    slow or dead shim costs the training loop nothing. A failure is logged once, and pushing goes on.
    """

    def __init__(
        self,
        url: str,
        token: str,
        total: int | None = None,
        min_interval: float = 1.0,
        *,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        node: str | None = None,
    ) -> None:
        self.endpoint = push_endpoint(url)
        self.node = node
        self.total = total
        self.min_interval = min_interval
        self.timeout = timeout
        self.sent = 0
        self.failures = 0
        self._token = token
        self._clock = clock
        self._last_queued: float | None = None
        self._pending: tuple[int, int | None, str | None] | None = None
        self._latest: tuple[int, int | None, str | None] | None = None
        self._queued: tuple[int, int | None, str | None] | None = None
        self._closing = False
        self._warned = False
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Lightning's ddp_spawn and notebooks pickle the Trainer with its callbacks: no lock, no thread.
        state = self.__dict__.copy()
        del state["_condition"], state["_thread"]
        state["_pending"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._condition = threading.Condition()
        self._thread = None

    def update(self, step: int, total: int | None = None, phase: str | None = None, message: str | None = None) -> bool:
        """Record ``step``; queue it for sending unless the last one is under ``min_interval`` old."""
        if total is not None:
            self.total = total
        if step < 0 or (self.total is not None and step > self.total):
            raise ValueError(f"step {step} is outside 0..{self.total}")
        latest = self._latest = (step, self.total, phase)
        now = self._clock()
        final = self.total is not None and step >= self.total
        due = self._last_queued is None or now - self._last_queued >= self.min_interval
        queued_phase = None if self._queued is None else self._queued[2]
        if not (due or final or (phase is not None and phase != queued_phase)):
            return False
        self._queue(now, latest)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Queue the latest update if needed and wait up to ``timeout`` (default: the request timeout)."""
        if self._latest is not None and self._latest != self._queued:
            self._queue(self._clock(), self._latest)
        with self._condition:
            self._closing = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(self.timeout if timeout is None else timeout)

    def _queue(self, now: float, item: tuple[int, int | None, str | None]) -> None:
        self._last_queued = now
        self._queued = item
        with self._condition:
            self._pending = item
            self._closing = False
            self._condition.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="maintenance-shim-push", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._closing:
                    self._condition.wait()
                item, self._pending = self._pending, None
                if item is None:
                    self._thread = None
                    return
            self._send(item)

    def _send(self, item: tuple[int, int | None, str | None]) -> None:
        step, total, phase = item
        document: dict[str, object] = {"step": step, "total": total}
        if phase is not None:
            document["phase"] = phase
        if self.node is not None:
            document["node"] = self.node
        try:
            put_progress(self.endpoint, self._token, document, self.timeout)
        except urllib.error.HTTPError as error:
            self._failed(f"HTTP {error.code} {error.reason}")
        except (OSError, ValueError) as error:
            self._failed(str(error) or type(error).__name__)
        else:
            self.sent += 1

    def _failed(self, reason: str) -> None:
        self.failures += 1
        if not self._warned:
            self._warned = True
            logger.warning("cannot push progress to %s: %s (training goes on; not logged again)", self.endpoint, reason)


class ProgressSink:
    """The targets a callback reports to, resolved from its arguments or the environment; never raises.

    Explicit ``path`` / ``url`` win over the environment; with neither, ``MAINT_PROGRESS_FILE`` and
    ``MAINT_PUSH_URL`` (token ``MAINT_ADMIN_TOKEN``) are used, both when both are set. With no target at
    all the sink is a no-op that warns once, on the first report.
    """

    def __init__(
        self,
        owner: str,
        *,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        token: str | None = None,
        min_interval: float = 1.0,
        push_timeout: float = 2.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = dict(os.environ if environ is None else environ)
        self.owner = owner
        self.targets: list[Target] = []
        self.phase: Phase | None = None
        self.step: int | None = None
        self.total: int | None = None
        self.finished = False
        self._problems: list[str] = []
        self._warned: set[str] = set()
        self._exit_hook = False
        if path is None and url is None:
            path = env.get(ENV_FILE) or None
            url = env.get(ENV_URL) or None
        if token is None:
            token = env.get(ENV_TOKEN) or None
        node = env.get(ENV_NODE) or None
        if path is not None:
            self.targets.append(Reporter(path, min_interval=min_interval, node=node))
        if url is not None:
            if token is None:
                self._problems.append(f"push URL {url} given but no token ({ENV_TOKEN}); not pushing")
            else:
                try:
                    self.targets.append(
                        PushReporter(url, token, min_interval=min_interval, timeout=push_timeout, node=node)
                    )
                except ValueError as error:
                    self._problems.append(f"{error}; not pushing")
        if not self.targets and not self._problems:
            self._problems.append(f"no progress target: set {ENV_FILE} or {ENV_URL}, or pass path= or url=")

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled in another process (Lightning's ddp_spawn): its exit hook is not registered there.
        self.__dict__.update(state)
        self._exit_hook = False

    @property
    def enabled(self) -> bool:
        """Whether anything is reported at all."""
        return bool(self.targets)

    def report(self, step: int, total: int | None, phase: Phase) -> None:
        """Send ``step`` of ``total`` in ``phase`` to every target (paced by each); problems are logged once."""
        self._warn_problems()
        if total is not None and total < 1:
            total = None
        if total is not None and step > total:
            # An estimated total (Lightning's estimated_stepping_batches) can fall short; never claim past 100 %.
            self._warn_once("past-total", "step %d is past the total %d; reporting no total", step, total)
            total = None
        self.step, self.total, self.phase = step, total, phase
        self.finished = False
        if self.targets and not self._exit_hook:
            self._exit_hook = True
            atexit.register(self._at_exit)
        for target in self.targets:
            try:
                target.total = total  # None clears it: update(total=None) would keep the old one
                target.update(step, total, phase)
            except Exception as error:  # a progress report must never stop the training
                self._warn_once(f"update-{id(target)}", "progress report failed: %r", error)

    def finish(self, step: int, total: int | None) -> None:
        """The run completed: the last report has step == total (early stopping included); then close."""
        if step >= 1:
            total = step
        self.report(step, total, TRAINING)
        self.finished = True
        self.close()

    def abort(self) -> None:
        """The run stopped unfinished (an exception): last step kept, phase ``training``, flushed.

        A phase left at ``evaluating`` or ``saving`` would read as a long pause, never as a stall.
        """
        if self.step is not None and self.phase != TRAINING:
            self.report(self.step, self.total, TRAINING)
        self.close()

    def _at_exit(self) -> None:
        # The process ends (a crash the framework has no hook for): leave a state the shim can judge.
        if not self.finished:
            self.abort()

    def close(self) -> None:
        """Flush every target; bounded in time (a push waits at most its request timeout)."""
        for target in self.targets:
            try:
                target.close()
            except Exception as error:
                self._warn_once(f"close-{id(target)}", "progress report failed: %r", error)

    def _warn_problems(self) -> None:
        for problem in self._problems:
            self._warn_once(problem, "%s", problem)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s: " + message, self.owner, *args)
