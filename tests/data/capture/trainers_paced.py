"""Paced stand-ins for the trainers operators run: each makes the progress calls its trainer makes, with the
real tqdm or Rich, at a paced step time (a seeded jitter of +-15 %) with its mid-run saves and validations.

    python tests/data/capture/trainers_paced.py TRAINER [--steps N] [--step-seconds S] [--resume-from N]

No model runs: the step is a sleep, so the recorded timing is the paced one whatever the machine's load
(record.py still records the true times, and truth.jsonl the true step times). Where a trainer's calls are
reproduced, the comment names its source file and line (as read from the trainers' public repositories,
December 2026); the code here is this project's own.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from typing import Any

import truthlog
from tqdm import tqdm

parser = argparse.ArgumentParser()
parser.add_argument("trainer")
parser.add_argument("--steps", type=int, default=0)
parser.add_argument("--step-seconds", type=float, default=0.15)
parser.add_argument("--resume-from", type=int, default=0)
args = parser.parse_args()
rng = random.Random(7)


def pace(seconds: float | None = None) -> None:
    """One training step's work: the paced step time with a seeded +-15 % jitter."""
    base = args.step_seconds if seconds is None else seconds
    time.sleep(base * rng.uniform(0.85, 1.15))


def pause(kind: str, seconds: float) -> None:
    """A save or validation the trainer runs between steps (truth marks it)."""
    truthlog.phase(kind)
    time.sleep(seconds)
    truthlog.phase("training")


def rich_logging() -> logging.Logger:
    # ltx_trainer/__init__.py:14-24 and kohya library/utils.py setup_logging(): a RichHandler on the root logger.
    from rich.logging import RichHandler

    logging.basicConfig(level="INFO", format="%(message)s", handlers=[RichHandler(show_time=False, markup=True)])
    return logging.getLogger("trainer")


def kohya() -> None:
    """kohya-ss/sd-scripts train_network.py with its dataset preparation before training."""
    log = rich_logging()
    total = args.steps or 200
    per_epoch = 40
    epochs = total // per_epoch
    log.info("loading image sizes.")  # library/train_util.py:992
    for _ in tqdm(range(40)):  # library/train_util.py:993: unlabelled, ~300,000 it/s
        pass
    log.info("make buckets")
    log.info("caching latents.")  # library/train_util.py:1224
    for _ in tqdm(range(40), smoothing=1, total=40):  # library/train_util.py:1294 (VAE encoding per batch)
        time.sleep(0.1)
    log.info("import network module: networks.lora")  # then text encoders, optimizer, accelerate.prepare
    time.sleep(3.0)
    print("running training / 学習開始")  # train_network.py: accelerator.print block
    print(f"  num train images * repeats / 学習画像の数×繰り返し回数: {per_epoch}")
    print(f"  num epochs / epoch数: {epochs}")
    print(f"  total optimization steps / 学習ステップ数: {total}")
    truthlog.meta(trainer="kohya sd-scripts train_network.py (paced)", bar_label="steps", epochs=epochs,
                  epochs_printed=True, total_steps=total)
    # train_network.py:1357: tqdm(range(max_train_steps - initial_step), smoothing=0, desc="steps")
    bar = tqdm(range(total), smoothing=0, desc="steps")
    step = 0
    for epoch in range(epochs):
        print(f"\nepoch {epoch + 1}/{epochs}\n")
        for _ in range(per_epoch):
            pace()
            bar.update(1)
            step += 1
            truthlog.step(step, total)
            if step == total:
                truthlog.end()
            bar.unpause()
            bar.set_postfix(avr_loss=0.1 + rng.random() / 10)
        if (epoch + 1) % 2 == 0 and epoch + 1 < epochs:  # --save_every_n_epochs 2
            truthlog.phase("saving")
            print(f"\nsaving checkpoint: out/last-{epoch + 1:06d}.safetensors")
            time.sleep(1.2)
            truthlog.phase("training")
        bar.unpause()
    truthlog.phase("saving")
    print("\nsaving checkpoint: out/last.safetensors")
    time.sleep(2.5)
    log.info("model saved.")
    truthlog.phase("training")


def musubi() -> None:
    """kohya-ss/musubi-tuner training/trainer_base.py: timestep preview bars, then 'steps' with reset()."""
    total = args.steps or 240
    per_epoch = 60
    epochs = total // per_epoch
    for _ in tqdm(range(100)):  # training/trainer_base.py:747: unlabelled, before training
        time.sleep(0.005)
    for _ in tqdm(range(50)):  # training/trainer_base.py:764
        pass
    print(f"\nnum train items: {per_epoch}\nnum epochs: {epochs}\ntotal optimization steps: {total}")
    truthlog.meta(trainer="kohya musubi-tuner (paced)", bar_label="steps", epochs=epochs, epochs_printed=True,
                  total_steps=total)
    # training/trainer_base.py:1920: tqdm(range(max_train_steps), smoothing=0, desc="steps")
    bar = tqdm(range(total), smoothing=0, desc="steps")
    step = 0
    for epoch in range(epochs):
        print(f"\nepoch {epoch + 1}/{epochs}")  # training/trainer_base.py:2021
        for _ in range(per_epoch):
            pace(2.0 * args.step_seconds if step == 0 else None)
            if step == 0:
                bar.reset()  # training/trainer_base.py:2086: the first step is left out of the bar
            bar.update(1)
            step += 1
            truthlog.step(step, total)
            if step == total:
                truthlog.end()
            bar.set_postfix(avr_loss=0.1 + rng.random() / 10)  # training/trainer_base.py:2118
            if step % 100 == 0 and step < total:  # sample_every_n_steps: a labelled sampling bar per prompt
                truthlog.phase("evaluating")
                for prompt in range(2):
                    for _ in tqdm(range(6), desc=f"Sampling timesteps for prompt {prompt + 1}"):
                        time.sleep(0.1)
                truthlog.phase("training")
        if epoch + 1 < epochs:  # one safetensors save per epoch, nothing printed while it writes
            truthlog.phase("saving")
            print(f"\nsaving checkpoint: out/model-{epoch + 1:06d}.safetensors")  # training/trainer_base.py:1942
            time.sleep(1.2)
            truthlog.phase("training")
    truthlog.phase("saving")
    time.sleep(2.0)
    truthlog.phase("training")


def ltx2(disable_progress_bars: bool = False) -> None:
    """Lightricks/LTX-2 packages/ltx-trainer: trainer.py's loop with progress.py's TrainingProgress."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    log = rich_logging()
    target = args.steps or 300
    initial = args.resume_from
    remaining = target - initial
    validation_interval, checkpoint_interval = 100, 100
    truthlog.meta(trainer="Lightricks LTX-2 ltx-trainer (paced)", bar_label="Training", epochs=None,
                  epochs_printed=False, total_steps=target, print_every=20 if disable_progress_bars else 1)
    if initial:
        log.info(f"📥 Loading checkpoint from out/checkpoints/lora_weights_step_{initial:05d}.safetensors")
        truthlog.restart(initial)
        log.info(f"🚀 Resuming training from step {initial} → {target}")  # trainer.py:189
    else:
        log.info("🚀 Starting training...")  # trainer.py:191
    progress: Any = None
    train_task: Any = None
    if disable_progress_bars:
        log.warning("Progress bars disabled. Intermediate status messages will be logged instead.")  # trainer.py:201
    else:
        # progress.py:97-105: the columns; progress.py:112: add_task("Training", total=total_steps (the
        # remaining steps), video=f"0/{total_steps}", info="Starting...")
        progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            TextColumn("{task.fields[video]}", style="magenta"),
            BarColumn(bar_width=40, style="blue"),
            TextColumn("{task.fields[info]}", style="cyan"),
            TimeElapsedColumn(),
            TextColumn("ETA:"),
            TimeRemainingColumn(compact=True),
        )
        progress.__enter__()
        train_task = progress.add_task("Training", total=remaining, video=f"0/{remaining}", info="Starting...")
    start = time.time()
    for global_step in range(initial + 1, target + 1):
        began = time.time()
        pace()
        truthlog.step(global_step, target)
        if global_step == target:
            truthlog.end()
        if global_step % validation_interval == 0 and global_step < target:  # trainer.py:246-254
            truthlog.phase("evaluating")
            if progress is not None:  # progress.py:165: add_task("Sampling", ...), SamplingContext
                task = progress.add_task("Sampling", total=6, completed=0, video="0/2", info="step 0/6")
                for video in range(2):
                    progress.reset(task, total=6)
                    progress.update(task, completed=0, video=f"{video + 1}/2", info="step 0/6")
                    for _ in range(6):
                        time.sleep(0.1)
                        progress.advance(task)
                        done = int(progress.tasks[task].completed)
                        progress.update(task, info=f"step {done}/6")
                progress.update(task, visible=False)
            else:
                time.sleep(1.2)
            truthlog.phase("training")
        if global_step % checkpoint_interval == 0 and global_step < target:  # trainer.py:257-263
            truthlog.phase("saving")
            time.sleep(1.2)
            log.info(f"💾 Lora weights for step {global_step} saved in checkpoints/lora_weights_step_{global_step:05d}"
                     ".safetensors")  # trainer.py:981
            truthlog.phase("training")
        step_time = time.time() - began
        loss, lr = 0.05 + rng.random() / 20, 1e-4
        if progress is not None:  # progress.py:140-146: info column, then video=f"{completed}/{total_steps}"
            progress.update(train_task, advance=1, info=f"Loss: {loss:.4f} | LR: {lr:.2e} | {step_time:.2f}s/step")
            completed = int(progress.tasks[train_task].completed)
            progress.update(train_task, video=f"{completed}/{remaining}")
        if disable_progress_bars and global_step % 20 == 0:  # trainer.py:299-311
            elapsed = time.time() - start
            estimated = elapsed / (global_step - initial) * remaining
            total_time = f"{estimated // 3600:.0f}h {(estimated % 3600) // 60:.0f}m"
            log.info(f"Step {global_step}/{target} - Loss: {loss:.4f}, LR: {lr:.2e}, Time/Step: {step_time:.2f}s, "
                     f"Total Time: {total_time}")
    if progress is not None:
        progress.__exit__(None, None, None)
    truthlog.phase("saving")
    time.sleep(2.0)  # trainer.py:338: the final save
    log.info(f"💾 Lora weights for step {target} saved in checkpoints/lora_weights_step_{target:05d}.safetensors")
    truthlog.phase("training")


def ltxv() -> None:
    """Lightricks/LTX-Video-Trainer src/ltxv_trainer/trainer.py: Live(Panel(Group(train, sample progress)))."""
    from rich.console import Group
    from rich.live import Live
    from rich.panel import Panel
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    log = rich_logging()
    total = args.steps or 300
    # trainer.py:342 removes the task before the Live display stops: the last frame drawn has no training
    # row, so the bar is never seen at its total (the end of the run is the trainer's exit).
    truthlog.meta(trainer="Lightricks LTX-Video-Trainer (paced)", bar_label="Training Step", epochs=None,
                  epochs_printed=False, total_steps=total, end_unmarked=True)
    log.info("🚀 Starting training...")  # trainer.py:149
    train_progress = Progress(  # trainer.py:159-169
        TextColumn("Training Step"), MofNCompleteColumn(), BarColumn(bar_width=40, style="blue"),
        TextColumn("Loss: {task.fields[loss]:.4f}"), TextColumn("LR: {task.fields[lr]:.2e}"),
        TextColumn("Time/Step: {task.fields[step_time]:.2f}s"), TimeElapsedColumn(), TextColumn("ETA:"),
        TimeRemainingColumn(compact=True),
    )
    sample_progress = Progress(  # trainer.py:172-179
        TextColumn("Sampling validation videos"), MofNCompleteColumn(), BarColumn(bar_width=40, style="blue"),
        TimeElapsedColumn(), TextColumn("ETA:"), TimeRemainingColumn(compact=True),
    )
    live = Live(Panel(Group(train_progress, sample_progress)), refresh_per_second=2)  # trainer.py:181
    with live:
        task = train_progress.add_task("Training", total=total, loss=0.0, lr=1e-4, step_time=0.0)  # trainer.py:196
        for step in range(1, total + 1):
            began = time.time()
            pace()
            truthlog.step(step, total)
            if step == total:
                truthlog.end()
            if step % 100 == 0 and step < total:  # trainer.py:239-248: validation videos
                truthlog.phase("evaluating")
                sample = sample_progress.add_task("Sampling", total=2)  # trainer.py:724
                for _ in range(2):
                    time.sleep(0.6)
                    sample_progress.update(sample, advance=1)  # trainer.py:777
                sample_progress.remove_task(sample)  # trainer.py:779
                truthlog.phase("training")
            if step % 150 == 0 and step < total:  # trainer.py:251-263: checkpoint
                pause("saving", 1.2)
            train_progress.update(task, advance=1, loss=0.05 + rng.random() / 20, lr=1e-4,
                                  step_time=time.time() - began)  # trainer.py:285-292
        train_progress.remove_task(task)  # trainer.py:342
    pause("saving", 2.0)  # trainer.py:346: the final save


def onetrainer() -> None:
    """Nerogar/OneTrainer modules/trainer/GenericTrainer.py: nested 'epoch' and 'step' tqdm bars."""
    epochs, per_epoch = 8, 40
    total = epochs * per_epoch
    truthlog.meta(trainer="OneTrainer GenericTrainer (paced)", bar_label="step", epochs=epochs, epochs_printed=True,
                  total_steps=total)
    step = 0
    for epoch in tqdm(range(0, epochs, 1), desc="epoch"):  # GenericTrainer.py:642
        time.sleep(0.3)  # start_next_epoch (caching), GenericTrainer.py:648-655
        # GenericTrainer.py:687: tqdm(data_loader, desc="step", total=current_epoch_length, initial=epoch_step)
        step_tqdm = tqdm(range(per_epoch), desc="step", total=per_epoch, initial=0)
        for _ in step_tqdm:
            if epoch > 0 and epoch % 2 == 0 and _ == 0:  # backup_after 2 epochs, GenericTrainer.py:700-728
                truthlog.phase("saving")
                tqdm.write("Creating Backup workspace/backup/2026-12-06_19-00-00-backup-" + f"{step}-{epoch}-0")
                time.sleep(1.2)
                truthlog.phase("training")
            pace()
            step += 1
            truthlog.step(step, total)
            if step == total:
                truthlog.end()
            step_tqdm.set_postfix({"loss": 0.1 + rng.random() / 10, "smooth loss": 0.12})  # GenericTrainer.py:808
    truthlog.phase("saving")
    print("Saving models/model.safetensors")  # GenericTrainer.py:871
    time.sleep(2.5)
    truthlog.phase("training")


def simpletuner() -> None:
    """bghira/SimpleTuner simpletuner/helpers/training/trainer.py: one global bar, the epoch in its description."""
    log = logging.getLogger("SimpleTuner")
    logging.basicConfig(level="INFO", format="%(asctime)s [%(levelname)s] %(message)s")
    epochs, per_epoch = 10, 40
    total = epochs * per_epoch
    truthlog.meta(trainer="SimpleTuner (paced)", bar_label="Epoch N/10, Steps", epochs=epochs, epochs_printed=True,
                  total_steps=total)
    log.info("\n***** Running training *****\n-  Num batches = 40\n-  Num Epochs = 10\n  - Current Epoch = 1"
             f"\n-  Total optimization steps = {total}\n-  Total optimization steps remaining = {total}")  # :5860-5880
    bar = tqdm(range(0, total), initial=0, desc=f"Epoch 1/{epochs} Steps", dynamic_ncols=True)  # trainer.py:6865
    step = 0
    for epoch in range(1, epochs + 1):
        for _ in range(per_epoch):
            bar.set_description(f"Epoch {epoch}/{epochs}, Steps")  # trainer.py:6970
            pace()
            bar.update(1)  # trainer.py:7340
            step += 1
            truthlog.step(step, total)
            if step == total:
                truthlog.end()
            bar.set_postfix(lr=1e-4, step_loss=0.1 + rng.random() / 10)  # trainer.py:7543
            if step % 120 == 0 and step < total:  # checkpointing_steps=120
                truthlog.phase("saving")
                log.info(f"Saving state to output/checkpoint-{step}")
                time.sleep(1.2)
                truthlog.phase("training")
    bar.close()
    log.info(f"Training has completed.\n -> global_step = {total}, max_train_steps = {total}")  # trainer.py:7560
    pause("saving", 2.0)


class ToolkitBar(tqdm):  # type: ignore[type-arg]
    """The behaviour of ai-toolkit's toolkit/progress_bar.py ToolkitProgressBar (smoothing 0.7; update() does
    nothing while paused; unpause() moves start_t on by the paused time), written here anew."""

    def __init__(self, *a: Any, **k: Any) -> None:
        k.setdefault("smoothing", 0.7)
        super().__init__(*a, **k)
        self.paused, self.paused_at = False, self._time()

    def pause(self) -> None:
        if not self.paused:
            self.paused, self.paused_at = True, self._time()

    def unpause(self) -> None:
        if self.paused:
            now = self._time()
            self.paused = False
            self.start_t += now - self.paused_at
            self.last_print_t = now

    def update(self, n: float | None = 1) -> bool | None:
        return None if self.paused else super().update(n)


def ai_toolkit() -> None:
    """ostris/ai-toolkit jobs/process/BaseSDTrainProcess.py: job-name bar, baseline samples, saves."""
    total = args.steps or 300
    initial = args.resume_from
    truthlog.meta(trainer="ai-toolkit (paced)", bar_label="my_first_flux_lora_v1", epochs=None, epochs_printed=False,
                  total_steps=total)
    if initial:
        truthlog.restart(initial)
        print(f"Loading from step {initial}")
    print("Generating baseline samples before training")  # BaseSDTrainProcess.py:2480
    for _ in range(2):  # the diffusers pipeline's own unlabelled bar per sample
        for _ in tqdm(range(20)):
            time.sleep(0.05)
    # BaseSDTrainProcess.py:2484-2491: ToolkitProgressBar(total=steps, desc=job.name, leave=True,
    # initial=step_num, iterable=range(0, steps)), then pause()
    bar = ToolkitBar(total=total, desc="my_first_flux_lora_v1", leave=True, initial=initial, iterable=range(0, total))
    bar.pause()
    for step in range(initial, total):
        bar.unpause()  # BaseSDTrainProcess.py:2549
        pace()
        bar.set_postfix_str(f"lr: {1e-4:.1e} loss: {0.3 + rng.random() / 10:.3e}")  # BaseSDTrainProcess.py:2698
        done = step + 1
        if done != initial + 1 and done % 100 == 0 and done < total:  # save_every 100: BaseSDTrainProcess.py:2711
            bar.pause()
            truthlog.phase("saving")
            print(f"\nSaving at step {done}")
            time.sleep(1.2)
            truthlog.phase("training")
            bar.unpause()
        bar.update(step + 1 - bar.n)  # BaseSDTrainProcess.py:2798
        truthlog.step(done, total)
        if done == total:
            truthlog.end()
    bar.close()  # BaseSDTrainProcess.py:2815
    pause("saving", 2.5)  # self.save() after the loop


def torchtune() -> None:
    """pytorch/torchtune recipes/lora_finetune_single_device.py: a new unlabelled bar per epoch, description
    'epoch|global_step|Loss: x'."""
    epochs, per_epoch = 3, 100
    total = epochs * per_epoch
    # No line marks the end of the run (the last epoch's bar ends like every other): end_unmarked.
    truthlog.meta(trainer="torchtune lora_finetune_single_device (paced)", bar_label="N|step|Loss", epochs=epochs,
                  epochs_printed=False, total_steps=total, end_unmarked=True)
    global_step = 0
    for curr_epoch in range(epochs):  # recipe line 616
        pbar = tqdm(total=per_epoch)  # recipe line 617
        for _ in range(per_epoch):
            pace()
            global_step += 1
            pbar.update(1)  # recipe line 659
            pbar.set_description(f"{curr_epoch + 1}|{global_step}|Loss: {0.8 + rng.random() / 10}")  # line 660
            truthlog.step(global_step, total)
            if global_step == total:
                truthlog.end()
    print("INFO:torchtune.utils._logging:Starting checkpoint save...")  # recipe line 722
    pause("saving", 2.0)
    print("INFO:torchtune.utils._logging:Checkpoint saved in 2.00 seconds.")


def hf_disable_tqdm() -> None:
    """transformers Trainer with disable_tqdm=True: the banner (trainer.py _inner_training_loop) and
    PrinterCallback's print(logs) every logging_steps; no bar."""
    epochs, per_epoch, logging_steps = 3, 100, 10
    total = epochs * per_epoch
    truthlog.meta(trainer="transformers Trainer disable_tqdm=True (paced)", bar_label="", epochs=epochs,
                  epochs_printed=True, total_steps=total, print_every=logging_steps)
    log = logging.getLogger("transformers.trainer")
    logging.basicConfig(level="INFO", format="%(message)s")
    log.info("***** Running training *****")
    log.info(f"  Num examples = {per_epoch * 8:,}")
    log.info(f"  Num Epochs = {epochs:,}")
    log.info("  Instantaneous batch size per device = 8")
    log.info(f"  Total optimization steps = {total:,}")
    log.info("  Number of trainable parameters = 1,234,567")
    for step in range(1, total + 1):
        pace()
        truthlog.step(step, total)
        if step == total:
            truthlog.end()
        if step % logging_steps == 0:
            epoch = step / per_epoch
            print({"loss": round(1.2 + rng.random(), 4), "grad_norm": 0.52, "learning_rate": 4.5e-05,
                   "epoch": round(epoch, 2)})
        if step % 120 == 0 and step < total:  # save_steps=120
            pause("saving", 1.2)
    print({"train_runtime": 50.0, "train_samples_per_second": 48.0, "train_steps_per_second": 6.0,
           "train_loss": 1.5, "epoch": float(epochs)})
    pause("saving", 1.0)


TRAINERS = {
    "kohya": kohya, "musubi": musubi, "ltx2": ltx2, "ltx2_disable_progress_bars": lambda: ltx2(True),
    "ltxv": ltxv, "onetrainer": onetrainer, "simpletuner": simpletuner, "ai_toolkit": ai_toolkit,
    "torchtune": torchtune, "hf_disable_tqdm": hf_disable_tqdm,
}

if __name__ == "__main__":
    truthlog.meta(versions=truthlog.versions("tqdm", "rich"))
    TRAINERS[args.trainer]()
    time.sleep(0.2)
    sys.stdout.flush()
