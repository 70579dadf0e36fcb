"""Every file of MAINT_STATE_DIR that the scripts and the shim share, and how one is written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def default_state_dir(environ: dict[str, str] | None = None) -> Path:
    """The state directory when MAINT_STATE_DIR is not set: /run/maintenance-shim for root, else
    $XDG_RUNTIME_DIR/maintenance-shim, else /tmp/maintenance-shim-UID (the scripts' default too)."""
    env = os.environ if environ is None else environ
    if os.geteuid() == 0:
        return Path("/run/maintenance-shim")
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "maintenance-shim"
    return Path(f"/tmp/maintenance-shim-{os.geteuid()}")  # noqa: S108 - the documented fallback


EVENTS_FILE = "events.jsonl"


HISTORY_FILE = "history.jsonl"


SUMMARY_FILE = "progress-summary.json"


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    os.replace(temporary, path)


SERVING_FILE = "shim-serving.json"  # written by the supervisor (supervise.py), read by the scripts via `serving`


REQUESTS_FILE = "requests-summary.json"  # written by the shim (traffic.py) every second and at shutdown


# The time the scripts took to bring the services back, written for stop_maintenance.sh each time
# (`maintenance-shim startup`, scriptio.record_startup): the first guess at the save-and-reload time before
# any run is in the history.
STARTUP_FILE = "startup.json"
