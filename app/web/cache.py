"""The request path's one cache policy: every cache keyed by what a request sent is a `BoundedCache`.

- At most MAX_ENTRIES entries: a full cache is emptied (random header values cannot grow it, and a
  common request is cached again by its next occurrence).
- Nothing is cached for a key whose request values add up to more than MAX_KEY_LENGTH characters: such a
  request is answered, never remembered.
- A cache of answers that depend on progress is emptied when the tracker's snapshot changes (`renew`).

Used by negotiation (locale matches, choices), the responder (rendered replies) and the catch-all (the
fast path's answers, the CORS-decorated replies).
"""

from __future__ import annotations

from typing import TypeVar

MAX_ENTRIES = 1024
MAX_KEY_LENGTH = 1024

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(dict[K, V]):
    """A dict with the policy above; reads are plain dict reads."""

    __slots__ = ("snapshot",)

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: object = None

    def put(self, key: K, value: V, length: int = 0) -> V:
        """Keep `value` under `key` unless the key's request values are `length` > MAX_KEY_LENGTH; returns it."""
        if length <= MAX_KEY_LENGTH:
            if len(self) >= MAX_ENTRIES:
                self.clear()
            self[key] = value
        return value

    def renew(self, snapshot: object) -> None:
        """Empty the cache if its entries were made from another snapshot than `snapshot`."""
        if snapshot is not self.snapshot:
            self.clear()
            self.snapshot = snapshot
