"""Log output: MAINT_LOG_FORMAT=text (the default) or json, one JSON object a line for every log record
the shim writes, uvicorn's own included."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else was passed with `extra=` and goes into the JSON object.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """``{"t": ISO-8601 UTC, "level", "logger", "message", ...extra fields, "exc"}`` on one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # uvicorn's dictConfig passes fmt/use_colors
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "t": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def _handler(fmt: LogFormat) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(level: str, fmt: LogFormat = "text") -> None:
    """Our log lines on stderr, uvicorn's beside them; with json, every other logger's too."""
    root = logging.getLogger("maintenance_shim")
    root.handlers[:] = [_handler(fmt)]
    root.setLevel(level.upper())
    root.propagate = False
    if fmt == "json":
        # Other libraries' records (and Python warnings) reach the root logger: JSON there too, so no
        # plain line from logging's last-resort handler ever lands in the output.
        logging.getLogger().handlers[:] = [_handler(fmt)]
        logging.captureWarnings(True)


def uvicorn_log_config(fmt: LogFormat) -> dict[str, Any]:
    """uvicorn's logging dictConfig: its default for text, our JSON formatter for json."""
    from uvicorn.config import LOGGING_CONFIG

    if fmt == "text":
        return LOGGING_CONFIG
    formatter = {"()": f"{JsonFormatter.__module__}.JsonFormatter"}
    return {
        **LOGGING_CONFIG,
        "formatters": {"default": formatter, "access": formatter},
        "handlers": {
            "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
            "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        },
    }


THROTTLE_SECONDS = 10.0  # the same traceback at most once in this long (protocol.REPORT_EVERY's grain)
_THROTTLE_KINDS = 256  # kinds remembered; past that the oldest are forgotten (memory stays bounded)


class TracebackThrottle(logging.Filter):
    """Lets a record with a traceback through the first time, then the same kind (logger, message,
    exception type, the line that raised it) at most once every THROTTLE_SECONDS, saying how many were left
    out since: a fault that every connection can set off (or every request of a flood) costs a few log
    lines, not one traceback each. Records without a traceback pass untouched."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[tuple[str, object, str, str], float] = {}
        self._skipped: Counter[tuple[str, object, str, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        info = record.exc_info
        if not info or info[1] is None:
            return True
        error = info[1]
        tb = error.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
        key = (record.name, record.msg, type(error).__qualname__, where)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < THROTTLE_SECONDS:
            self._skipped[key] += 1
            return False
        self._last.pop(key, None)
        self._last[key] = now
        while len(self._last) > _THROTTLE_KINDS:
            oldest = next(iter(self._last))
            del self._last[oldest]
            self._skipped.pop(oldest, None)
        skipped = self._skipped.pop(key, 0)
        if skipped and last is not None:
            record.msg = f"{record.msg} (and {skipped} more like it in the last {now - last:.0f} s, not logged)"
        return True


def throttle_tracebacks(names: tuple[str, ...] = ("", "maintenance_shim", "uvicorn", "uvicorn.error")) -> None:
    """One TracebackThrottle on every handler of these loggers (after uvicorn's logging config is applied)."""
    throttle = TracebackThrottle()
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, TracebackThrottle) for f in handler.filters):
                handler.addFilter(throttle)
