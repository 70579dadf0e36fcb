"""with_maintenance.sh around a service with a runtime preset, behind a real nginx (the shipped site):
the pieces shared by tests/runtimes/test_runtimes.py (stand-in servers) and
tests/runtimes/test_runtime_vllm.py (real vLLM).

Users are client threads asking the service for a one-token completion through nginx, each answer
classified: the server's 200, the shim's 503 with Retry-After, or a failure; a request still unanswered
after `hang` seconds is HUNG (the answer a sleeping vLLM gives).
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port
from tests.support.nginx import HOSTS, Nginx, start_nginx
from tests.support.scripts import SCRIPTS, _require, _shim_cmd


@dataclass
class Users:
    """Client threads POSTing /v1/completions through nginx (Host: the studio's name) until stopped."""

    port: int
    model: str
    threads: int = 2
    hang: float = 20.0
    rows: list[tuple[float, float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Users:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(self.hang + 5)

    def ask(self) -> str:
        body = json.dumps({"model": self.model, "prompt": "Hi", "max_tokens": 1, "temperature": 0})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.hang)
        try:
            conn.request("POST", "/v1/completions", body=body, headers={
                "Host": HOSTS["studio"], "Content-Type": "application/json", "Connection": "close"})
            response = conn.getresponse()
            text = response.read().decode(errors="replace")
            if response.status == 200 and "choices" in text:
                return "server-200"
            if response.status == 503 and int(response.getheader("Retry-After") or 0) >= 1:
                return "shim-503"
            return f"BAD {response.status} {text[:120]!r}"
        except TimeoutError:
            return "HUNG"
        except (OSError, http.client.HTTPException, ValueError) as error:
            return f"BAD {type(error).__name__}: {error}"
        finally:
            conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            kind = self.ask()
            with self._lock:
                self.rows.append((start, time.monotonic(), kind))
            time.sleep(0.02)

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(kind for _, _, kind in self.rows)

    def wait_for(self, kind: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.counts()[kind] < count:
            assert time.monotonic() < deadline, f"not {count} x {kind} within {timeout}s: {self.counts()}"
            time.sleep(0.05)

    def order(self) -> list[str]:
        """The kinds in the order they were answered, repeats folded: server-200, shim-503, server-200."""
        with self._lock:
            rows = sorted(self.rows, key=lambda row: row[1])
        out: list[str] = []
        for _, _, kind in rows:
            if not out or out[-1] != kind:
                out.append(kind)
        return out


@dataclass
class Site:
    """nginx in front of one service `studio` (an openai service) at `port`, and the env file."""

    tmp: Path
    nginx: Nginx
    settings: dict[str, str]

    @property
    def env_file(self) -> Path:
        return self.tmp / "maintenance.env"

    def write_env(self, **settings: str) -> None:
        self.settings.update(settings)
        self.env_file.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in self.settings.items()))

    def run(self, script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
        env["MAINT_ENV_FILE"] = str(self.env_file)
        return subprocess.run([str(SCRIPTS / script), *args], env=env, cwd=self.tmp, capture_output=True,
                              text=True, timeout=timeout)

    def stop(self) -> None:
        self.nginx.stop()


def site(tmp: Path, port: int, runtime: dict[str, str]) -> Site:
    """A real nginx sending studio.example.com to 127.0.0.1:`port`, and settings for with_maintenance.sh with
    the service's RUNTIME_* `runtime` (keys without the MAINT_SERVICE_studio_ prefix)."""
    nginx = start_nginx(tmp, {"studio": port, "video": port})
    settings = {
        "MAINT_SERVICES": "studio:openai",
        "MAINT_SWITCH": "nginx",
        "MAINT_LISTEN": f"127.0.0.1:{free_port()}=studio:openai",
        "MAINT_NGINX_BIN": _require("nginx"),
        "MAINT_NGINX_ARGS": nginx.args,
        "MAINT_SERVICE_studio_INCLUDE": str(nginx.include("studio")),
        "MAINT_STATE_DIR": str(tmp / "state"),
        "MAINT_SHIM_CMD": _shim_cmd(),
        "MAINT_LOCK_TIMEOUT": "5",
        "MAINT_SETTLE_SECONDS": "0.3",
        "MAINT_LOG_LEVEL": "warning",
        "MAINT_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        **{f"MAINT_SERVICE_studio_{key}": value for key, value in runtime.items()},
    }
    result = Site(tmp, nginx, {})
    result.write_env(**settings)
    return result
