"""Log output: MAINT_LOG_FORMAT=text (the default) or json, one JSON object a line for every log record
the shim writes, uvicorn's own included."""

from __future__ import annotations

import json
import logging
import sys
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
