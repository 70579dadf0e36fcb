"""Trainer integrations: callbacks that report step, total and phase to maintenance-shim.

Each framework has its own module, imported only when used, so importing ``maintenance_shim`` or this
package never imports torch, transformers or lightning:

- ``maintenance_shim.integrations.transformers.MaintenanceCallback``: Hugging Face ``Trainer``;
- ``maintenance_shim.integrations.lightning.MaintenanceCallback``: ``lightning.pytorch.Trainer``, attached by
  itself through the ``lightning.pytorch.callbacks_factory`` entry point when ``MAINT_PROGRESS_FILE`` or
  ``MAINT_PUSH_URL`` is set;
- ``maintenance_shim.integrations.pytorch_lightning.MaintenanceCallback``: the same for ``pytorch_lightning``.

Hand-written loops (accelerate, diffusers scripts) use :class:`maintenance_shim.reporter.Reporter`, or
:class:`PushReporter` to push to a shim on another machine. See docs/integrations.md.
"""

from __future__ import annotations

from ._core import EVALUATING, SAVING, TRAINING, Phase, ProgressSink, PushReporter, push_endpoint

__all__ = ["EVALUATING", "SAVING", "TRAINING", "Phase", "ProgressSink", "PushReporter", "push_endpoint"]
