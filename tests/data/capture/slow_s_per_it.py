"""Case slow_s_per_it: a loop at about 2-3 s per step, so tqdm shows ``s/it`` instead of ``it/s``.

Each optimizer step accumulates gradients over ``--chunks`` micro-batches of a small MLP (a large batch
on a slow device). CPU, one thread, random tensors. The bar's description is "Training".
"""

import argparse

import torch
import truthlog
from tqdm import tqdm

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--chunks", type=int, default=80)
parser.add_argument("--micro-batch", type=int, default=64)
parser.add_argument("--width", type=int, default=1536)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
truthlog.meta(
    trainer="plain PyTorch loop with tqdm",
    bar_label="Training",
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

print(f"{args.steps} steps of {args.chunks} x {args.micro_batch} samples")
for step in tqdm(range(args.steps), desc="Training"):
    for _ in range(args.chunks):
        x = torch.randn(args.micro_batch, 256)
        loss = torch.nn.functional.mse_loss(model(x), x) / args.chunks
        loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    truthlog.step(step + 1, args.steps)
truthlog.end()
print("training finished")
