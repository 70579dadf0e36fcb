"""Case crash_resume: a tqdm "Steps" loop killed mid-run and resumed from its last checkpoint.

Saves model + optimizer + step every ``--save-every`` steps to ``--output-dir``. record.py sends SIGKILL
once the truth shows step ~520 and restarts the same command with ``--resume``: the new process loads the
newest checkpoint (step 360), writes a ``restart`` truth event and draws the bar from there with
``tqdm(total=..., initial=360, desc="Steps")``. Both processes write to the same chunk stream. A small MLP
on random tensors, CPU, one thread.
"""

import argparse
import os
import shutil
import tempfile

import torch
import truthlog
from tqdm import tqdm

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=900)
parser.add_argument("--save-every", type=int, default=180)  # 180, 360, 540: killed at 520 it resumes at 360
parser.add_argument("--output-dir", default=os.path.join(tempfile.gettempdir(), "capture-crash-resume"))
parser.add_argument("--resume", action="store_true")
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

start = 0
if args.resume:
    names = [name for name in os.listdir(args.output_dir) if name.startswith("ckpt-")]
    saved = sorted((int(name.split("-")[1].split(".")[0]), name) for name in names)
    step, name = saved[-1]
    state = torch.load(os.path.join(args.output_dir, name))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    start = state["step"]
    print(f"Resuming from checkpoint {name} (step {start})")
    truthlog.restart(start)
else:
    shutil.rmtree(args.output_dir, ignore_errors=True)
    os.makedirs(args.output_dir)
    print(f"Starting a new run: {args.steps} steps, checkpoints in {args.output_dir}")

progress_bar = tqdm(total=args.steps, initial=start, desc="Steps")
for step in range(start + 1, args.steps + 1):
    x = torch.randn(args.batch, 256)
    loss = torch.nn.functional.mse_loss(model(x), x)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    progress_bar.update(1)
    truthlog.step(step, args.steps)
    progress_bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    if step % args.save_every == 0 and step < args.steps:
        truthlog.phase("saving")
        path = os.path.join(args.output_dir, f"ckpt-{step}.pt")
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}
        torch.save({**state, "step": step}, path)
        progress_bar.write(f"Saved checkpoint {path}")
        truthlog.phase("training")
truthlog.end()
progress_bar.close()
print("training finished")
