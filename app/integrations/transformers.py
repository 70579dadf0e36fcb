"""Hugging Face ``Trainer`` callback reporting step, total and phase to maintenance-shim.

    from maintenance_shim.integrations.transformers import MaintenanceCallback

    trainer = Trainer(model, args, train_dataset=..., eval_dataset=..., callbacks=[MaintenanceCallback()])

It reports ``state.global_step`` of ``state.max_steps`` (the Trainer's own exact total, also with epochs,
gradient accumulation and several processes), and the phase: ``evaluating`` from the step after which an
evaluation runs until it ends, ``saving`` from the step after which a checkpoint is written until it is,
``training`` otherwise. Phase changes are written at once, steps at most once a second. Only the main
process (``state.is_world_process_zero``) reports.

Target: ``path=`` (a progress file) and/or ``url=`` + ``token=`` (the push endpoint); by default
``MAINT_PROGRESS_FILE``, ``MAINT_PUSH_URL`` and ``MAINT_ADMIN_TOKEN``. With none the callback does
nothing and warns once. Reporting never raises into the training loop, and a push never blocks it.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ._core import EVALUATING, SAVING, TRAINING, Phase, ProgressSink

__all__ = ["MaintenanceCallback"]


class MaintenanceCallback(TrainerCallback):
    """Report the Trainer's global step, ``max_steps`` and phase (training, evaluating, saving)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        min_interval: float = 1.0,
    ) -> None:
        self.sink = ProgressSink("transformers MaintenanceCallback", path=path, url=url, token=token,
                                 min_interval=min_interval)
        self._training = False

    def _report(self, state: TrainerState, phase: Phase) -> None:
        if self._training and state.is_world_process_zero:
            self.sink.report(state.global_step, state.max_steps or None, phase)

    @staticmethod
    def _after_step(control: TrainerControl) -> Phase:
        # The Trainer evaluates first, then saves, right after the callbacks' on_step_end / on_epoch_end.
        if control.should_evaluate:
            return EVALUATING
        if control.should_save:
            return SAVING
        return TRAINING

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._training = True
        self._report(state, TRAINING)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.sink.phase != TRAINING:
            self._report(state, TRAINING)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._report(state, self._after_step(control))

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        phase = self._after_step(control)
        if phase != TRAINING:
            self._report(state, phase)

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # An evaluation the flags did not announce (another callback asked for it, say).
        if self.sink.phase != EVALUATING:
            self._report(state, EVALUATING)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._report(state, SAVING if control.should_save else TRAINING)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._report(state, TRAINING)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._training and state.is_world_process_zero:
            self.sink.finish(state.global_step, state.max_steps or None)
        self._training = False
