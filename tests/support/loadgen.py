"""Bounded client load against a proxy on loopback, for the fallback and switch tests.

Per service, three client threads, each a fresh connection per request (as browsers and SDKs open new
ones): pages (`GET /page/N`, HTML), JSON calls (`POST /api/generate`, alternating with `GET /api/...`)
and slow POSTs (a 4 KiB body sent in four pieces over 0.15 s). Plus `KeepAlive`: a few client
connections held open and used in turn, counting the ones the proxy drops. Every loop stops at
`max_seconds` or `max_requests`, whichever comes first, and targets 127.0.0.1 only. Those bounds are a safety
net for a test that never stops its load, not a budget: the default, 600 s, is several times what the longest
test takes beside a CPU hog (a five-switch test took 171 s there, past the 150 s it once gave its load, and
waited for answers from a load that had ended). `wait_for` says so if the load ended first. Each loop pauses PAUSE
between requests: with a slow POST always on its way and the other loops a request every few tens of ms, a
request is in flight at every switch, and the load no longer takes the machine's two cores (a 5 ms pause
did: 85 CPU-seconds for the five HAProxy switches, 48 now, and the suite around it waited for CPU).

Each answer is classified: `service-200` (the stand-in's 200, its body naming the service),
`shim-503` (a 503 with Retry-After >= 1, JSON on the API paths), else a failure: `refused`, `reset`,
or `BAD ...` with the status or the error.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

OK = ("service-200", "shim-503")
PAUSE = 0.02  # seconds between one loop's requests


def classify(service: str, status: int, headers: dict[str, str], body: str, api: bool) -> str:
    if status == 200 and body.startswith(f"{service} "):
        return "service-200"
    if status == 503 and int(headers.get("retry-after", "0") or 0) >= 1:
        if api and not headers.get("content-type", "").startswith("application/json"):
            return f"BAD 503 not JSON on an API path: {headers.get('content-type')}"
        return "shim-503"
    return f"BAD {status} {body[:60]!r}"


def _exchange(port: int, host: str, method: str, path: str, body: bytes | None, accept: str,
              pieces: int = 1, pause: float = 0.0) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.putheader("Accept", accept)
        conn.putheader("Connection", "close")
        if body is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body is not None:
            size = -(-len(body) // pieces)
            for start in range(0, len(body), size):
                conn.send(body[start:start + size])
                if pause:
                    time.sleep(pause)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, text
    finally:
        conn.close()


def _outcome(call: object) -> str:
    try:
        status, headers, text, service, api = call()  # type: ignore[operator]
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except (OSError, http.client.HTTPException) as error:
        return f"BAD {type(error).__name__}: {error}"
    return classify(service, status, headers, text, api)


@dataclass
class Load:
    """Client threads (pages, JSON calls, slow POSTs per service) until stopped or their bounds."""

    port: int
    hosts: dict[str, str]
    max_seconds: float = 600.0
    max_requests: int = 100_000
    rows: list[tuple[float, float, str, str, str]] = field(default_factory=list)  # start, end, service, loop, kind
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for service in self.hosts:
            for loop in ("page", "json", "slow-post"):
                thread = threading.Thread(target=self._run, args=(service, loop), daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _one(self, service: str, loop: str, n: int) -> object:
        host = self.hosts[service]
        if loop == "page":
            return lambda: (*_exchange(self.port, host, "GET", f"/page/{n}", None, "text/html"), service, False)
        if loop == "json":
            if n % 2:
                return lambda: (*_exchange(self.port, host, "GET", f"/api/jobs/{n}", None, "application/json"),
                                service, True)
            body = json.dumps({"prompt": f"a cat, take {n}", "steps": 30}).encode()
            return lambda: (*_exchange(self.port, host, "POST", "/api/generate", body, "application/json"),
                            service, True)
        body = json.dumps({"prompt": "x" * 4000, "n": n}).encode()
        return lambda: (*_exchange(self.port, host, "POST", "/api/upload", body, "application/json",
                                   pieces=4, pause=0.05), service, True)

    def _run(self, service: str, loop: str) -> None:
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline and n < self.max_requests:
            n += 1
            start = time.monotonic()
            kind = _outcome(self._one(service, loop, n))
            with self._lock:
                self.rows.append((start, time.monotonic(), service, loop, kind))
            time.sleep(PAUSE)

    def counts(self, since: float = 0.0) -> Counter[str]:
        with self._lock:
            return Counter(kind for start, _, _, _, kind in self.rows if start >= since)

    def failures(self) -> Counter[str]:
        """The answers that were neither the service's 200 nor the shim's 503, by loop."""
        with self._lock:
            return Counter(f"{loop}: {kind}" for _, _, _, loop, kind in self.rows if kind not in OK)

    def first(self, service: str, kind: str, since: float) -> float | None:
        """End time of the first `kind` answer for `service` to a request sent at or after `since`."""
        with self._lock:
            ends = [end for start, end, svc, _, k in self.rows if svc == service and k == kind and start >= since]
        return min(ends) if ends else None

    def wait_for(self, service: str, kind: str, since: float, timeout: float = 15) -> float:
        deadline = time.monotonic() + timeout
        while (found := self.first(service, kind, since)) is None:
            assert any(thread.is_alive() for thread in self._threads), (
                f"{service}: no {kind} since {since:.2f}, and the load has ended (its bounds: {self.max_seconds:g} s, "
                f"{self.max_requests} requests a loop): {self.counts()}")
            assert time.monotonic() < deadline, f"{service}: no {kind} since {since:.2f}: {self.counts()}"
            time.sleep(0.02)
        return found


@dataclass
class KeepAlive:
    """`size` client connections to one service through the proxy, each kept open and sent a request in
    turn (every `interval` s); a connection the proxy closed is counted in `dropped` and reopened."""

    port: int
    service: str
    host: str
    size: int = 8
    interval: float = 0.25
    max_seconds: float = 600.0
    dropped: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> KeepAlive:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)

    def _run(self) -> None:
        conns = [http.client.HTTPConnection("127.0.0.1", self.port, timeout=10) for _ in range(self.size)]
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for i, conn in enumerate(conns):
                    try:
                        conn.request("GET", "/page/keepalive", headers={"Host": self.host, "Accept": "text/html"})
                        response = conn.getresponse()
                        body = response.read().decode(errors="replace")
                        self.answered[classify(self.service, response.status,
                                               {k.lower(): v for k, v in response.getheaders()}, body, False)] += 1
                        if response.will_close:
                            self.dropped += 1
                            conn.close()
                    except (OSError, http.client.HTTPException):
                        self.dropped += 1
                        conn.close()
                        conns[i] = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self._stop.wait(self.interval)
        finally:
            for conn in conns:
                conn.close()
