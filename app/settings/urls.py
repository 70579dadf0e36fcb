"""The one check of an http(s) URL setting."""

from __future__ import annotations

from urllib.parse import urlsplit


def check_http_url(value: str) -> None:
    """Raises ValueError unless `value` is an http:// or https:// URL with a host."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
