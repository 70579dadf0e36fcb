"""The progress sources: one follower per configured file, each turning it into ``on_progress`` calls.

One module per source in this package, named as its setting's module in app/settings/sources/ (which
holds the variable, its checks and its line in `check`); each defines ``SOURCE``, a ``Follower`` subclass
with its ``tag`` and ``priority`` (``_base.py``). A new source is these two files: the registry below finds
every module here whose name does not start with ``_``, and ``followers()`` starts one per configured entry.
"""

from __future__ import annotations

from functools import cache

from ...plugins import discover
from ...settings.shim import Settings
from ...settings.sources import registry as settings_registry
from ._base import MAX_CATCH_UP, STUCK_SECONDS, TAIL_BYTES, AppendFollower, Context, Follower, OnNotice, OnProgress

# The first sources' names, importable from here as they always were.
from .progress_file import (
    MAX_PROGRESS_FILE,
    FileProgress,
    ProgressFileError,
    ProgressFileFollower,
    parse_progress_file,
)
from .train_log import INVISIBLE_AFTER, INVISIBLE_NOTICE, MAX_LINE, LogFollower

__all__ = [
    "INVISIBLE_AFTER", "INVISIBLE_NOTICE", "MAX_CATCH_UP", "MAX_LINE", "MAX_PROGRESS_FILE", "STUCK_SECONDS",
    "TAIL_BYTES", "AppendFollower", "Context", "FileProgress", "Follower", "LogFollower", "OnNotice",
    "OnProgress", "ProgressFileError", "ProgressFileFollower", "followers", "parse_progress_file", "registry",
]


@cache
def registry() -> dict[str, type[Follower]]:
    """Every source module of this package, by name; each has its settings module, and the other way round."""
    found = discover(__name__, __path__, "SOURCE", Follower)
    settings = set(settings_registry())
    if set(found) != settings:
        raise TypeError(f"progress sources {sorted(found)} and their settings {sorted(settings)} differ "
                        "(each source is app/settings/sources/<name>.py and app/progress/sources/<name>.py)")
    return found


def followers(settings: Settings, context: Context) -> list[Follower]:
    """One follower per configured entry of every source; a NODE=PATH entry's updates carry its node."""
    return [
        source.from_settings(item.path, item.node, context)
        for name, source in registry().items()
        for item in settings.source_paths(name)
    ]
