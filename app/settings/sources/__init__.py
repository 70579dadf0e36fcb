"""The progress sources' settings, one module each: a new source is this package's `<name>.py` (its
settings model: the variable, its description and checks, and its line in `check`) and its follower
`app/progress/sources/<name>.py` (what it reads, its priority), nothing else.

Each module defines `SOURCE`, a `Source` subclass whose `settings` model holds one field named as the
variable (lowercased, without MAINT_): a `PATH`, or comma-separated `NODE=PATH` entries (one per GPU node)
beside at most one plain `PATH`. The shim's `Settings` inherits every registered model, so the field is
one of its own: read from the environment and the env file, refused with one line naming the variable,
listed by `env` and in the settings reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, create_model

from ...nodes import MAX_NODES, is_node_name
from ...plugins import discover


@dataclass(frozen=True)
class SourcePath:
    """One file to follow, tagged with the GPU node it reports (None: untagged)."""

    node: str | None
    path: Path


def _tagged(entry: str) -> bool:
    """`NODE=PATH`: an `=` before any `/` (an absolute path's own `=` comes after its first `/`)."""
    head, sep, _ = entry.partition("=")
    return bool(sep) and "/" not in head


def parse_source_paths(text: str) -> list[SourcePath]:
    """`PATH` (one untagged source, commas and all, as ever), or comma-separated `NODE=PATH` entries among
    which one plain `PATH` may stand; raises ValueError with a readable reason."""
    value = text.strip()
    if not value:
        return []
    entries = [item.strip() for item in value.split(",")]
    if not any(_tagged(item) for item in entries):
        return [SourcePath(None, Path(value))]
    out: list[SourcePath] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, 1):
        if not entry:
            continue
        if not _tagged(entry):
            if any(item.node is None for item in out):
                raise ValueError(f"entry {index} ({entry!r}) is a second path without a node; tag it NODE=PATH")
            out.append(SourcePath(None, Path(entry)))
            continue
        node, _, path = (part.strip() for part in entry.partition("="))
        if not is_node_name(node):
            raise ValueError(
                f"entry {index}: {node!r} is not a node name (1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit)"
            )
        if not path:
            raise ValueError(f"entry {index} ({entry!r}) has no path after {node}=")
        if node in seen:
            raise ValueError(f"entry {index}: node {node!r} is given twice")
        seen.add(node)
        out.append(SourcePath(node, Path(path)))
    if len(seen) > MAX_NODES:
        raise ValueError(f"{len(seen)} nodes; at most {MAX_NODES} are tracked")
    return out


class SourceSettings(BaseModel):
    """A progress source's own MAINT_* setting; the shim's Settings inherits it (one field per source)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    # Every source's entries as parsed, the untagged one first (filled in by Settings' validator).
    _sources: dict[str, tuple[SourcePath, ...]] = PrivateAttr(default_factory=dict)

    def source_paths(self, name: str) -> tuple[SourcePath, ...]:
        """Every entry of the source `name` (its field): the untagged PATH first, then NODE=PATH ones by node."""
        return self._sources.get(name, ())

    @property
    def configured_sources(self) -> list[str]:
        """The sources with at least one entry set."""
        return [name for name, items in self._sources.items() if items]


class Source:
    """One progress source as the settings see it."""

    name: ClassVar[str]  # the module's name, its field's name, and its follower's module in progress/sources/
    settings: ClassVar[type[SourceSettings]]
    label: ClassVar[str]  # `check`'s summary: "progress from <label>" ("3 <label>s" with three entries)

    @classmethod
    def summary(cls, count: int) -> str:
        """Its words in `check`'s summary for `count` configured entries."""
        return cls.label if count <= 1 else f"{count} {cls.label}s"


@cache
def registry() -> dict[str, type[Source]]:
    """Every source module of this package, by name (sorted: the settings reference's order)."""
    found = discover(__name__, __path__, "SOURCE", Source)
    for name, source in found.items():
        if list(source.settings.model_fields) != [name]:
            raise TypeError(f"{__name__}.{name}: its settings must be the one field {name!r}")
    return found


@cache
def merged() -> type[SourceSettings]:
    """One model with every registered source's field, for the shim's Settings to inherit."""
    bases: Any = tuple(source.settings for source in registry().values()) or (SourceSettings,)
    model: type[SourceSettings] = create_model("SourceFields", __base__=bases)
    return model
