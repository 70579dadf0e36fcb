"""A bounded per-client limit on failed token checks: guessing the admin token is slowed to a crawl.

Each client (its address) has a bucket of `burst` failures that refills at `per_second`. A client whose
bucket is empty is answered 429 without its token being compared at all. Only failures are counted, so a
trainer with the right token is never slowed; at most `max_clients` buckets are kept (the least recently
used is forgotten first), so memory stays bounded whatever addresses the requests come from.

A bucket shared by all clients (the admin's `overall`) must not let guessers lock the trainer out: it is
consulted only for a client that failed recently (`failed_recently`), so a client whose last failure is
`burst / per_second` seconds ago or more, the trainer among them, has its token compared whatever the
others send (admin.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict


class FailureLimiter:
    """Token buckets of failed attempts, per client key."""

    def __init__(self, burst: int = 10, per_second: float = 1.0, max_clients: int = 1024) -> None:
        self.burst = float(burst)
        self.per_second = per_second
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.per_second)

    def retry_after(self, key: str, now: float) -> int:
        """0 when `key` may try now, else the whole seconds until it may."""
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            return 0
        return max(1, math.ceil((1.0 - tokens) / self.per_second))

    def failed_recently(self, key: str, now: float) -> bool:
        """Has `key` a failure its bucket has not yet refilled from?"""
        return key in self._buckets and self._tokens(key, now) < self.burst

    def failed(self, key: str, now: float) -> None:
        """Count one failed attempt from `key`."""
        tokens = self._tokens(key, now) - 1.0
        self._buckets[key] = (max(tokens, 0.0), now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
