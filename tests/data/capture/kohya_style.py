"""Case kohya_style: a loop printing what kohya-ss sd-scripts' train_network.py prints.

From train_network.py (kohya-ss/sd-scripts): logging through ``setup_logging()`` (a Rich ``RichHandler`` on
stderr when rich is installed, as it is here), the "running training / 学習開始" block printed by
``accelerator.print``, ``progress_bar = tqdm(range(args.max_train_steps), smoothing=0,
disable=not accelerator.is_local_main_process, desc="steps")``, ``accelerator.print(f"\\nepoch {epoch+1}/
{num_train_epochs}\\n")`` at each epoch start, ``progress_bar.set_postfix(**{"avr_loss": avr_loss})`` after
every step, ``progress_bar.unpause()`` after sampling/saving, ``\\nsaving checkpoint: ...`` every
``--save_every_n_epochs`` epochs and at the end, then ``model saved.``. The network is a small MLP on random
tensors (no Stable Diffusion), so the model-loading, caching and bucketing output before training is left out.
"""

import argparse
import logging
import math
import os
import sys
import tempfile
import time

import torch
import truthlog
from accelerate import Accelerator
from tqdm import tqdm


def setup_logging() -> None:  # library/utils.py setup_logging(), default arguments
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True))
    handler.setFormatter(logging.Formatter(fmt="%(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    logging.root.setLevel(logging.INFO)
    logging.root.addHandler(handler)


setup_logging()
logger = logging.getLogger(__name__)

parser = argparse.ArgumentParser()
parser.add_argument("--max_train_steps", type=int, default=300)
parser.add_argument("--num_train_images", type=int, default=30)  # images * repeats: one epoch = 30 steps
parser.add_argument("--train_batch_size", type=int, default=1)
parser.add_argument("--save_every_n_epochs", type=int, default=3)
parser.add_argument("--output_dir", default=os.path.join(tempfile.gettempdir(), "capture-kohya"))
parser.add_argument("--output_name", default="last")
parser.add_argument("--width", type=int, default=1536)
# Rows per step: 960 gives ~4 steps/s, like a LoRA on a consumer GPU. kohya calls progress_bar.unpause()
# after every step; with steps faster than tqdm's mininterval (0.1 s) that freezes the elapsed time and
# the rate shown goes wild (case kohya_style_fast, --rows 96).
parser.add_argument("--rows", type=int, default=960)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
accelerator = Accelerator()
os.makedirs(args.output_dir, exist_ok=True)

logger.info("prepare network")
network = torch.nn.Sequential(
    torch.nn.Linear(256, args.width), torch.nn.SiLU(), torch.nn.Linear(args.width, args.width), torch.nn.SiLU(),
    torch.nn.Linear(args.width, 256),
)
optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
logger.info("use AdamW optimizer | {}")
images = torch.randn(args.num_train_images, 256, generator=torch.Generator().manual_seed(1))
train_dataloader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(images), batch_size=args.train_batch_size, shuffle=True
)
network, optimizer, train_dataloader = accelerator.prepare(network, optimizer, train_dataloader)

num_update_steps_per_epoch = math.ceil(len(train_dataloader))
num_train_epochs = math.ceil(args.max_train_steps / num_update_steps_per_epoch)

accelerator.print("running training / 学習開始")
accelerator.print(f"  num train images * repeats / 学習画像の数×繰り返し回数: {args.num_train_images}")
accelerator.print("  num reg images / 正則化画像の数: 0")
accelerator.print(f"  num batches per epoch / 1epochのバッチ数: {len(train_dataloader)}")
accelerator.print(f"  num epochs / epoch数: {num_train_epochs}")
accelerator.print(f"  batch size per device / バッチサイズ: {args.train_batch_size}")
accelerator.print("  gradient accumulation steps / 勾配を合計するステップ数 = 1")
accelerator.print(f"  total optimization steps / 学習ステップ数: {args.max_train_steps}")

truthlog.meta(
    trainer="kohya sd-scripts train_network.py (imitation: same tqdm calls and prints)",
    bar_label="steps",
    epochs=num_train_epochs,
    epochs_printed=True,
    total_steps=args.max_train_steps,
    versions=truthlog.versions("torch", "accelerate", "tqdm", "rich"),
)

logger.info(f"unet dtype: torch.float32, device: {accelerator.device}")
progress_bar = tqdm(range(args.max_train_steps), smoothing=0, disable=not accelerator.is_local_main_process, desc="steps")  # noqa: E501
global_step = 0
loss_total = 0.0
loss_list: list[float] = []


def save_model(ckpt_name: str, steps: int, epoch_no: int) -> None:
    ckpt_file = os.path.join(args.output_dir, ckpt_name)
    accelerator.print(f"\nsaving checkpoint: {ckpt_file}")
    torch.save({"state": accelerator.unwrap_model(network).state_dict(), "steps": steps, "epoch": epoch_no}, ckpt_file)


for epoch in range(num_train_epochs):
    accelerator.print(f"\nepoch {epoch+1}/{num_train_epochs}\n")
    network.train()
    for step, (latents,) in enumerate(train_dataloader):
        with accelerator.accumulate(network):
            noise = torch.randn_like(latents)
            batch = (latents + noise).repeat(args.rows, 1)
            loss = torch.nn.functional.mse_loss(network(batch), noise.repeat(args.rows, 1))
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        if accelerator.sync_gradients:
            progress_bar.update(1)
            global_step += 1
            truthlog.step(global_step, args.max_train_steps)
            if global_step >= args.max_train_steps:
                truthlog.end()
            progress_bar.unpause()

        current_loss = loss.detach().item()
        # LossRecorder.moving_average: the mean over the current epoch's steps
        if epoch == 0:
            loss_list.append(current_loss)
        else:
            loss_total -= loss_list[step]
            loss_list[step] = current_loss
        loss_total += current_loss
        avr_loss = loss_total / len(loss_list)
        progress_bar.set_postfix(**{"avr_loss": avr_loss})

        if global_step >= args.max_train_steps:
            break

    accelerator.wait_for_everyone()
    saving = (epoch + 1) % args.save_every_n_epochs == 0 and (epoch + 1) < num_train_epochs
    if saving:
        truthlog.phase("saving")
        save_model(f"{args.output_name}-{epoch + 1:06d}.safetensors", global_step, epoch + 1)
        truthlog.phase("training")
    progress_bar.unpause()

accelerator.end_training()
truthlog.phase("saving")
save_model(f"{args.output_name}.safetensors", global_step, num_train_epochs)
logger.info("model saved.")
truthlog.phase("training")
time.sleep(0.2)
sys.stdout.flush()
