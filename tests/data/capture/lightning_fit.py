"""Cases lightning_tqdm, lightning_rich_pipe, lightning_rich_interactive, lightning_tqdm_epochs_short.

PyTorch Lightning ``Trainer(max_epochs=N, accelerator="cpu", enable_progress_bar=True, logger=False,
enable_checkpointing=False, callbacks=[TQDMProgressBar() or RichProgressBar()])`` fitting a tiny MLP
LightningModule on random tensors, with a validation loader (a validation bar between epochs, and
Lightning's default 2-batch sanity check before training). The truth comes from a Callback:
``trainer.global_step`` of ``trainer.estimated_stepping_batches`` after every training batch, and phases
around every validation run.
"""

import argparse
import time

import lightning
import torch
import truthlog
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

parser = argparse.ArgumentParser()
parser.add_argument("--bar", choices=["tqdm", "rich"], default="tqdm")
parser.add_argument("--max-epochs", type=int, default=5)
parser.add_argument("--train-batches", type=int, default=160)
parser.add_argument("--val-batches", type=int, default=40)
parser.add_argument("--batch", type=int, default=128)
parser.add_argument("--width", type=int, default=1536)
# A sleep after every training batch (a Callback): the run's length then follows the clock, not this machine's
# load (the live tests under with_maintenance.sh; the captures leave it at 0).
parser.add_argument("--step-seconds", type=float, default=0.0)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)


class TinyModule(LightningModule):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(256, width), torch.nn.GELU(), torch.nn.Linear(width, width), torch.nn.GELU(),
            torch.nn.Linear(width, 256),
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def loader(batches: int, seed: int, shuffle: bool) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    size = batches * args.batch
    data = torch.utils.data.TensorDataset(torch.randn(size, 256, generator=generator), torch.randn(size, 256))
    return torch.utils.data.DataLoader(data, batch_size=args.batch, shuffle=shuffle, num_workers=0)


class Truth(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        total = int(trainer.estimated_stepping_batches)
        truthlog.step(trainer.global_step, total)
        if trainer.global_step >= total:
            truthlog.end()

        if args.step_seconds:
            time.sleep(args.step_seconds)

    def on_validation_start(self, trainer, pl_module):
        if trainer.sanity_checking:  # Lightning's 2-batch check before the first step
            truthlog.phase("evaluating", sanity_check=True)
        else:
            truthlog.phase("evaluating")

    def on_validation_end(self, trainer, pl_module):
        truthlog.phase("training")


total_steps = args.max_epochs * args.train_batches
bar_class = "TQDMProgressBar" if args.bar == "tqdm" else "RichProgressBar"
truthlog.meta(
    trainer=f"PyTorch Lightning {lightning.__version__} Trainer, {bar_class}",
    bar_label="Epoch",
    epochs=args.max_epochs,
    epochs_printed=args.bar == "rich",  # RichProgressBar prints 'Epoch 2/4'; TQDMProgressBar only 'Epoch 2'
    total_steps=total_steps,
    versions=truthlog.versions("torch", "lightning", "tqdm", "rich"),
)
progress = TQDMProgressBar() if args.bar == "tqdm" else RichProgressBar()
trainer = Trainer(
    max_epochs=args.max_epochs,
    accelerator="cpu",
    devices=1,
    enable_progress_bar=True,
    logger=False,
    enable_checkpointing=False,
    enable_model_summary=True,
    callbacks=[progress, Truth()],
)
trainer.fit(
    TinyModule(args.width),
    train_dataloaders=loader(args.train_batches, seed=1, shuffle=True),
    val_dataloaders=loader(args.val_batches, seed=2, shuffle=False),
)
