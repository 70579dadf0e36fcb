"""The trainer-side half of the capture: true progress events written by the training process itself.

``record.py`` sets ``CAPTURE_TRUTH`` (a path) and ``CAPTURE_T0`` (a ``time.time()`` value: the capture
start). Each event is one JSON line ``{"t": time.time() - T0, ...}``, appended and flushed at once, so the
truth shares the clock of ``chunks.jsonl``. Without ``CAPTURE_TRUTH`` every call is a no-op, so the trainer
scripts also run on their own. ``meta(...)`` writes facts only the trainer knows (total steps, epochs) to
``CAPTURE_META`` for the recorder to merge into ``meta.json``.
"""

from __future__ import annotations

import json
import os
import time

_PATH = os.environ.get("CAPTURE_TRUTH")
_T0 = float(os.environ.get("CAPTURE_T0", "0") or 0) or time.time()
_FILE = open(_PATH, "a", encoding="utf-8") if _PATH else None  # noqa: SIM115 - kept open for the process


def now() -> float:
    return round(time.time() - _T0, 3)


def _write(record: dict) -> None:
    if _FILE is None:
        return
    _FILE.write(json.dumps({"t": now(), **record}) + "\n")
    _FILE.flush()


def step(step: int, total: int) -> None:
    """Global optimizer step ``step`` of ``total`` is complete."""
    _write({"step": int(step), "total": int(total)})


def phase(name: str, **extra: object) -> None:
    """'evaluating' | 'saving' | 'training' (back to training after one of the others)."""
    _write({"event": "phase", "phase": name, **extra})


def end() -> None:
    """Right after the last training step."""
    _write({"event": "end"})


def restart(from_step: int) -> None:
    """A resumed process starts from ``from_step``."""
    _write({"event": "restart", "from_step": int(from_step)})


def meta(**fields: object) -> None:
    """Facts for meta.json (merged by record.py; the recorder's own arguments win)."""
    path = os.environ.get("CAPTURE_META")
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as handle:
            current = json.load(handle)
    except (OSError, ValueError):
        current = {}
    current.update(fields)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(current, handle)


def versions(*packages: str) -> dict[str, str]:
    """Python's and the named distributions' versions, for meta.json."""
    import platform
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
