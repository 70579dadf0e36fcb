"""The 503's status line: `HTTP/1.1 503 Service Unavailable: video back in about 45 minutes (15:30 UTC)`.

Most HTTP clients show the reason phrase of an error status and nothing of the body: requests
(`503 Server Error: <reason> for url: ...`), httpx (`Server error '503 <reason>' for url ...`) and the
retry wrappers around it, aiohttp (`503, message='<reason>'`), wget (`ERROR 503: <reason>.`). So the
phrase says why and until when, in short English (clients decode it as ASCII or Latin-1, never as UTF-8):
printable ASCII only, no CR, LF or other control character, at most MAX_PHRASE characters, and the only
colon the one after `Service Unavailable`, so no client can take any of it for a header. Rendered once per
reply (responder.py), like the body. MAINT_REASON_PHRASE=off sends the stock `Service Unavailable`.

HTTP/2 and HTTP/3 have no reason phrase: a proxy that speaks them to the client drops it (docs/http.md).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo

from ..progress.tracker import Snapshot

STOCK = "Service Unavailable"
MAX_PHRASE = 120  # characters after the status code, `Service Unavailable: ` included
MAX_NAME = 40
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9 ._-]+")
_ZONE_UNSAFE = re.compile(r"[^A-Za-z0-9+-]")
_PRINTABLE = re.compile(r"[^\x20-\x7e]+")


def plain_name(name: str) -> str:
    """`name` as the phrase may carry it: letters, digits, space, `.`, `_` and `-`, at most MAX_NAME long."""
    return " ".join(_NAME_UNSAFE.sub(" ", name).split())[:MAX_NAME].strip()


def about(seconds: int) -> str:
    """`about 45 minutes`, `about 2 hours 5 minutes`, `less than a minute`."""
    if seconds < 60:
        return "less than a minute"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours, minutes = divmod(minutes, 60)
    text = f"about {hours} hours"
    return f"{text} {minutes} minute{'s' if minutes != 1 else ''}" if minutes else text


def clock(when: datetime, zone: tzinfo | None) -> str:
    """`15:30 UTC`: 24-hour time in `zone` (MAINT_TIMEZONE; default the system's) with its abbreviation,
    or in UTC where the abbreviation is not plain ASCII."""
    local = when.astimezone(zone) if zone is not None else when.astimezone()
    name = local.tzname() or ""
    if not name or _ZONE_UNSAFE.search(name):
        local, name = when.astimezone(UTC), "UTC"
    return f"{local:%H:%M} {name}"


def phrase(snapshot: Snapshot, service: str, zone: tzinfo | None = None) -> str:
    """The reason phrase for `snapshot`: `Service Unavailable: <who> <when>`, safe and bounded."""
    name = plain_name(service)
    who = f"{name} " if name else ""
    eta, at, state = snapshot.eta_seconds, snapshot.eta_at, snapshot.state
    if eta is not None and at is not None:
        when = f"{about(eta)} ({clock(at, zone)})"
        text = f"{who}running late, now back in {when}" if state == "overdue" else f"{who}back in {when}"
    elif state == "stalled":
        text = f"{who}paused, training stalled, no estimate"
    elif state == "overdue":
        text = f"{who}running late, back when training ends"
    elif state == "estimating":
        text = f"{who}paused for training, estimate follows"
    elif state == "finishing":
        text = f"{who}finishing training, back shortly"
    else:
        text = f"{who}paused for maintenance, no estimate yet"
    return safe(f"{STOCK}: {text}")


def safe(text: str) -> str:
    """Printable ASCII only, single spaces, at most MAX_PHRASE characters (cut at a word)."""
    text = " ".join(_PRINTABLE.sub(" ", text).split())
    if len(text) > MAX_PHRASE:
        text = text[: MAX_PHRASE + 1].rsplit(" ", 1)[0].rstrip(" ,(")
    return text


def status_line(status: int, reason: str) -> bytes:
    """The whole status line as uvicorn would write it, with `reason` in place of the stock phrase."""
    return b"HTTP/1.1 %d %s\r\n" % (status, safe(reason).encode("ascii"))
