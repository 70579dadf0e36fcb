"""Runtime presets: inference servers that free the GPU without exiting (MAINT_SERVICE_<name>_RUNTIME).

One module per preset in this package, named as the setting's value (vllm.py is `RUNTIME=vllm`); each
defines `PRESET`, an instance of a `Runtime` subclass (_base.py). A new preset is one new file: the
registry below finds every module here whose name does not start with `_`. `command`, the default, is not
a module: it means the service's own STOP and START hooks (scripts/lib/services.sh).
"""

from __future__ import annotations

import importlib
import pkgutil

from ._base import PresetError, Runtime, RuntimeOptions, Server, wait_until

COMMAND = "command"
__all__ = ["COMMAND", "PresetError", "Runtime", "RuntimeOptions", "Server", "get", "names", "wait_until"]


def names() -> list[str]:
    """The presets found in this package, sorted (without `command`)."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def get(name: str) -> Runtime:
    """The preset called `name`; KeyError when there is none."""
    if name not in names():
        raise KeyError(name)
    preset = getattr(importlib.import_module(f"{__name__}.{name}"), "PRESET", None)
    if not isinstance(preset, Runtime):
        raise TypeError(f"{__name__}.{name} does not define PRESET, a Runtime")
    return preset
