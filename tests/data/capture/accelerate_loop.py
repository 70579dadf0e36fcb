"""Cases accelerate_loop_fresh / accelerate_loop_resumed: a diffusers-style ``accelerate`` training loop.

Follows the structure and the output of diffusers' examples (train_text_to_image.py and friends):
``logging.basicConfig`` with diffusers' format, accelerate's ``get_logger``, the "***** Running training *****"
block, ``progress_bar = tqdm(range(0, max_train_steps), initial=initial_global_step, desc="Steps", ...)``,
``set_postfix(step_loss=..., lr=...)`` every step, ``accelerator.save_state`` every ``--checkpointing_steps``
followed by ``logger.info(f"Saved state to {save_path}")``, ``checkpoints_total_limit`` pruning, and
``--resume_from_checkpoint latest``. The "UNet" is a small MLP trained to predict noise on random tensors.

``--stop_at_step N`` ends the process right after step N (and its checkpoint) without closing the bar, as a
crash would; the resumed case uses it (not recorded) to make the checkpoint it loads.
"""

import argparse
import logging
import math
import os
import shutil
import sys
import tempfile

import accelerate
import torch
import truthlog
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm

logger = get_logger(__name__, log_level="INFO")

parser = argparse.ArgumentParser()
parser.add_argument("--output_dir", default=os.path.join(tempfile.gettempdir(), "capture-accelerate"))
parser.add_argument("--max_train_steps", type=int, default=900)
parser.add_argument("--train_batch_size", type=int, default=128)
# 140 batches per epoch: 900 steps are 7 epochs, the last one partial (60). Resumed at 360, diffusers' loop
# restarts epoch 2 from its first batch and has no break in the epoch loop, so epoch 6 still runs one step:
# the bar ends at 901/900, as the real scripts do.
parser.add_argument("--num_examples", type=int, default=140 * 128)
parser.add_argument("--checkpointing_steps", type=int, default=120)
parser.add_argument("--checkpoints_total_limit", type=int, default=2)
parser.add_argument("--learning_rate", type=float, default=1e-4)
parser.add_argument("--lr_warmup_steps", type=int, default=50)
parser.add_argument("--resume_from_checkpoint", default=None)
parser.add_argument("--stop_at_step", type=int, default=None)
parser.add_argument("--width", type=int, default=2048)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(args.seed)

logging.basicConfig(
    format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
    datefmt="%m/%d/%Y %H:%M:%S",
    level=logging.INFO,
)
accelerator = Accelerator(project_config=ProjectConfiguration(project_dir=args.output_dir))
logger.info(accelerator.state, main_process_only=False)
set_seed(args.seed)
if accelerator.is_main_process:
    os.makedirs(args.output_dir, exist_ok=True)


class TinyUNet(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.time = torch.nn.Embedding(1000, 256)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(256, width), torch.nn.SiLU(), torch.nn.Linear(width, width), torch.nn.SiLU(),
            torch.nn.Linear(width, 256),
        )

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.net(sample + self.time(timesteps))


unet = TinyUNet(args.width)
optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate)
generator = torch.Generator().manual_seed(1)
dataset = torch.utils.data.TensorDataset(torch.randn(args.num_examples, 256, generator=generator))
train_dataloader = torch.utils.data.DataLoader(dataset, batch_size=args.train_batch_size, shuffle=True)
lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / args.lr_warmup_steps))
unet, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(unet, optimizer, train_dataloader, lr_scheduler)

num_update_steps_per_epoch = math.ceil(len(train_dataloader))
num_train_epochs = math.ceil(args.max_train_steps / num_update_steps_per_epoch)
total_batch_size = args.train_batch_size * accelerator.num_processes

logger.info("***** Running training *****")
logger.info(f"  Num examples = {len(dataset)}")
logger.info(f"  Num Epochs = {num_train_epochs}")
logger.info(f"  Instantaneous batch size per device = {args.train_batch_size}")
logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch_size}")
logger.info("  Gradient Accumulation steps = 1")
logger.info(f"  Total optimization steps = {args.max_train_steps}")
global_step = 0
first_epoch = 0

if args.resume_from_checkpoint:
    if args.resume_from_checkpoint != "latest":
        path = os.path.basename(args.resume_from_checkpoint)
    else:
        dirs = [d for d in os.listdir(args.output_dir) if d.startswith("checkpoint")]
        dirs = sorted(dirs, key=lambda x: int(x.split("-")[1]))
        path = dirs[-1] if len(dirs) > 0 else None
    if path is None:
        accelerator.print(
            f"Checkpoint '{args.resume_from_checkpoint}' does not exist. Starting a new training run."
        )
        args.resume_from_checkpoint = None
        initial_global_step = 0
    else:
        accelerator.print(f"Resuming from checkpoint {path}")
        accelerator.load_state(os.path.join(args.output_dir, path))
        global_step = int(path.split("-")[1])
        initial_global_step = global_step
        first_epoch = global_step // num_update_steps_per_epoch
        truthlog.restart(global_step)
else:
    initial_global_step = 0

truthlog.meta(
    trainer=f"accelerate {accelerate.__version__} loop (diffusers-style)",
    bar_label="Steps",
    epochs=num_train_epochs,
    epochs_printed=True,
    total_steps=args.max_train_steps,
    versions=truthlog.versions("torch", "accelerate", "tqdm"),
)

progress_bar = tqdm(
    range(0, args.max_train_steps),
    initial=initial_global_step,
    desc="Steps",
    # Only show the progress bar once on each machine.
    disable=not accelerator.is_local_main_process,
)

for _epoch in range(first_epoch, num_train_epochs):
    unet.train()
    train_loss = 0.0
    for _step, (latents,) in enumerate(train_dataloader):
        with accelerator.accumulate(unet):
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, 1000, (latents.shape[0],))
            noisy = latents + noise * (timesteps[:, None] / 1000.0)
            model_pred = unet(noisy, timesteps)
            loss = torch.nn.functional.mse_loss(model_pred.float(), noise.float(), reduction="mean")
            avg_loss = accelerator.gather(loss.repeat(args.train_batch_size)).mean()
            train_loss += avg_loss.item()
            accelerator.backward(loss)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()

        if accelerator.sync_gradients:
            progress_bar.update(1)
            global_step += 1
            truthlog.step(global_step, args.max_train_steps)
            accelerator.log({"train_loss": train_loss}, step=global_step)
            train_loss = 0.0

            if global_step % args.checkpointing_steps == 0 and accelerator.is_main_process:
                truthlog.phase("saving")
                if args.checkpoints_total_limit is not None:
                    checkpoints = [d for d in os.listdir(args.output_dir) if d.startswith("checkpoint")]
                    checkpoints = sorted(checkpoints, key=lambda x: int(x.split("-")[1]))
                    if len(checkpoints) >= args.checkpoints_total_limit:
                        num_to_remove = len(checkpoints) - args.checkpoints_total_limit + 1
                        removing_checkpoints = checkpoints[0:num_to_remove]
                        logger.info(
                            f"{len(checkpoints)} checkpoints already exist, removing {len(removing_checkpoints)} checkpoints"  # noqa: E501
                        )
                        logger.info(f"removing checkpoints: {', '.join(removing_checkpoints)}")
                        for removing_checkpoint in removing_checkpoints:
                            shutil.rmtree(os.path.join(args.output_dir, removing_checkpoint))
                save_path = os.path.join(args.output_dir, f"checkpoint-{global_step}")
                accelerator.save_state(save_path)
                logger.info(f"Saved state to {save_path}")
                truthlog.phase("training")

            if args.stop_at_step is not None and global_step >= args.stop_at_step:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)  # as if the process died here: the bar is never closed

        logs = {"step_loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0]}
        progress_bar.set_postfix(**logs)

        if global_step >= args.max_train_steps:
            break

truthlog.end()
accelerator.wait_for_everyone()
if accelerator.is_main_process:
    truthlog.phase("saving")
    torch.save(accelerator.unwrap_model(unet).state_dict(), os.path.join(args.output_dir, "unet.pt"))
    truthlog.phase("training")
accelerator.end_training()
