"""Every file of MAINT_STATE_DIR that the scripts and the shim share, and how one is written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"


HISTORY_FILE = "history.jsonl"


SUMMARY_FILE = "progress-summary.json"


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    os.replace(temporary, path)


SERVING_FILE = "shim-serving.json"  # written by the supervisor (supervise.py), read by the scripts via `serving`


REQUESTS_FILE = "requests-summary.json"  # written by the shim (traffic.py) every second and at shutdown
