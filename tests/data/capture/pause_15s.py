"""Case pause_15s: a tqdm "Steps" loop with one 15 s checkpoint save at 50 %.

The save writes ``--save-mb`` MB of model-sized data to a temporary file (fsync'd), then waits out the
rest of ``--pause`` seconds, as a slow disk would; the message is a plain ``print`` (stdout) while the bar
is on stderr, as in many hand-written loops. A small MLP on random tensors, CPU, one thread.
"""

import argparse
import os
import tempfile
import time

import torch
import truthlog
from tqdm import tqdm

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=600)
parser.add_argument("--pause-at", type=int, default=300)
parser.add_argument("--pause", type=float, default=15.0)
parser.add_argument("--save-mb", type=int, default=300)
parser.add_argument("--batch", type=int, default=96)
parser.add_argument("--width", type=int, default=1536)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
truthlog.meta(
    trainer="plain PyTorch loop with tqdm",
    bar_label="Steps",
    epochs=None,
    epochs_printed=False,
    total_steps=args.steps,
    versions=truthlog.versions("torch", "tqdm"),
)

model = torch.nn.Sequential(
    torch.nn.Linear(256, args.width), torch.nn.GELU(), torch.nn.Linear(args.width, args.width), torch.nn.GELU(),
    torch.nn.Linear(args.width, 256),
)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)


def save_checkpoint(step: int) -> None:
    started = time.monotonic()
    path = os.path.join(tempfile.gettempdir(), f"capture-pause-checkpoint-{step}.pt")
    print(f"Saving checkpoint to {path}")
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for _ in range(args.save_mb):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    os.unlink(path)
    time.sleep(max(0.0, args.pause - (time.monotonic() - started)))
    print(f"Checkpoint saved ({args.save_mb} MB, {time.monotonic() - started:.1f} s)")


progress_bar = tqdm(range(args.steps), desc="Steps")
for step in progress_bar:
    x = torch.randn(args.batch, 256)
    loss = torch.nn.functional.mse_loss(model(x), x)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    truthlog.step(step + 1, args.steps)
    progress_bar.set_postfix(loss=f"{loss.item():.4f}")
    if step + 1 == args.pause_at:
        truthlog.phase("saving")
        save_checkpoint(step + 1)
        truthlog.phase("training")
truthlog.end()
progress_bar.close()
print("training finished")
