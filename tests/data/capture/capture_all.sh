#!/usr/bin/env bash
# Re-capture the replay corpus in tests/data/replay/, one case after another (never in parallel: the step
# times are the point). Run from the repository root:  tests/data/capture/capture_all.sh [CASE...]
# Each case is one record.py command; README.md lists the same commands. About 20 minutes in all (2 cores, a few other processes).
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
REC="$PY tests/data/capture/record.py"
CAP=tests/data/capture
TMP=${TMPDIR:-/tmp}

selected=("$@")
run() {
  local name=$1
  shift
  if [[ ${#selected[@]} -gt 0 ]] && [[ " ${selected[*]} " != *" $name "* ]]; then return 0; fi
  echo "=== $name ($(date -u +%H:%M:%S))" >&2
  $REC "$name" --command "tests/data/capture/capture_all.sh $name" "$@" || echo "=== $name FAILED" >&2
}

run hf_trainer_eval_save --kind pause \
  --description "transformers Trainer, tiny random GPT-2 (2 layers, n_embd 128), 700 steps; eval every 100 steps (100 batches, a few seconds, its own nested bar), checkpoint every 150 (save_total_limit=2), logging every 50; final eval + save at step 700" \
  -- "$PY" $CAP/hf_trainer_eval_save.py

run accelerate_loop_fresh --kind steady --pre "rm -rf $TMP/capture-accelerate-fresh" \
  --description "diffusers-style accelerate loop, fresh run: 900 steps (7 epochs of 140, the last partial), tqdm 'Steps' bar with set_postfix(step_loss, lr) every step, accelerator.save_state every 120 steps (checkpoints_total_limit=2) with accelerate's INFO lines and 'Saved state to ...'" \
  -- "$PY" $CAP/accelerate_loop.py --output_dir "$TMP/capture-accelerate-fresh"

run accelerate_loop_resumed --kind steady \
  --pre "rm -rf $TMP/capture-accelerate-resume && $PY $CAP/accelerate_loop.py --output_dir $TMP/capture-accelerate-resume --stop_at_step 360 >/dev/null 2>&1" \
  --description "the same loop resumed with --resume_from_checkpoint latest from checkpoint-360 (made by an unrecorded run stopped at step 360): 'Resuming from checkpoint checkpoint-360', the bar starts at 360/900 (initial=360) and, as diffusers does (epoch 2 restarts at its first batch and the epoch loop has no break), ends at 901/900: one extra step in epoch 6; one process, steady rate" \
  -- "$PY" $CAP/accelerate_loop.py --output_dir "$TMP/capture-accelerate-resume" --resume_from_checkpoint latest

run lightning_tqdm --kind steady \
  --description "PyTorch Lightning Trainer(max_epochs=5) with TQDMProgressBar: 5 epochs x 160 batches = 800 steps, bar 'Epoch N' restarting at 0 every epoch with the per-epoch total (160), validation bar (40 batches) between epochs, 2-batch sanity check first" \
  -- "$PY" $CAP/lightning_fit.py --bar tqdm

run lightning_rich_pipe --kind steady \
  --description "Lightning with RichProgressBar writing to a pipe as-is: Rich sees no terminal and prints nothing until the end, then one final frame of the last epoch. 5 epochs x 120 batches = 600 steps; no progress is visible while training" \
  -- "$PY" $CAP/lightning_fit.py --bar rich --train-batches 120 --batch 160 --val-batches 30

run lightning_rich_interactive --kind steady --env TTY_INTERACTIVE=1 --env TTY_COMPATIBLE=1 \
  --description "Lightning with RichProgressBar and TTY_INTERACTIVE=1 plus TTY_COMPATIBLE=1: live frames ('Epoch N/M' with M = max_epochs-1, zero-based) redrawn with \\r, ESC[2K and ESC[1A, colours on. TTY_INTERACTIVE=1 alone does NOT give live frames with Rich 15 (see lightning_rich_tty_interactive_only); TTY_COMPATIBLE=1 (console.is_terminal) is what Live needs. 5 epochs x 120 batches = 600 steps" \
  -- "$PY" $CAP/lightning_fit.py --bar rich --train-batches 120 --batch 160 --val-batches 30

run lightning_rich_tty_interactive_only --kind steady --env TTY_INTERACTIVE=1 \
  --description "Lightning with RichProgressBar and only TTY_INTERACTIVE=1 (the brief expected live frames): Rich 15's Live draws only when console.is_terminal, which TTY_INTERACTIVE does not set, so the output is the same as lightning_rich_pipe: one frame at the end. 3 epochs x 120 batches = 360 steps" \
  -- "$PY" $CAP/lightning_fit.py --bar rich --max-epochs 3 --train-batches 120 --batch 160 --val-batches 30

run plain_print --kind steady \
  --description "plain loop printing 'step i/900 loss=...' with print() and PYTHONUNBUFFERED=1: one line per step as it happens" \
  -- "$PY" $CAP/plain_print.py

run plain_print_buffered --kind steady --buffered \
  --description "the same plain loop WITHOUT PYTHONUNBUFFERED: stdout is block-buffered (8 KiB) on the pipe, so lines arrive in bursts of ~300 steps, many seconds late, and the rest at exit" \
  -- "$PY" $CAP/plain_print.py

run kohya_style --kind steady \
  --description "imitation of kohya-ss sd-scripts train_network.py output: RichHandler log lines, 'running training / 学習開始' block, tqdm(range(max_train_steps), smoothing=0, desc='steps') with set_postfix(avr_loss=...) and progress_bar.unpause() every step, '\\nepoch N/10\\n' lines, '\\nsaving checkpoint: ...' every 3 epochs and at the end, 'model saved.'; 300 steps at ~3 steps/s (slower than tqdm's 0.1 s mininterval, so the rate shown is about right)" \
  -- "$PY" $CAP/kohya_style.py

run kohya_style_fast --kind steady \
  --description "kohya_style at ~17-20 steps/s (--rows 96), 1000 steps, 10 epochs: kohya's per-step progress_bar.unpause() with steps faster than tqdm's 0.1 s mininterval freezes tqdm's elapsed time at 00:00, so the bar shows absurd, growing rates (800-4500 it/s here) and 00:00 remaining; only n/total is trustworthy" \
  -- "$PY" $CAP/kohya_style.py --rows 96 --max_train_steps 1000 --num_train_images 100

run slow_s_per_it --kind steady \
  --description "tqdm 'Training' bar at ~2-2.7 s per step (tqdm shows s/it), 40 steps" \
  -- "$PY" $CAP/slow_s_per_it.py

run pause_15s --kind pause \
  --description "tqdm 'Steps' loop, 600 steps at ~15/s, one 15 s checkpoint save at step 300 (300 MB written and fsync'd, then waiting out 15 s); the save messages are print()s on stdout landing after the unterminated bar line" \
  -- "$PY" $CAP/pause_15s.py

run rate_change --kind rate-change \
  --description "tqdm 'Steps' loop, 900 steps; each step accumulates 9 micro-batches until step 360, then 7: ~25 % faster from 40 % on (measured here ~19.5 -> ~24.5 steps/s; machine load slows the last 20 % back to ~20/s)" \
  -- "$PY" $CAP/rate_change.py

run crash_resume --kind restart --kill-at-step 520 --restart-arg=--resume \
  --description "tqdm 'Steps' loop, 900 steps, checkpoint every 180; SIGKILL at step ~520 (the bar line is left unterminated), restarted at once with --resume: 'Resuming from checkpoint ckpt-360.pt', bar from 360/900 (initial=360) to the end; steps 361-520 are run twice" \
  -- "$PY" $CAP/crash_resume.py

run lightning_tqdm_epochs_short --kind steady \
  --description "Lightning TQDMProgressBar with short epochs: 10 epochs x 60 batches = 600 steps, ~4-5 s per epoch, 15-batch validation between epochs; the bar restarts at 0/60 every few seconds" \
  -- "$PY" $CAP/lightning_fit.py --bar tqdm --max-epochs 10 --train-batches 60 --val-batches 15

# Trainers operators run, as paced stand-ins (tests/data/capture/trainers_paced.py: each trainer's own tqdm/Rich
# calls, cited by file:line, with a sleep as the step). Paced, so these may run side by side.
TP="$CAP/trainers_paced.py"
WIDE=(--env COLUMNS=200 --env TTY_COMPATIBLE=1 --env TTY_INTERACTIVE=1)
run trainer_kohya --kind pause --description "kohya sd-scripts train_network.py: unlabelled image-size bar (~300,000 it/s) and latent-caching bar before training, the 'running training' block, 'steps' bar (200 steps, 5 epochs), saves every 2 epochs and at the end" -- "$PY" $TP kohya
run trainer_musubi --kind pause --description "musubi-tuner: unlabelled timestep-preview bars before training, 'steps' bar with reset() after the slow first step, sampling bars 'Sampling timesteps for prompt N' at step 100 and 200, one save per epoch" -- "$PY" $TP musubi
run trainer_ltx2 --kind pause "${WIDE[@]}" --description "LTX-2 ltx-trainer under with_maintenance.sh's environment (COLUMNS=200, TTY_COMPATIBLE=1, TTY_INTERACTIVE=1): Rich 'Training 120/300 ━━━ Loss: ... | LR: ... | 0.15s/step 0:00:18 ETA: 0:00:27', Sampling task (2 videos x 15 denoising steps) and a checkpoint every 100 steps" -- "$PY" $TP ltx2
run trainer_ltx2_resume --kind pause "${WIDE[@]}" --description "LTX-2 resumed: '🚀 Resuming training from step 100 → 300', the Rich bar counts the remaining 200 steps (0/200 ... 200/200)" -- "$PY" $TP ltx2 --resume-from 100
run trainer_ltx2_disable_progress_bars --kind pause --description "LTX-2 with --disable-progress-bars: RichHandler lines 'Step 120/400 - Loss: ..., Time/Step: ..., Total Time: 0h 1m' every 20 steps" -- "$PY" $TP ltx2_disable_progress_bars --steps 400 --step-seconds 0.1
run trainer_ltx2_pipe --kind pause --description "LTX-2 with its Rich bar writing into a plain pipe (no with_maintenance.sh): Rich draws nothing until the end" -- "$PY" $TP ltx2 --steps 200
run trainer_ltxv --kind pause "${WIDE[@]}" --description "LTX-Video-Trainer: Live(Panel(Group(train_progress, sample_progress))), 'Training Step' + MofNCompleteColumn, refresh 2/s; validation videos at 100 and 200, checkpoint at 150" -- "$PY" $TP ltxv
run trainer_onetrainer --kind pause --description "OneTrainer: nested tqdm bars 'epoch' (8) and 'step' (40 per epoch, a new bar each epoch), backups every 2 epochs" -- "$PY" $TP onetrainer
run trainer_simpletuner --kind pause --description "SimpleTuner: one bar over the whole run (400 steps), 'Epoch N/10, Steps' description, the 'Total optimization steps = 400' banner, a save every 120 steps" -- "$PY" $TP simpletuner
run trainer_ai_toolkit --kind pause --description "ai-toolkit: baseline samples (unlabelled 20-step bars) before training, ToolkitProgressBar with the job name as description, pause()/unpause() around 'Saving at step N' every 100 steps" -- "$PY" $TP ai_toolkit
run trainer_torchtune --kind steady --description "torchtune lora_finetune_single_device: a new bar per epoch (100 steps, 3 epochs), description 'epoch|global_step|Loss: x', no number of epochs printed" -- "$PY" $TP torchtune
run trainer_hf_disable_tqdm --kind pause --description "transformers Trainer with disable_tqdm=True: the banner (Num Epochs = 3, Total optimization steps = 300) and a log dict every 10 steps with the epoch fraction; saves every 120 steps" -- "$PY" $TP hf_disable_tqdm
run trainer_hf_disable_tqdm_real --kind pause --description "the real transformers Trainer (tiny random GPT-2, CPU) with disable_tqdm=True and INFO verbosity as HF's example scripts set it: the banner (Num Epochs = 3, Total optimization steps = 600), PrinterCallback dicts every 10 steps ({'loss': '7.6', ..., 'epoch': '0.05'}), evaluation (160 samples) every 100 steps, a save every 150" -- "$PY" $CAP/hf_trainer_eval_save.py --disable-tqdm --max-steps 600 --eval-size 160

# The real, unmodified trainers (tests/data/field/): FIELD_PY is the field venv's Python (tests/data/field/README.md).
FIELD=tests/data/field
FIELD_PY=${FIELD_PY:-/opt/field-venv/bin/python}
field_env=(--env "PYTHONPATH=$FIELD/truth:$CAP" --env "HF_HOME=$TMP/field-hf" --env HF_HUB_OFFLINE=1
  --env HF_DATASETS_OFFLINE=1 --env TRANSFORMERS_OFFLINE=1 --env OMP_NUM_THREADS=1)
run field_diffusers_lora --kind pause --trainer "diffusers 0.40.0 examples/text_to_image/train_text_to_image_lora.py (unmodified)" \
  --epochs 38 --epochs-printed true --total-steps 300 --bar-label Steps \
  --pre "rm -rf $TMP/field-sd $TMP/field-images $TMP/field-out $TMP/field-hf && $FIELD_PY $FIELD/tiny_sd.py $TMP/field-sd $TMP/field-images" \
  --description "diffusers' LoRA example, unmodified, on a tiny random Stable Diffusion (tests/data/field/tiny_sd.py) and 8 random 16x16 images: 300 steps, a checkpoint (accelerator.save_state) every 100 steps, a validation (the pipeline rebuilt, 30 denoising steps) after epochs 0, 15 and 30 (steps 8, 128, 248), the LoRA saved and validated after the last step" \
  "${field_env[@]}" --env CAPTURE_TOTAL=300 \
  -- "$FIELD_PY" $FIELD/diffusers/train_text_to_image_lora.py "--pretrained_model_name_or_path=$TMP/field-sd" \
  "--train_data_dir=$TMP/field-images" --resolution=16 --train_batch_size=1 --max_train_steps=300 \
  --checkpointing_steps=100 "--validation_prompt=a photo" --num_validation_images=1 --validation_epochs=15 \
  --learning_rate=1e-04 --lr_scheduler=constant --lr_warmup_steps=0 --rank=4 --seed=0 "--output_dir=$TMP/field-out" \
  --dataloader_num_workers=0
