"""Plain counts of the requests the shim answers, for the metrics, the status endpoint and the run summary.

The catch-all counts each answered request. A request on a connection already known (its client counted in
this run) adds one to its answer's tally, a one-integer cell the cached answer holds (``Traffic.tally``);
any other goes through ``Traffic.hit`` (the client's key, then the same cell). Everything else (the peak
rate, the summary, the Prometheus series in ``metrics.py``) is computed from these integers once a second
or when asked, never on the request path, and never with prometheus_client.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from starlette.types import Scope

logger = logging.getLogger("maintenance_shim.traffic")
access_logger = logging.getLogger("maintenance_shim.access")

# (service, format, locale, status): what a request was answered with. Health paths count as format "health".
CountKey = tuple[str, str, str, int]
Observe = Callable[[CountKey, Scope], None]
Tally = list[int]  # one count, [n]: what a cached answer adds its requests to

# Distinct clients are kept exactly up to this many (about 1.5 MB of strings at most); past it a
# HyperLogLog with 2**HLL_BITS one-byte registers estimates them (standard error 1.04/sqrt(4096) = 1.6%).
CLIENT_SET_CAP = 16384
HLL_BITS = 12
# The scripts' own sample request (shim_check_once) carries this header and is not counted.
CHECK_HEADER = b"x-maintenance-shim"
_LOCAL_PEERS = frozenset(("127.0.0.1", "::1"))


class DistinctClients:
    """Distinct client keys in bounded memory: an exact set up to ``cap``, then a HyperLogLog.

    The caller tests ``key in clients.seen`` first (a set lookup on the request path) and calls ``add``
    only for a key not in the set; past the cap the set stops growing and new keys go to the registers.
    """

    def __init__(self, cap: int = CLIENT_SET_CAP) -> None:
        self.seen: set[str] = set()
        self.cap = cap
        self.registers: bytearray | None = None

    def add(self, key: str) -> None:
        registers = self.registers
        if registers is None:
            self.seen.add(key)
            if len(self.seen) >= self.cap:
                self.registers = bytearray(1 << HLL_BITS)
                for known in self.seen:
                    self._register(known)
            return
        self._register(key)

    def _register(self, key: str) -> None:
        assert self.registers is not None
        # str hashes are SipHash, salted per process: uniform bits, stable for the process's lifetime.
        value = hash(key) & 0xFFFF_FFFF_FFFF_FFFF
        index = value & ((1 << HLL_BITS) - 1)
        rest = value >> HLL_BITS
        rank = (64 - HLL_BITS) - rest.bit_length() + 1
        if rank > self.registers[index]:
            self.registers[index] = rank

    @property
    def exact(self) -> bool:
        return self.registers is None

    def count(self) -> int:
        """The exact count below the cap, else the HyperLogLog estimate (never below the exact part)."""
        if self.registers is None:
            return len(self.seen)
        m = len(self.registers)
        estimate = (0.7213 / (1 + 1.079 / m)) * m * m / sum(2.0 ** -r for r in self.registers)
        zeros = self.registers.count(0)
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)  # linear counting for the small range
        return max(len(self.seen), round(estimate))


_KNOWN_CONNECTIONS = 4096  # connections remembered as counted (a full memo is emptied)
_KEY_BYTES = 64  # of a forwarded address kept as the client's key: bounds the set's memory
_FORWARDING = frozenset((b"x-forwarded-for", b"x-real-ip", CHECK_HEADER))
_name = itemgetter(0)


def client_key(scope: Scope, plain_local: dict[int, Any] | None = None) -> str | None:
    """Who sent the request: the peer address, or, from a proxy on this host (a loopback peer), the first
    X-Forwarded-For hop (else X-Real-IP). None for the scripts' own check request, which is not counted.

    `plain_local` remembers the local connections that are clients, not proxies (see below)."""
    client = scope.get("client")
    if not client:
        return "-"
    host: str = client[0]
    if host not in _LOCAL_PEERS:
        return host
    # uvicorn puts one `client` tuple in every request of a connection: a local connection whose first
    # request had no forwarding header is a local client, not a proxy, and is not scanned again. Keyed by
    # id and holding the tuple, so the id cannot be reused while cached.
    if plain_local is not None and plain_local.get(id(client)) is client:
        return host
    headers = scope["headers"]
    if _FORWARDING.isdisjoint(map(_name, headers)):  # C-level scan: a third of a Python loop's cost
        if plain_local is not None:
            if len(plain_local) >= 4096:
                plain_local.clear()
            plain_local[id(client)] = client
        return host
    real = None
    for name, value in headers:
        if name == b"x-forwarded-for":
            return value[:_KEY_BYTES].split(b",", 1)[0].strip().decode("latin-1") or host
        if name == b"x-real-ip":
            real = value
        elif name == CHECK_HEADER:
            return None
    return real[:_KEY_BYTES].strip().decode("latin-1") or host if real is not None else host


class Traffic:
    """The counters: requests by (service, format, locale, status), distinct clients, peak requests/s."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tallies: dict[CountKey, Tally] = {}  # bounded: services x formats x locales x statuses
        self.clients = DistinctClients()
        self.since = clock()
        self.peak_rps = 0.0
        self._last_total = 0
        self._last_tick: float | None = time.monotonic()  # the first window starts now, not at the first tick
        self._plain_local: dict[int, Any] = {}
        # id(client tuple) -> it: the connections known to carry one client's requests (not a proxy's) whose
        # client is counted in this run. uvicorn puts one `client` tuple in every request of a connection, so
        # a request whose scope's tuple is in here needs only its tally bumped (the catch-all does it inline).
        self.known: dict[int, Any] = {}
        self.carried_clients = 0  # counted by an earlier server of this run (see restore)

    @property
    def counts(self) -> dict[CountKey, int]:
        """The requests counted in this run, by what they were answered with."""
        return {key: tally[0] for key, tally in list(self._tallies.items()) if tally[0]}

    def tally(self, key: CountKey) -> Tally:
        """The cell counting `key`'s requests; the same list for the shim's lifetime (a new run zeroes it)."""
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = [0]
        return tally

    def hit(self, key: CountKey, scope: Scope) -> None:
        """Count one answered request (the request path: keep it this small)."""
        peer = scope.get("client")
        if (peer is None or self.known.get(id(peer)) is not peer) and not self._count_client(scope, peer):
            return
        self.tally(key)[0] += 1

    def _count_client(self, scope: Scope, peer: Any) -> bool:
        """Count the client of a request from a connection not yet known; False for the scripts' check."""
        client = client_key(scope, self._plain_local)
        if client is None:
            return False
        if client not in self.clients.seen:
            self.clients.add(client)
        if peer and (peer[0] not in _LOCAL_PEERS or self._plain_local.get(id(peer)) is peer):
            if len(self.known) >= _KNOWN_CONNECTIONS:
                self.known.clear()
            self.known[id(peer)] = peer  # keyed by id and holding the tuple: the id cannot be reused
        return True

    def total(self) -> int:
        return sum(tally[0] for tally in list(self._tallies.values()))

    def tick(self, now: float) -> None:
        """Called about once a second (monotonic `now`): the peak rate over one-second windows."""
        total = self.total()
        if self._last_tick is not None and now > self._last_tick:
            rate = (total - self._last_total) / (now - self._last_tick)
            self.peak_rps = max(self.peak_rps, rate)
        self._last_tick, self._last_total = now, total

    def new_run(self, started_at: float) -> None:
        """Maintenance (re)started at `started_at`: a later start is a new run and the counts begin again;
        an earlier one (the scripts wrote it before starting this shim) only moves `since` back."""
        if started_at <= self.since:
            self.since = started_at
            return
        for tally in self._tallies.values():  # in place: the catch-all's cached answers hold them
            tally[0] = 0
        self.clients = DistinctClients()
        self.carried_clients = 0
        self.known.clear()  # in place too: the catch-all reads it
        self.since = started_at
        self.peak_rps = 0.0
        self._last_total = 0

    def distinct_clients(self) -> int:
        return self.clients.count() + self.carried_clients

    def record(self) -> dict[str, Any]:
        """What ``requests-summary.json`` holds: the summary, and the counts a later server restores."""
        counts = [[*key, count] for key, count in sorted(self.counts.items())]
        return self.summary() | {"counts": counts}

    def restore(self, record: dict[str, Any]) -> bool:
        """Add what an earlier server of this run counted (its ``record()``, read back from the state dir).

        The supervisor replaces a killed server on the same sockets; without this its counts would begin
        again. Requests are restored exactly (less those of its last second, written once a second); its
        clients only as a number added to this server's, flagged as no longer exact (a client seen by both is
        counted twice). False, and nothing changed, for a record that cannot be read.
        """
        try:
            rows = [(str(s), str(f), str(loc), int(st), int(n)) for s, f, loc, st, n in record["counts"]]
            clients = int(record.get("distinct_clients", 0))
            peak = float(record.get("peak_requests_per_second", 0.0))
        except (KeyError, TypeError, ValueError):
            return False
        for service, fmt, locale, status, count in rows:
            if count > 0:
                self.tally((service, fmt, locale, status))[0] += count
                self._last_total += count  # the peak rate counts this server's requests only
        self.carried_clients += max(0, clients)
        self.peak_rps = max(self.peak_rps, peak)
        return True

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """The running counts as the status endpoint and the run summary carry them."""
        now = self._clock() if now is None else now
        by_service: dict[str, dict[str, int]] = {}
        turned_away = health = 0
        for (service, fmt, _locale, status), count in sorted(self.counts.items()):
            if status == 503:
                formats = by_service.setdefault(service, {})
                formats[fmt] = formats.get(fmt, 0) + count
                turned_away += count
            elif fmt == "health":
                health += count
        return {
            "since": _iso(self.since),
            "until": _iso(now),
            "duration_seconds": max(0, round(now - self.since)),
            "turned_away": turned_away,
            "by_service": by_service,
            "health_checks": health,
            "distinct_clients": self.distinct_clients(),
            "distinct_clients_exact": self.clients.exact and not self.carried_clients,
            "peak_requests_per_second": round(self.peak_rps, 1),
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class AccessLog:
    """Logs one in ``every`` answered requests (deterministic sampling)."""

    def __init__(self, every: int) -> None:
        self.every = max(1, every)
        self._countdown = 1

    def hit(self, key: CountKey, scope: Scope) -> None:
        self._countdown -= 1
        if self._countdown:
            return
        self._countdown = self.every
        service, fmt, locale, status = key
        client = scope.get("client")
        fields = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "service": service,
            "format": fmt,
            "locale": locale,
            "client": client[0] if client else None,
            "sample_every": self.every,
        }
        access_logger.info(
            "%s %s %d %s %s %s %s", fields["method"], fields["path"], status, service or "-", fmt, locale or "-",
            fields["client"] or "-", extra={"request": fields},
        )


def access_log(enabled: bool, sample: float) -> Observe | None:
    """What the catch-all calls per answered request besides counting it: the sampled access log, or nothing."""
    if not enabled:
        return None
    access_logger.setLevel(logging.INFO)  # asked for: logged whatever MAINT_LOG_LEVEL says
    return AccessLog(round(1 / sample)).hit


class TrafficTicker:
    """Once a second: the peak rate, a new run's reset, and ``requests-summary.json`` in the state dir
    (also at shutdown, so the scripts read the final counts once the shim has stopped)."""

    def __init__(
        self,
        traffic: Traffic,
        run_started: Callable[[], float | None],
        state_dir: Path | None,
        interval: float = 1.0,
    ) -> None:
        self.traffic = traffic
        self.run_started = run_started
        self.path = None
        if state_dir is not None:  # runs.py only with a state dir: it stays off the start-up path otherwise
            from .statedir import REQUESTS_FILE

            self.path = state_dir / REQUESTS_FILE
        self.interval = interval
        self._written: tuple[int, int, float, float] | None = None
        self._failed = False
        self._looked_back = False  # for an earlier server's counts (restore), on the first poll of a run

    def poll_once(self, final: bool = False) -> None:
        try:
            started = self.run_started()
            if started is not None and started != self.traffic.since:
                self.traffic.new_run(started)
            if self.path is None:
                self.traffic.tick(time.monotonic())
                return
            if started is not None and not self._looked_back:
                self._looked_back = True
                self._restore(started)
            self.traffic.tick(time.monotonic())
            traffic = self.traffic
            state = (traffic.total(), traffic.distinct_clients(), traffic.peak_rps, traffic.since)
            if final or state != self._written:
                from .statedir import write_json_atomically

                write_json_atomically(self.path, traffic.record())
                self._written = state
        except Exception as error:  # bookkeeping never hurts serving
            if not self._failed:
                self._failed = True
                logger.warning("request counts and summary: %r", error)

    def _restore(self, started: float) -> None:
        """Take over the counts a killed server of this run left (start_maintenance.sh removes the file
        when a run starts, and its `since` names the run)."""
        from .progress.runs import read_requests

        assert self.path is not None
        record = read_requests(self.path.parent)
        if record is None or record.get("since") != _iso(started):
            return
        if self.traffic.restore(record):
            logger.info("carrying on the request counts of an earlier server of this run: %s turned away",
                        record.get("turned_away"))
        else:
            logger.warning("%s: unreadable request counts, not carried on", self.path)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.poll_once()

    def close(self) -> None:
        self.poll_once(final=True)
