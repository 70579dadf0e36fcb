"""Keep the serving process alive: the parent holds the bound sockets and forks a server; when the server
dies (killed, out of memory, crashed), a new one is forked at once on the same sockets.

The listening sockets never close, so clients that arrive while a new server starts wait in the kernel's
backlog instead of being refused: a proxy in front sees a slow answer, never a 502. The parent does no
work of its own: everything is imported and built before the first fork, so a restart costs a fork and
the server's start-up (tens of milliseconds), not an interpreter start.

If the parent itself is killed, the server keeps serving, unsupervised: the state file names it, so the
scripts can still stop it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from .statedir import SERVING_FILE

logger = logging.getLogger("maintenance_shim")

STATE_FILE = SERVING_FILE
CRASH_LIMIT = 5  # restarts within CRASH_WINDOW seconds before giving up: a server that cannot stay up
CRASH_WINDOW = 30.0
EXIT_GAVE_UP = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class ServingState:
    """What the state file says: who serves, who supervises, how often the server was restarted."""

    supervisor: int
    serving: int
    serving_start: str  # /proc/PID/stat start time (clock ticks since boot), to tell a reused PID apart
    restarts: int
    last_exit: str | None  # how the previous server ended, e.g. "killed by SIGKILL"
    last_restart_at: str | None  # ISO-8601


def read_serving_state(state_dir: Path) -> ServingState | None:
    """The state file the supervisor keeps in `state_dir`, or None when it is absent or not its shape."""
    try:
        data = json.loads((state_dir / SERVING_FILE).read_text(encoding="utf-8"))
        return ServingState(**{name: data[name] for name in ServingState.__dataclass_fields__})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def serving_pid(pid: int) -> int:
    """The process that serves requests for a shim started as `pid`: the one child its supervisor forks,
    or `pid` itself when it serves in one process (MAINT_SUPERVISE=false). Linux's /proc; for tests and bench/."""
    with contextlib.suppress(OSError, ValueError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) == 1:
            return int(children[0])
    return pid


def describe_status(status: int) -> str:
    """A wait status as words: `exited with 1`, `killed by SIGKILL`."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}"
    return f"exited with {os.WEXITSTATUS(status)}"


def proc_starttime(pid: int) -> str:
    """Field 22 of /proc/PID/stat, as the scripts read it; "" when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


class Supervisor:
    """Fork `serve_child` (returns an exit code) and fork it again whenever it dies unasked."""

    def __init__(
        self,
        serve_child: Callable[[], int],
        state_dir: Path | None = None,
        sockets: list[socket.socket] | None = None,
        crash_limit: int = CRASH_LIMIT,
        crash_window: float = CRASH_WINDOW,
    ) -> None:
        """`sockets` are the listeners the server inherits; the parent closes its copies when told to stop,
        so that the ports are free as soon as the server has closed its own (port takeover hands them back)."""
        self.serve_child = serve_child
        self.sockets = sockets or []
        self.state_path = state_dir / STATE_FILE if state_dir is not None else None
        self.crash_limit = crash_limit
        self.crash_window = crash_window
        self.child = 0
        self.stop_signal: int | None = None
        self.restarts = 0
        self._recent: deque[float] = deque(maxlen=crash_limit)

    def run(self) -> int:
        """Serve until asked to stop; returns the exit code for the process."""
        ready_r, ready_w = os.pipe()
        previous = {sig: signal.signal(sig, self._on_stop) for sig in _STOP_SIGNALS}
        last_exit: str | None = None
        try:
            while True:
                self.child = self._fork(ready_r, ready_w)
                if self.stop_signal is not None:  # asked to stop while forking
                    self._forward(self.stop_signal)
                self._write_state(last_exit)
                status = self._wait(self.child)
                started = self._drain(ready_r)
                how = describe_status(status)
                stopped = (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0) or (
                    os.WIFSIGNALED(status) and os.WTERMSIG(status) in _STOP_SIGNALS
                )  # uvicorn ends a graceful stop by raising the signal it caught again
                if self.stop_signal is not None:
                    return 0 if stopped else _exit_code(status)
                if stopped:
                    logger.info("the server (PID %d) was stopped (%s): stopping too", self.child, how)
                    return 0
                if not started:
                    # It never got to serve (a listener it could not use, a start-up error): no retry helps.
                    logger.error("the server (PID %d) %s before it served; not restarting it", self.child, how)
                    return _exit_code(status)
                now = time.monotonic()
                self._recent.append(now)
                if len(self._recent) == self.crash_limit and now - self._recent[0] < self.crash_window:
                    logger.error(
                        "the server %s; %d restarts in %.0f s: giving up",
                        how,
                        self.crash_limit,
                        now - self._recent[0],
                    )
                    return EXIT_GAVE_UP
                self.restarts += 1
                last_exit = how
                logger.error("the server (PID %d) %s; starting a new one on the same sockets", self.child, how)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(ready_r)
            os.close(ready_w)
            self._clear_state()

    def _fork(self, ready_r: int, ready_w: int) -> int:
        pid = os.fork()
        if pid == 0:  # the server
            code = 70
            try:
                os.close(ready_r)
                for sig in _STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own once it runs
                os.environ["MAINT_SERVING_READY_FD"] = str(ready_w)
                code = self.serve_child()
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        return pid

    def _wait(self, pid: int) -> int:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                return status
            except ChildProcessError:
                return 0
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
                continue

    @staticmethod
    def _drain(ready_r: int) -> bool:
        """Whether the server said it was serving (one byte on the pipe); empties the pipe."""
        os.set_blocking(ready_r, False)
        try:
            return bool(os.read(ready_r, 64))
        except BlockingIOError:
            return False

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signal = signum
        self._forward(signum)
        for sock in self.sockets:
            sock.close()

    def _forward(self, signum: int) -> None:
        if self.child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signum)

    def _write_state(self, last_exit: str | None) -> None:
        if self.state_path is None:
            return
        state = ServingState(
            supervisor=os.getpid(),
            serving=self.child,
            serving_start=proc_starttime(self.child),
            restarts=self.restarts,
            last_exit=last_exit,
            last_restart_at=time.strftime("%Y-%m-%dT%H:%M:%S%z") if last_exit else None,
        )
        temporary = self.state_path.with_name(f".{STATE_FILE}.{os.getpid()}")
        try:
            temporary.write_text(json.dumps(asdict(state)) + "\n")
            temporary.replace(self.state_path)
        except OSError as error:
            logger.warning("cannot write %s: %s", self.state_path, error)

    def _clear_state(self) -> None:
        if self.state_path is None:
            return
        with contextlib.suppress(OSError):
            self.state_path.unlink(missing_ok=True)


def signal_ready() -> None:
    """In the server: tell the supervisor that serving has begun (no-op when not supervised)."""
    fd = os.environ.pop("MAINT_SERVING_READY_FD", None)
    if fd is None:
        return
    try:
        os.write(int(fd), b"1")
        os.close(int(fd))
    except (OSError, ValueError):
        pass


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
