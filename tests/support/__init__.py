"""Helpers every test module shares: ports for servers (picked, reserved, retried on EADDRINUSE), waiting
for a condition, a port or a URL, stopping a process by PID, one HTTP request, real shim processes, and the
shim's app in-process (httpx.ASGITransport, no socket).

Test modules import from here, never from one another; tests/conftest.py holds the fixtures.

Ports. A server the test runs in-process binds port 0 and reports the port it got. A server that takes its
port on the command line or in a config file (the shim, nginx, Caddy, HAProxy, Traefik, the stand-ins) is
started through `start_on_free_ports`: it picks ports with `free_port`, starts the server, and when the
server says the address is in use it stops it and starts again on fresh ports (a bounded number of times).
`free_port` itself keeps the window small: its ports lie below the kernel's ephemeral range (which port-0
binds and every outgoing connection draw from: a loaded test's clients are what took Traefik's port in
issue 26), are never handed out twice in a session, and are reserved across processes (other pytest runs
on the machine) by a lock file while they are new.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import hashlib
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple, TypeVar

import httpx

from maintenance_shim.supervise import serving_pid

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MAINT_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))

T = TypeVar("T")

# ---- ports ---------------------------------------------------------------------------------------------

_LOCKS = Path(tempfile.gettempdir()) / "maintenance-shim-test-ports"
_HANDED: set[int] = set()
_HELD: collections.deque[IO[bytes]] = collections.deque()
_KEEP_LOCKS = 64  # a port's lock is held over the next 63 picks: long past its server's bind


def _port_range() -> tuple[int, int]:
    """Ports to pick from: 10000 up to the start of the kernel's ephemeral range."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (10000, low) if low > 12000 else (low, 65536)


class PortInUse(Exception):
    """A server could not bind the port it was given (another process took it first): pick again."""


def free_port() -> int:
    """A loopback TCP port nothing listens on, for a server that takes its port from its arguments or a
    config file: start such a server with `start_on_free_ports`, which retries on EADDRINUSE. Also a port
    to find nobody on (a refused connection)."""
    _LOCKS.mkdir(exist_ok=True)
    low, high = _port_range()
    for _ in range(1000):
        port = random.randrange(low, high)
        if port in _HANDED:
            continue
        lock = (_LOCKS / str(port)).open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))
        except OSError:  # reserved by another test run, or in use
            lock.close()
            continue
        _HANDED.add(port)
        _HELD.append(lock)
        while len(_HELD) > _KEEP_LOCKS:
            _HELD.popleft().close()
        return port
    raise AssertionError(f"no free port in {low}-{high} after 1000 tries")


def build_wheel(source: Path, dest: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`pip wheel --no-deps` of the project at `source` into `dest` (the result, unchecked). Builds of one source
    tree take turns, across the suite's workers: setuptools writes build/ and *.egg-info inside the tree, and
    two builds at once collide there ("File exists: build/bdist.linux-x86_64/wheel/...dist-info")."""
    _LOCKS.mkdir(exist_ok=True)
    lock_path = _LOCKS / f"wheel-{hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]}.lock"
    with lock_path.open("ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(source)],
                              capture_output=True, text=True, timeout=timeout, check=False)


def in_use(text: str) -> bool:
    """Whether a server's output says that its address was in use (uvicorn, nginx, Caddy, HAProxy, Traefik,
    Python's http.server)."""
    return "address already in use" in text.lower()


def start_on_free_ports(start: Callable[[list[int]], T], count: int = 1, attempts: int = 5) -> T:
    """`start(ports)` with `count` fresh ports; again with fresh ones while it raises PortInUse (it has
    stopped what it started by then), at most `attempts` times."""
    for _ in range(attempts - 1):
        try:
            return start([free_port() for _ in range(count)])
        except PortInUse:
            continue
    return start([free_port() for _ in range(count)])


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def owns_port(pid: int, port: int) -> bool:
    """Whether process `pid` (or one of its children) holds a TCP socket listening on `port`: not merely
    whether something answers there, which another process on a raced port would."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    for process in _descendants(pid):
        try:
            names = os.listdir(f"/proc/{process}/fd")
        except OSError:
            continue
        for name in names:
            try:
                if os.readlink(f"/proc/{process}/fd/{name}") in inodes:
                    return True
            except OSError:
                continue
    return False


def wait_listening(
    pid: Callable[[], int | None] | int, ports: list[int], output: Callable[[], str], what: str,
    timeout: float = 30.0,
) -> None:
    """Wait until process `pid` listens on every one of `ports`. Raises PortInUse when its `output` says an
    address was in use (the caller stops it and picks again), AssertionError when it ends or the generous
    deadline passes; `pid` may be a function (a daemon's pidfile), None while there is no process yet."""
    deadline = time.monotonic() + timeout
    while True:
        current = pid() if callable(pid) else pid
        if current is not None and all(owns_port(current, port) for port in ports):
            return
        text = output()
        if in_use(text):
            raise PortInUse(f"{what}: {text[-500:]}")
        gone = current is not None and not Path(f"/proc/{current}").exists()
        if gone or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not listen on {ports} within {timeout} s:\n{text[-3000:]}")
        time.sleep(0.02)


@dataclass
class Server:
    """A server process the test started on ports of its own (stopped by PID)."""

    proc: subprocess.Popen[bytes]
    ports: list[int]
    log: Path

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        stop_pid(self.proc)


def start_server(
    command: Callable[[list[int]], list[str]], log: Path, count: int = 1, what: str = "the server",
    timeout: float = 30.0, cwd: Path | None = None, env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None, env_for: Callable[[list[int]], dict[str, str]] | None = None,
) -> Server:
    """Run `command(ports)` (output to `log`, environment `env` or `env_for(ports)`) until it listens on all
    `count` ports; on fresh ports again when one was taken (start_on_free_ports)."""

    def start(ports: list[int]) -> Server:
        log.unlink(missing_ok=True)
        with log.open("wb") as handle:
            proc = subprocess.Popen(command(ports), cwd=cwd, env=env_for(ports) if env_for else env,
                                    stdin=subprocess.DEVNULL, stdout=handle,
                                    stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
        server = Server(proc, ports, log)
        try:
            wait_listening(proc.pid, ports, server.output, what, timeout)
        except (PortInUse, AssertionError):
            server.stop()
            raise
        return server

    return start_on_free_ports(start, count)


# ---- waiting ---------------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], T], timeout: float = 30.0, what: str = "the condition",
               interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy (returned), with a generous deadline: the way
    to wait for a count, a state or a log line, instead of a fixed sleep followed by the assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {value!r})")
        time.sleep(interval)


def rss_kb(pid: int) -> int:
    """Resident memory of the shim's serving process, in KiB (`pid` is the shim as started)."""
    for line in Path(f"/proc/{serving_pid(pid)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test process environment without any MAINT_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def wait_http(url: str, timeout: float = 60.0) -> None:
    """Wait until `url` answers anything over HTTP (the deadline is generous: a busy machine starts slowly)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s") from None
            time.sleep(0.05)


@dataclass
class Shim:
    """A running `maintenance-shim serve` process."""

    proc: subprocess.Popen[bytes]
    ports: list[int]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """The admin listener (progress push, metrics, API docs): MAINT_ADMIN_LISTEN, on its own port."""
        return f"http://{self.env['MAINT_ADMIN_LISTEN']}"

    @property
    def admin_port(self) -> int:
        return int(self.env["MAINT_ADMIN_LISTEN"].rsplit(":", 1)[1])

    def url_for(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        stop_pid(self.proc)


ShimFactory = Callable[..., Shim]


class ShimLauncher:
    """Starts shim processes and stops them all (by PID) on close."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Shim] = []

    def __call__(
        self,
        services: list[str] | None = None,
        env: dict[str, str] | None = None,
        ports: list[int] | None = None,
        cwd: Path | None = None,
    ) -> Shim:
        """A started shim answering for `services` (on fresh ports, picked again if one was taken, unless
        the test gives `ports`) with an admin listener of its own unless `env` names one."""
        names = services or ["studio"]
        if ports is not None:
            return self._start(names, env or {}, ports, cwd)
        return start_on_free_ports(lambda picked: self._start(names, env or {}, picked, cwd), len(names) + 1)

    def _start(self, services: list[str], env: dict[str, str], ports: list[int], cwd: Path | None) -> Shim:
        listen_ports = ports[: len(services)]
        args = [sys.executable, "-m", "maintenance_shim", "serve"]
        for port, service in zip(listen_ports, services, strict=True):
            args += ["--listen", f"127.0.0.1:{port}={service}"]
        owned = list(listen_ports)
        if "MAINT_ADMIN_LISTEN" not in env:
            admin = ports[len(services)] if len(ports) > len(services) else free_port()
            env = {"MAINT_ADMIN_LISTEN": f"127.0.0.1:{admin}", **env}
            owned.append(admin)
        log = self.directory / f"shim-{len(self.started)}-{listen_ports[0]}.log"
        full_env = clean_env(env)
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                args, cwd=cwd or self.directory, env=full_env, stdout=handle, stderr=subprocess.STDOUT
            )
        shim = Shim(proc, listen_ports, log, full_env)
        self.started.append(shim)
        try:
            wait_listening(proc.pid, owned, shim.output, "the shim", timeout=60)
            # Generous: on a busy machine the first health answer waits for FastAPI's import (DeferredApp)
            # for many seconds; a shim that exited fails at once (wait_listening).
            wait_http(f"{shim.url}/_maintenance/health", timeout=60)
        except PortInUse:
            shim.stop()
            raise
        except (TimeoutError, AssertionError):
            shim.stop()
            raise AssertionError(f"shim did not start:\n{shim.output()}") from None
        return shim

    def close(self) -> None:
        for shim in self.started:
            shim.stop()


def wait_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts TCP connections on `port` (a server we did not start on a picked port;
    for our own, wait_listening also checks that it is ours)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port} after {timeout}s") from None
            time.sleep(0.02)


def stop_pid(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 10.0) -> None:
    """SIGTERM the process we started, wait, then SIGKILL: only ever a PID we hold a handle to."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Answer(NamedTuple):
    """An HTTP answer: status, headers (lower-cased names, last value wins) and body; `text` is the body
    decoded. Unpacks as (status, headers, body)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def request(
    target: Shim | InProcess | str | int,
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    host: str | None = None,
    close: bool = False,
    timeout: float = 10,
) -> Answer:
    """One request on a fresh connection (or in-process) to a shim, a URL or a loopback port; `host` sets
    the Host header, `close` sends Connection: close (as the load generators do)."""
    all_headers = dict(headers or {})
    if close:
        all_headers = {"Connection": "close", **all_headers}
    if host:
        all_headers["Host"] = host
    if isinstance(target, InProcess):
        return Answer(*target.request(method, path, all_headers, body))
    if isinstance(target, int):
        address, port = "127.0.0.1", target
    else:
        url = target.url if isinstance(target, Shim) else target
        address, _, text = url.removeprefix("http://").rpartition(":")
        port = int(text)
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


class InProcess:
    """The shim's whole ASGI app, called through httpx.ASGITransport: for tables of requests that need no
    socket (negotiation, formats, headers). Settings come from `env` alone, never from os.environ."""

    def __init__(self, env: dict[str, str] | None = None, services: list[str] | None = None) -> None:
        from maintenance_shim.main import create_app
        from maintenance_shim.settings.shim import load_settings

        names = services or ["studio"]
        self.ports = [9000 + index for index in range(len(names))]
        listen = [f"127.0.0.1:{port}={name}" for port, name in zip(self.ports, names, strict=True)]
        environ = {"MAINT_ADMIN_LISTEN": "127.0.0.1:9999", **(env or {})}
        settings = load_settings(environ=environ, overrides={"listen": listen})
        self.app = create_app(settings)
        self.url = f"http://127.0.0.1:{self.ports[0]}"
        self.admin_url = "http://127.0.0.1:9999"

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        url: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        # Header values as bytes (latin-1), like http.client sends them: httpx would refuse non-ASCII text.
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url=url or self.url) as client:
                return await client.request(method, path, headers=raw, content=body)

        response = asyncio.run(call())
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content
