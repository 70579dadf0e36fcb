"""The Lightning callback's hooks, shared by the ``lightning`` and ``pytorch_lightning`` variants.

No framework import here: each variant mixes these hooks into its own ``Callback`` base class.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ._core import ENV_AUTO, ENV_FILE, ENV_URL, EVALUATING, SAVING, TRAINING, Phase, ProgressSink

logger = logging.getLogger("maintenance_shim.integrations")


class TrainerLike(Protocol):
    """What the hooks read from a Lightning ``Trainer``."""

    @property
    def global_step(self) -> int: ...

    @property
    def estimated_stepping_batches(self) -> int | float: ...

    @property
    def is_global_zero(self) -> bool: ...

    @property
    def sanity_checking(self) -> bool: ...


class LightningHooks:
    """Report ``trainer.global_step`` of ``trainer.estimated_stepping_batches`` and the phase.

    ``evaluating`` while a validation loop of the fit runs (not the sanity check before training: it is a
    few batches at step 0), ``saving`` from ``on_save_checkpoint`` until the next training batch or the
    end of validation, ``training`` otherwise. Only the global-zero process reports.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        min_interval: float = 1.0,
        auto: bool = False,
    ) -> None:
        super().__init__()
        self.sink = ProgressSink("lightning MaintenanceCallback", path=path, url=url, token=token,
                                 min_interval=min_interval)
        #: Attached by the entry point: steps aside when the script configured its own MaintenanceCallback.
        self.auto = auto
        self.disabled = False
        self.total: int | None = None
        self._fitting = False

    def _report(self, trainer: TrainerLike, phase: Phase) -> None:
        if self._fitting:
            self.sink.report(trainer.global_step, self.total, phase)

    def setup(self, trainer: TrainerLike, pl_module: object, stage: str) -> None:
        if self.auto:
            callbacks: list[object] = list(getattr(trainer, "callbacks", ()))
            explicit = [cb for cb in callbacks if isinstance(cb, LightningHooks) and not cb.auto and cb is not self]
            self.disabled = bool(explicit)
            if self.disabled:
                logger.debug("the script configured its own MaintenanceCallback; the automatic one stays idle")

    def on_train_start(self, trainer: TrainerLike, pl_module: object) -> None:
        if self.disabled or not trainer.is_global_zero:
            return
        self._fitting = True
        try:
            estimate = trainer.estimated_stepping_batches
        except Exception as error:  # no length to estimate from (an iterable dataset), say
            logger.debug("no estimated_stepping_batches: %r", error)
            estimate = math.inf
        self.total = int(estimate) if math.isfinite(estimate) and estimate >= 1 else None
        self._report(trainer, TRAINING)

    def on_train_batch_start(self, trainer: TrainerLike, pl_module: object, batch: Any, batch_idx: int) -> None:
        if self.sink.phase != TRAINING:
            self._report(trainer, TRAINING)

    def on_train_batch_end(
        self, trainer: TrainerLike, pl_module: object, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._report(trainer, TRAINING)

    def on_validation_start(self, trainer: TrainerLike, pl_module: object) -> None:
        if not trainer.sanity_checking:
            self._report(trainer, EVALUATING)

    def on_validation_end(self, trainer: TrainerLike, pl_module: object) -> None:
        if not trainer.sanity_checking:
            self._report(trainer, TRAINING)

    def on_save_checkpoint(self, trainer: TrainerLike, pl_module: object, checkpoint: dict[str, Any]) -> None:
        self._report(trainer, SAVING)

    def on_train_end(self, trainer: TrainerLike, pl_module: object) -> None:
        if self._fitting:
            self.sink.finish(trainer.global_step, self.total)
        self._fitting = False

    def on_exception(self, trainer: TrainerLike, pl_module: object, exception: BaseException) -> None:
        if self._fitting:
            self.sink.abort()
        self._fitting = False


C = TypeVar("C", bound=LightningHooks)


def make_factory(callback: Callable[..., C]) -> Callable[[], list[C]]:
    """An entry-point factory: ``[callback(auto=True)]`` when a target is in the environment, else ``[]``."""

    def callbacks_factory() -> list[C]:
        if not (os.environ.get(ENV_FILE) or os.environ.get(ENV_URL)):
            return []
        if os.environ.get(ENV_AUTO, "").strip().lower() in ("0", "false", "no", "off"):
            return []  # the operator wants the log followed, not the callback
        try:
            return [callback(auto=True)]
        except Exception as error:  # never break a Trainer that merely has this package installed
            logger.warning("maintenance-shim callback not attached: %r", error)
            return []

    return callbacks_factory
