"""Finding plug-ins: one module per plug-in in a package, each defining a class under an agreed name.

The proxies (settings/proxies/), the progress sources (settings/sources/, progress/sources/) and the
response formats (web/formats/) are found this way; a new one is a new module, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T", bound=type)


def discover(package: str, path: Iterable[str], attr: str, base: T) -> dict[str, T]:
    """Every module of `package` (its `__path__`) whose name does not start with `_`, by name, sorted: each must
    define `attr`, a subclass of `base` whose `name` is the module's; a TypeError names the one that does not."""
    found: dict[str, T] = {}
    for module in sorted(pkgutil.iter_modules(path), key=lambda info: info.name):
        if module.name.startswith("_"):
            continue
        plugin = getattr(importlib.import_module(f"{package}.{module.name}"), attr, None)
        if not (isinstance(plugin, type) and issubclass(plugin, base)) or getattr(plugin, "name", None) != module.name:
            raise TypeError(f"{package}.{module.name}.{attr} must be a {base.__name__} named {module.name!r}")
        found[module.name] = plugin  # type: ignore[assignment]
    return found
