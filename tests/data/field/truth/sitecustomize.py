"""The truth of an unmodified trainer script: its optimizer steps, saves and validations, as they happen.

On PYTHONPATH (with tests/data/capture, for truthlog) and with ``CAPTURE_TRUTH`` and ``CAPTURE_TOTAL`` set,
Python imports this at start-up. It imports nothing itself: once the trainer imports
``torch.optim.optimizer`` it registers a global optimizer-step hook (torch's
``register_optimizer_step_post_hook``: every optimizer, the script's own included) that writes
``{"t", "step", "total"}`` per step and ``end`` at the total; once ``accelerate.accelerator`` and
``diffusers.pipelines.pipeline_utils`` are imported, ``Accelerator.save_state`` (a checkpoint) and
``DiffusionPipeline.from_pretrained`` (a validation starts by building its pipeline) write a ``saving`` or
``evaluating`` phase, and the next step ``training``. Without the two variables (the shim's own processes,
a plain run) it does nothing. The script's file and its output are untouched.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

_TOTAL = int(os.environ.get("CAPTURE_TOTAL", "0") or 0)
_state = {"step": 0, "paused": False}


def _truthlog() -> Any:
    import truthlog  # tests/data/capture, on PYTHONPATH beside this folder

    return truthlog


def _on_step(*_: object) -> None:
    log = _truthlog()
    if _state["paused"]:
        log.phase("training")
        _state["paused"] = False
    _state["step"] += 1
    log.step(_state["step"], _TOTAL)
    if _state["step"] == _TOTAL:
        log.end()


def _pausing(phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _state["paused"]:
            _truthlog().phase(phase)
            _state["paused"] = True
        return function(*args, **kwargs)

    return wrapper


def _optimizer(module: ModuleType) -> None:
    module.register_optimizer_step_post_hook(_on_step)


def _accelerator(module: ModuleType) -> None:
    module.Accelerator.save_state = _pausing("saving", module.Accelerator.save_state)


def _pipeline(module: ModuleType) -> None:
    cls = module.DiffusionPipeline
    cls.from_pretrained = classmethod(_pausing("evaluating", cls.from_pretrained.__func__))


_AFTER_IMPORT: dict[str, Callable[[ModuleType], None]] = {
    "torch.optim.optimizer": _optimizer,
    "accelerate.accelerator": _accelerator,
    "diffusers.pipelines.pipeline_utils": _pipeline,
}


class _Watch(importlib.abc.MetaPathFinder):
    """Runs an installer right after one of the watched modules is executed."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        install = _AFTER_IMPORT.pop(fullname, None)
        if install is None:
            return None
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            install(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("CAPTURE_TRUTH") and _TOTAL > 0:
    sys.meta_path.insert(0, _Watch())
