"""Case hf_trainer_eval_save: the Hugging Face Trainer with step evaluation and checkpoint saves.

A tiny randomly initialised GPT-2 (no download), random token data, CPU, one thread. The truth comes
from a TrainerCallback: every optimizer step, plus phases around each evaluation and checkpoint save.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch
import transformers
import truthlog
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

parser = argparse.ArgumentParser()
parser.add_argument("--max-steps", type=int, default=700)
parser.add_argument("--eval-size", type=int, default=1600)
parser.add_argument("--n-embd", type=int, default=128)
parser.add_argument("--seq", type=int, default=64)
parser.add_argument("--batch", type=int, default=8)
# disable_tqdm=True as batch jobs set it, over 3 epochs, logging every 10 steps, with the INFO verbosity that
# Hugging Face's example scripts set on the main process (transformers.utils.logging.set_verbosity_info()), so
# the 'Num Epochs' / 'Total optimization steps' banner is printed: case trainer_hf_disable_tqdm_real.
parser.add_argument("--disable-tqdm", action="store_true")
# A sleep after every optimizer step (in the Truth callback): the run's length then follows the clock, not this
# machine's load (the live tests under with_maintenance.sh; the captures leave it at 0).
parser.add_argument("--step-seconds", type=float, default=0.0)
args = parser.parse_args()
STEP_SECONDS = args.step_seconds  # the callbacks' own `args` are the TrainingArguments

torch.set_num_threads(1)
torch.manual_seed(0)
VOCAB = 2000


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.data = torch.randint(0, VOCAB, (size, args.seq), generator=generator)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        ids = self.data[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


class Truth(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        truthlog.step(state.global_step, state.max_steps)
        if STEP_SECONDS:
            time.sleep(STEP_SECONDS)
        if state.global_step >= state.max_steps:
            truthlog.end()
        if control.should_evaluate:
            truthlog.phase("evaluating")
        elif control.should_save:
            truthlog.phase("saving")

    def on_evaluate(self, args, state, control, **kwargs):
        truthlog.phase("saving" if control.should_save else "training")

    def on_save(self, args, state, control, **kwargs):
        truthlog.phase("training")


config = GPT2Config(
    vocab_size=VOCAB, n_positions=args.seq, n_embd=args.n_embd, n_layer=2, n_head=4, resid_pdrop=0.0,
    embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
)
model = GPT2LMHeadModel(config)
output_dir = tempfile.mkdtemp(prefix="capture-hf-")
training_args = TrainingArguments(
    output_dir=output_dir,
    max_steps=-1 if args.disable_tqdm else args.max_steps,
    num_train_epochs=3 if args.disable_tqdm else 1,
    per_device_train_batch_size=args.batch,
    per_device_eval_batch_size=args.batch * 2,
    learning_rate=5e-4,
    eval_strategy="steps",
    eval_steps=100,
    save_strategy="steps",
    save_steps=150,
    save_total_limit=2,
    logging_steps=10 if args.disable_tqdm else 50,
    report_to=[],
    disable_tqdm=args.disable_tqdm,
    use_cpu=True,
    dataloader_num_workers=0,
    seed=0,
)
truthlog.meta(
    trainer=f"transformers Trainer {transformers.__version__}",
    bar_label="",
    epochs=3 if args.disable_tqdm else None,
    epochs_printed=args.disable_tqdm,
    print_every=10 if args.disable_tqdm else 1,
    total_steps=args.max_steps,
    versions=truthlog.versions("torch", "transformers", "accelerate", "tqdm", "safetensors"),
)
trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=RandomTokens(args.max_steps * args.batch // (3 if args.disable_tqdm else 1), seed=1),
    eval_dataset=RandomTokens(args.eval_size, seed=2),
    callbacks=[Truth()],
)
if args.disable_tqdm:
    transformers.utils.logging.set_verbosity_info()
trainer.train()
print(f"checkpoints in {output_dir}: {sorted(os.listdir(output_dir))}")
