"""``pytorch_lightning`` callback reporting step, total and phase to maintenance-shim.

No change to the training script is needed: with ``MAINT_PROGRESS_FILE`` or ``MAINT_PUSH_URL`` in the
environment (``scripts/with_maintenance.sh`` exports the first), every ``pytorch_lightning.Trainer``
gets this callback through the ``pytorch_lightning.callbacks_factory`` entry point. Passing it yourself
works too, with its own target, and the automatic one then stays idle:

    from maintenance_shim.integrations.pytorch_lightning import MaintenanceCallback

    trainer = Trainer(max_epochs=3, callbacks=[MaintenanceCallback("/run/maintenance/progress.json")])

It reports ``trainer.global_step`` (optimizer steps across all epochs) of
``trainer.estimated_stepping_batches``, and the phase: ``evaluating`` during the fit's validation loops
(not the sanity check), ``saving`` from ``on_save_checkpoint`` until training goes on, ``training``
otherwise. Only the global-zero process reports; reporting never raises into the training loop.
"""

from __future__ import annotations

from pytorch_lightning import Callback

from ._lightning import LightningHooks, make_factory

__all__ = ["MaintenanceCallback", "callbacks_factory"]


class MaintenanceCallback(LightningHooks, Callback):
    """Report Lightning's global step, estimated total and phase to maintenance-shim."""


callbacks_factory = make_factory(MaintenanceCallback)
