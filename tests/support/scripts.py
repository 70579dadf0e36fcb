"""The script tests' pieces, shared by tests/test_scripts*.py and the others that drive the scripts:
stand-in services run through the hooks, a load of clients on fresh connections (Hammer),
and Setup (two running services, an env file, the script runner). The `setup` fixture is in conftest.py.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import Answer, PortInUse, request, wait_listening
from tests.support.nginx import HOSTS, Nginx

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
STANDIN = Path(__file__).resolve().parent / "standin.py"
ARTIFACTS = Path(os.environ.get("MAINT_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
SERVICES = ("studio", "video")


def _shim_cmd() -> str:
    found = Path(sys.executable).with_name("maintenance-shim")
    path = str(found) if found.exists() else shutil.which("maintenance-shim")
    if not path:
        pytest.fail("the maintenance-shim command is not installed (pip install -e .)")
    return path


def _require(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if not path:
        pytest.fail(f"{tool} is not installed; these tests need it (CI installs it)")
    return path


# bash's own error lines ("lib.sh: line 414: ...: No such file or directory"): a script must never print
# one, on any path; every script run by the suite is checked (issue 22).
STRAY_LINE = re.compile(r"line [0-9]+:")


def assert_no_stray_lines(*outputs: str | bytes | None) -> None:
    """Fail on any line of a script's output that bash printed as an error of its own."""
    for output in outputs:
        text = output.decode(errors="replace") if isinstance(output, bytes) else (output or "")
        stray = [line for line in text.splitlines() if STRAY_LINE.search(line)]
        assert not stray, f"a script printed bash's own error line(s): {stray}"


class ScriptProcess(subprocess.Popen[str]):
    """A script run in the background; its output is checked for stray bash error lines when collected."""

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        out, err = super().communicate(input, timeout)
        assert_no_stray_lines(out, err)
        return out, err


def run_script(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """subprocess.run of a script with its output captured as text, checked for stray bash error lines."""
    done: subprocess.CompletedProcess[str] = subprocess.run(args, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    assert_no_stray_lines(done.stdout, done.stderr)
    return done


def _write_artifact(name: str, text: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_text(text)
    print(f"\n[{name}]\n{text}")


# ---- the stand-in services -----------------------------------------------------------------------


@dataclass
class Service:
    """A stand-in service managed through the hooks (start/stop commands with a pidfile)."""

    name: str
    port: int
    dir: Path

    @property
    def pidfile(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def unhealthy_file(self) -> Path:
        return self.dir / f"{self.name}.unhealthy"

    def hook(self, action: str) -> str:
        py, script = shlex.quote(sys.executable), shlex.quote(str(STANDIN))
        if action == "start":
            return (f"{py} {script} start --pidfile {self.pidfile} --log {self.dir}/{self.name}.log -- "
                    f"--name {self.name} --port {self.port} --unhealthy-file {self.unhealthy_file}")
        if action == "stop":
            return f"{py} {script} stop --pidfile {self.pidfile}"
        return f"{py} {script} drain --url http://127.0.0.1:{self.port} --timeout 10"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"standin.py" in cmdline and stat not in ("Z", "X") else None

    def running(self) -> bool:
        return self.pid() is not None

    def log(self) -> str:
        path = self.dir / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Start it through its hook and wait until it listens; PortInUse when its port was taken (stopped
        by then: start it with start_on_free_ports)."""
        before = len(self.log())  # the log is appended to: only this start's lines count
        subprocess.run(self.hook("start"), shell=True, check=True)
        try:
            wait_listening(self.pid, [self.port], lambda: self.log()[before:], f"stand-in {self.name}")
        except PortInUse:
            self.kill()
            raise

    def kill(self) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


@dataclass
class Target:
    name: str
    port: int
    host: str | None = None


@dataclass
class Hammer:
    """Client threads sending requests (one connection each) to every target until stopped."""

    targets: list[Target]
    results: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Hammer:
        for target in self.targets:
            self.results[target.name] = []
            thread = threading.Thread(target=self._run, args=(target,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, target: Target) -> None:
        out = self.results[target.name]
        n = 0
        while not self._stop.is_set():
            n += 1
            path = f"/api/generate?n={n}" if n % 2 else f"/page/{n}"
            start = time.monotonic()
            try:
                answer = request(target.port, "GET", path, host=target.host, close=True, timeout=10)
                if answer.status == 200 and answer.text.startswith(f"{target.name} "):
                    kind = "service-200"
                elif answer.status == 503 and int(answer.headers.get("retry-after", "0")) >= 1:
                    kind = "shim-503"
                else:
                    kind = f"BAD {answer.status} {answer.text[:80]!r}"
            except ConnectionRefusedError:
                kind = "refused"
            except ConnectionResetError:
                # a connection queued on a listening socket that was just closed: no HTTP answer, like
                # a refused connection (only expected in port mode, where the listener changes hands)
                kind = "reset"
            except (OSError, http.client.HTTPException, ValueError) as error:
                # a cut-short answer (IncompleteRead, BadStatusLine) or an unreadable Retry-After is a
                # failed request: recorded, so the thread never dies and the test names it
                kind = f"BAD {type(error).__name__}: {error}"
            out.append((start, time.monotonic(), kind))
            time.sleep(0.004)

    def counts(self) -> Counter[str]:
        return Counter(kind for rows in self.results.values() for _, _, kind in rows)

    def failures(self) -> list[str]:
        return [kind for kind in self.counts() if kind.startswith("BAD")]

    def longest_refused(self, since: float = 0.0) -> float:
        """Longest time with only refused connections on one target: from the end of the last answered
        request before a refused run to the start of the first answered one after it (an upper bound)."""
        longest = 0.0
        for rows in self.results.values():
            last_ok_end: float | None = None
            in_run = False
            for start, end, kind in rows:
                if start < since:
                    continue
                if kind in ("refused", "reset"):
                    in_run = True
                    continue
                if in_run and last_ok_end is not None:
                    longest = max(longest, start - last_ok_end)
                in_run = False
                last_ok_end = end
        return longest

    def wait_for(self, kind: str, timeout: float = 5) -> None:
        """Wait until every target has seen `kind` since now."""
        marks = {name: len(rows) for name, rows in self.results.items()}
        deadline = time.monotonic() + timeout
        while any(all(k != kind for _, _, k in self.results[n][marks[n]:]) for n in marks):
            assert time.monotonic() < deadline, f"not every target saw {kind}: {self.counts()}"
            time.sleep(0.02)


# ---- the setup: services, env file, script runner -------------------------------------------------


@dataclass
class Setup:
    tmp: Path
    services: dict[str, Service]
    settings: dict[str, str]
    nginx: Nginx | None = None

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def env_file(self) -> Path:
        return self.tmp / "maintenance.env"

    def write_env(self, **overrides: str) -> None:
        self.settings.update(overrides)
        lines = [f"{key}={shlex.quote(value)}" for key, value in self.settings.items()]
        self.env_file.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
        env["MAINT_ENV_FILE"] = str(self.env_file)
        return env

    def run(self, script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_script([str(SCRIPTS / script), *args], env=self.env(), cwd=self.tmp, timeout=timeout)

    def popen(self, script: str, *args: str) -> subprocess.Popen[str]:
        return ScriptProcess(
            [str(SCRIPTS / script), *args], env=self.env(), cwd=self.tmp, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )

    def state(self) -> dict[str, str]:
        path = self.state_dir / "state"
        if not path.exists():
            return {}
        values: dict[str, str] = {}
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key] = shlex.split(value)[0] if value else ""
        return values

    def shim_pids(self) -> list[int]:
        """Live shim processes recorded in the state (current or last)."""
        pids = []
        for name in ("state", "state.last"):
            path = self.state_dir / name
            if path.exists():
                pids += [int(v) for v in re.findall(r"^S_SHIM_PID=(\d+)$", path.read_text(), re.M)]
        serving = self.state_dir / "shim-serving.json"
        if serving.exists():  # the server a supervisor forked (it outlives a killed supervisor)
            pids.append(json.loads(serving.read_text())["serving"])
        alive = []
        for pid in set(pids):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"serve" in cmdline and stat not in ("Z", "X"):
                alive.append(pid)
        return alive

    def through_nginx(self, service: str, path: str = "/", method: str = "GET",
                      headers: dict[str, str] | None = None) -> Answer:
        assert self.nginx is not None
        return request(self.nginx.port, method, path, headers, host=HOSTS[service], close=True, timeout=5)

    def assert_live(self) -> None:
        """Every service runs and answers 200 (through nginx when there is one), nothing in maintenance."""
        for service in self.services.values():
            assert service.running(), f"{service.name} is not running"
            answer = self.through_nginx(service.name) if self.nginx else request(service.port, close=True)
            assert answer.status == 200 and answer.text.startswith(service.name), answer
        assert self.state() == {}, self.state()
        assert self.shim_pids() == []

    def assert_maintenance(self) -> None:
        """The services are stopped and every request gets the shim's 503."""
        for service in self.services.values():
            assert not service.running(), f"{service.name} still runs"
            answer = self.through_nginx(service.name) if self.nginx else request(service.port, close=True)
            assert answer.status == 503 and int(answer.headers["retry-after"]) >= 1, answer
            assert answer.headers["cache-control"] == "no-store"
        assert self.state().get("S_STATE") == "active"
