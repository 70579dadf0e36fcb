"""Case rate_change: a tqdm "Steps" loop whose step time drops by about a quarter at 40 %.

Each optimizer step accumulates gradients over ``--chunks-before`` micro-batches until 40 % of the steps,
then over ``--chunks-after`` (the batch shrinks, as when a curriculum or a resolution schedule changes):
about 14 -> 18 steps/s. A small MLP on random tensors, CPU, one thread.
"""

import argparse

import torch
import truthlog
from tqdm import tqdm

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=900)
parser.add_argument("--change-at", type=float, default=0.4)
parser.add_argument("--chunks-before", type=int, default=9)
parser.add_argument("--chunks-after", type=int, default=7)
parser.add_argument("--micro-batch", type=int, default=16)
parser.add_argument("--width", type=int, default=1024)
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
change_step = int(args.steps * args.change_at)

print(f"micro-batches per step: {args.chunks_before}, then {args.chunks_after} from step {change_step}")
progress_bar = tqdm(range(args.steps), desc="Steps")
for step in progress_bar:
    chunks = args.chunks_before if step < change_step else args.chunks_after
    for _ in range(chunks):
        x = torch.randn(args.micro_batch, 256)
        loss = torch.nn.functional.mse_loss(model(x), x) / chunks
        loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    truthlog.step(step + 1, args.steps)
    progress_bar.set_postfix(loss=f"{loss.item() * chunks:.4f}", refresh=False)
truthlog.end()
print("training finished")
