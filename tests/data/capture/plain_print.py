"""Case plain_print / plain_print_buffered: a bare loop printing ``step {i}/{total} loss=...`` with print().

No tqdm, no flush: what the log receives depends only on Python's stdout buffering (run it with and
without PYTHONUNBUFFERED=1). A tiny MLP on random tensors, CPU, one thread, ~15 steps/s.
"""

import argparse

import torch
import truthlog

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=900)
parser.add_argument("--width", type=int, default=2048)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
truthlog.meta(
    trainer="plain Python loop (print)",
    bar_label="step",
    epochs=None,
    epochs_printed=False,
    total_steps=args.steps,
    versions=truthlog.versions("torch"),
)

model = torch.nn.Sequential(
    torch.nn.Linear(256, args.width), torch.nn.GELU(), torch.nn.Linear(args.width, args.width), torch.nn.GELU(),
    torch.nn.Linear(args.width, 256),
)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
target = torch.randn(64, 256)

print(f"training {args.steps} steps, {sum(p.numel() for p in model.parameters())} parameters")
for step in range(1, args.steps + 1):
    x = torch.randn(64, 256)
    loss = torch.nn.functional.mse_loss(model(x), target)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    truthlog.step(step, args.steps)
    print(f"step {step}/{args.steps} loss={loss.item():.4f}")
truthlog.end()
print("done")
