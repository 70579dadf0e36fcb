"""A small real stand-in for an inference service, plus the hook commands the scripts run on it.

    python tests/support/standin.py serve --name studio --port 7860 [--host 127.0.0.1] [--node gpu-1]
                                  [--unhealthy-file F] [--slow SECONDS]
    python tests/support/standin.py start --pidfile F -- --name studio --port 7860 ...   (detached; idempotent)
    python tests/support/standin.py stop --pidfile F                                      (SIGTERM, wait; idempotent)
    python tests/support/standin.py drain --url http://127.0.0.1:7860 [--timeout S]       (wait for 0 in flight)

`serve` answers 200 `<name> <METHOD> <path>` (then ` node <node>` with --node) on every path after
`--slow` seconds, `GET /health` 200 (503 while the unhealthy file exists) and `GET /_inflight` with the
number of requests in progress.
Standard library only, so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self, port: int, name: str, slow: float, unhealthy: Path | None, host: str = "127.0.0.1", node: str = ""
    ) -> None:
        super().__init__((host, port), _Handler)
        self.name = name
        self.node = node
        self.slow = slow
        self.unhealthy = unhealthy
        self.inflight = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        # Head and body in one write, as the shim sends them (protocol.WholeAnswerCycle): a stand-in killed
        # between two writes would leave the proxy half an answer to pass on (measured: 1 cut-short answer
        # in a Caddy kill -9 run), a failure of the service's, not of the switch these tests are about.
        self._headers_buffer.append(b"\r\n" + (body if self.command != "HEAD" else b""))
        self.flush_headers()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/health":
            unhealthy = self.server.unhealthy is not None and self.server.unhealthy.exists()
            self._answer(503 if unhealthy else 200, "unhealthy" if unhealthy else "ok")
            return
        if self.path == "/_inflight":
            self._answer(200, str(self.server.inflight))
            return
        with self.server.lock:
            self.server.inflight += 1
        try:
            if self.server.slow:
                time.sleep(self.server.slow)
            tail = f" node {self.server.node}" if self.server.node else ""
            self._answer(200, f"{self.server.name} {self.command} {self.path}{tail}")
        finally:
            with self.server.lock:
                self.server.inflight -= 1

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle


def _serve(args: argparse.Namespace) -> int:
    unhealthy = Path(args.unhealthy_file) if args.unhealthy_file else None
    server = _Server(args.port, args.name, args.slow, unhealthy, args.host, args.node)

    def stop(signum: int, frame: FrameType | None) -> None:
        # Close the listening socket at once (like uvicorn), then exit.
        server.socket.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.05)
    return 0


def _pid_alive(pidfile: Path) -> int | None:
    """The PID in `pidfile` when it is a live stand-in, else None."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"standin.py" in cmdline and state not in ("Z", "X") else None


def _start(args: argparse.Namespace) -> int:
    pidfile = Path(args.pidfile)
    if _pid_alive(pidfile):
        return 0
    log = open(args.log or os.devnull, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "serve", *args.serve_args],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        close_fds=True,
    )
    pidfile.write_text(f"{proc.pid}\n")
    return 0


def _stop(args: argparse.Namespace) -> int:
    pidfile = Path(args.pidfile)
    pid = _pid_alive(pidfile)
    if pid is None:
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while _pid_alive(pidfile) and time.monotonic() < deadline:
        time.sleep(0.01)
    if _pid_alive(pidfile):
        os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return 0


def _drain(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(args.url.rstrip("/") + "/_inflight", timeout=2) as response:
                if response.read().strip() == b"0":
                    return 0
        except OSError:
            return 0  # not answering: nothing in flight
        time.sleep(0.05)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="standin.py")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("--name", required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--node", default="")
    serve.add_argument("--slow", type=float, default=0.0)
    serve.add_argument("--unhealthy-file")
    start = commands.add_parser("start")
    start.add_argument("--pidfile", required=True)
    start.add_argument("--log")
    start.add_argument("serve_args", nargs=argparse.REMAINDER)
    stop = commands.add_parser("stop")
    stop.add_argument("--pidfile", required=True)
    stop.add_argument("--timeout", type=float, default=5.0)
    drain = commands.add_parser("drain")
    drain.add_argument("--url", required=True)
    drain.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.command == "start" and args.serve_args[:1] == ["--"]:
        args.serve_args = args.serve_args[1:]
    handlers = {"serve": _serve, "start": _start, "stop": _stop, "drain": _drain}
    return int(handlers[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
