"""app/progress/logparse.py on logs written by the real tqdm, the forms trainers print, and hostile input."""

from __future__ import annotations

import io
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tqdm import tqdm

from maintenance_shim.progress.logparse import MAX_PARTIAL, LogParser, LogProgress, parse_line, strip_ansi


def tqdm_log(path: Path | None = None, total: int = 20, **options: object) -> str:
    """What one real tqdm 'Steps' bar writes for `total` steps with postfix fields."""
    with io.StringIO() if path is None else path.open("w", encoding="utf-8") as file:
        bar = tqdm(total=total, desc="Steps", file=file, mininterval=0, miniters=1, **options)
        for step in range(total):
            bar.update(1)
            bar.set_postfix(loss=round(1 / (step + 1), 3), lr=1e-4)
        bar.close()
        if path is None:
            assert isinstance(file, io.StringIO)
            return file.getvalue()
    return path.read_text(encoding="utf-8")


def steps(updates: list[LogProgress]) -> list[tuple[int, int | None]]:
    return [(update.step, update.total) for update in updates]


@pytest.fixture
def diffusers_log(tmp_path: Path) -> Iterator[str]:
    """A diffusers-style log: pipeline loading, a Steps bar, validation and saving bars in between."""
    path = tmp_path / "train.log"
    with path.open("w", encoding="utf-8") as file:
        for _ in tqdm(range(7), desc="Loading pipeline components...", file=file, mininterval=0):
            pass
        train = tqdm(total=300, desc="Steps", file=file, mininterval=0, miniters=1)
        for step in range(1, 121):
            train.update(1)
            train.set_postfix(step_loss=0.1, lr=1e-4)
            if step == 50:
                # The validation pipeline's own unlabelled bar, and a checkpoint save.
                for _ in tqdm(range(25), file=file, mininterval=0):
                    pass
                for _ in tqdm(range(4), desc="Saving checkpoint", file=file, mininterval=0):
                    pass
                for _ in tqdm(range(1000), desc="Map", file=file, mininterval=0):
                    pass
    yield path.read_text(encoding="utf-8")


BAR_LINES = [
    (
        "Steps:  40%|████      | 1200/3000 [11:12<16:48,  1.78it/s, loss=0.1]",
        LogProgress(1200, 3000, 1.78, "Steps"),
    ),
    ("100%|██████████| 50/50 [00:02<00:00, 19.87it/s]", LogProgress(50, 50, 19.87, "")),
    ("  3%|▎         | 3/100 [00:01<00:40,  2.5s/it]", LogProgress(3, 100, 0.4, "")),
    ("Steps:  40%|####      | 1200/3000 [11:12<16:48,  1.78it/s]", LogProgress(1200, 3000, 1.78, "Steps")),
    ("1200it [00:10, 110.2it/s]", LogProgress(1200, None, 110.2, "")),
    ("Steps: 0it [00:00, ?it/s]", LogProgress(0, None, None, "Steps")),
    (
        "steps:  40%|████      | 1200/3000 [11:12<16:48,  1.78it/s, avr_loss=0.0912]",
        LogProgress(1200, 3000, 1.78, "steps"),
    ),
    (" 12%|█▏        | 1.20k/10.0k [00:10<01:10, 120it/s]", LogProgress(1200, 10000, 120.0, "")),
    ("  4%|▍         | 120/3000 [01:02<24:56,  1.92it/s]", LogProgress(120, 3000, 1.92, "")),
    (
        "\x1b[32mSteps\x1b[0m:  40%|\x1b[34m████      \x1b[0m| 1200/3000 [11:12<16:48,  1.78it/s]\x1b[A",
        LogProgress(1200, 3000, 1.78, "Steps"),
    ),
    ("step 1200/3000", LogProgress(1200, 3000, None, "step")),
    ("Step 1200 / 3000 loss=0.1", LogProgress(1200, 3000, None, "step")),
    ("global_step=1200/3000", LogProgress(1200, 3000, None, "global_step")),
    ("2026-11-22 15:08:30 INFO train: step: 1200/3000 lr=1e-4", LogProgress(1200, 3000, None, "step")),
    ("[Step 1200 of 3000]", LogProgress(1200, 3000, None, "step")),
]


@pytest.mark.parametrize(("line", "expected"), BAR_LINES)
def test_parse_line_recognises_trainer_forms(line: str, expected: LogProgress) -> None:
    parsed = parse_line(line)
    assert parsed is not None
    assert (parsed.step, parsed.total, parsed.label) == (expected.step, expected.total, expected.label)
    assert parsed.rate == (None if expected.rate is None else pytest.approx(expected.rate))


NOT_PROGRESS = [
    "epoch 1/10",
    "[1200/3000]",
    "2026-11-22 12/03/2026 loss 0.3 3/4 done",
    "total optimization steps / 学習ステップ数: 3000",
    "{'loss': 0.51, 'learning_rate': 4.5e-05, 'epoch': 0.4}",
    "Saving model checkpoint to out/checkpoint-500",
    "50% of the data is ready",
    "",
    "\x00\x01\x02\ufffd\ufffd",
]


@pytest.mark.parametrize("line", NOT_PROGRESS)
def test_parse_line_is_conservative(line: str) -> None:
    assert parse_line(line) is None


def test_strip_ansi_removes_colour_cursor_and_title_sequences() -> None:
    assert strip_ansi("\x1b[1;32mok\x1b[0m\x1b[A\x1b]0;title\x07!") == "ok!"


@pytest.mark.parametrize("options", [{}, {"ascii": True}, {"ncols": 120}, {"unit": "step"}])
def test_real_tqdm_bar_gives_every_step(tmp_path: Path, options: dict[str, object]) -> None:
    log = tqdm_log(tmp_path / "train.log", 20, **options)
    updates = LogParser().feed(log)
    assert steps(updates) == [(n, 20) for n in range(0, 21)]
    assert {update.label for update in updates} == {"Steps"}


def test_real_tqdm_unknown_total() -> None:
    file = io.StringIO()
    for _ in tqdm(iter(range(30)), desc="Steps", file=file, mininterval=0, miniters=1):
        pass
    assert steps(LogParser().feed(file.getvalue())) == [(n, None) for n in range(0, 31)]


def test_training_bar_wins_over_loading_validation_saving_and_map_bars(diffusers_log: str) -> None:
    updates = LogParser().feed(diffusers_log)
    assert steps(updates) == [(n, 300) for n in range(0, 121)]
    assert {update.label for update in updates} == {"Steps"}


def test_hugging_face_trainer_bar_wins_over_the_smaller_eval_bar() -> None:
    file = io.StringIO()
    for _ in tqdm(range(3), file=file, mininterval=0):  # an unlabelled bar before training
        pass
    train = tqdm(total=3000, file=file, mininterval=0, miniters=1)
    train.update(400)
    for _ in tqdm(range(50), file=file, mininterval=0):  # evaluation
        pass
    train.update(100)
    updates = LogParser().feed(file.getvalue())
    assert steps(updates)[-1] == (500, 3000)
    assert all(total == 3000 for _, total in steps(updates)[4:])
    assert (50, 50) not in steps(updates)


def test_kohya_steps_bar_with_epoch_lines() -> None:
    log = (
        "running training / 学習開始\n"
        "  num epochs / epoch数: 10\n"
        "  total optimization steps / 学習ステップ数: 3000\n"
        "\rcaching latents: 100%|██████████| 40/40 [00:04<00:00,  9.1it/s]\n"
        "\rsteps:   0%|          | 0/3000 [00:00<?, ?it/s]\n"
        "epoch 1/10\n"
        "\rsteps:  10%|█         | 300/3000 [02:48<25:12,  1.78it/s, avr_loss=0.1]"
        "\rsteps:  10%|█         | 301/3000 [02:49<25:11,  1.78it/s, avr_loss=0.1]\n"
        "epoch 2/10\n"
    )
    assert steps(LogParser().feed(log)) == [(0, 3000), (300, 3000), (301, 3000)]


def test_plain_step_lines_and_dates_in_the_same_log() -> None:
    log = "".join(f"2026-12-03 12/03/2026 10:{n:02d}:00 step {n * 10}/3000 loss=0.{n} [{n}/59]\n" for n in range(1, 6))
    assert steps(LogParser().feed(log)) == [(n * 10, 3000) for n in range(1, 6)]


def test_locked_training_label_ignores_larger_unlabelled_bars() -> None:
    log = (
        "\rSteps:  1%|          | 30/3000 [00:10<16:40, 3.0it/s]\n"
        "\r 10%|█         | 1000/10000 [00:01<00:09, 900it/s]\n"
    )
    assert steps(LogParser().feed(log)) == [(30, 3000)]


def test_training_label_with_a_changing_number_stays_locked() -> None:
    log = "".join(
        f"\rEpoch {epoch}:  50%|█████     | {epoch * 100 + 50}/1000 [00:10<00:10, 5.0it/s]\n" for epoch in range(3)
    )
    assert steps(LogParser().feed(log)) == [(50, 1000), (150, 1000), (250, 1000)]


def test_partial_bar_is_read_once_its_closing_bracket_arrives() -> None:
    parser = LogParser()
    assert parser.feed("\rSteps:  40%|████      | 1200/30") == []
    assert steps(parser.feed("00 [11:12<16:48,  1.78it/s, loss=0.1]")) == [(1200, 3000)]
    # The next '\r' completes it: no second report of the same step.
    assert steps(parser.feed("\rSteps:  40%|████      | 1201/3000 [11:13<16:47,  1.78it/s]")) == [(1201, 3000)]
    assert parser.feed("\n") == []


def test_partial_plain_line_waits_for_its_newline() -> None:
    parser = LogParser()
    assert parser.feed("step 1200/30") == []
    assert steps(parser.feed("00\n")) == [(1200, 3000)]


def test_very_long_line_is_dropped_and_counted() -> None:
    parser = LogParser()
    bar = "\rSteps:  40%|████      | 1200/3000 [11:12<16:48,  1.78it/s]\n"
    assert parser.feed("x" * 10_000_000) == []
    assert parser.feed("y" * 100_000) == []
    assert steps(parser.feed("\n" + bar)) == [(1200, 3000)]
    assert parser.dropped_lines == 1
    # A long line complete inside one chunk is dropped the same way.
    parser.feed("z" * (MAX_PARTIAL + 1) + "\n")
    assert parser.dropped_lines == 2


def test_very_long_line_in_many_chunks_keeps_memory_bounded() -> None:
    parser = LogParser()
    for _ in range(160):
        parser.feed("a" * 65_536)
        assert len(parser._partial) <= MAX_PARTIAL
    assert steps(parser.feed("\rstep 5/10\n")) == [(5, 10)]
    assert parser.dropped_lines == 1


def test_binary_garbage_never_raises() -> None:
    rnd = random.Random(7)
    garbage = bytes(rnd.randrange(256) for _ in range(200_000)).decode("utf-8", errors="replace")
    parser = LogParser()
    parser.feed(garbage)
    assert steps(parser.feed("\nstep 7/10\n")) == [(7, 10)]


def test_reset_forgets_partial_line_and_lock() -> None:
    parser = LogParser()
    parser.feed("\rSteps:  1%|          | 30/3000 [00:10<16:40, 3.0it/s]\nstep 12")
    parser.reset()
    assert steps(parser.feed("\r 10%|█         | 5/50 [00:01<00:09, 5.0it/s]\n")) == [(5, 50)]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_any_text_never_raises(text: str) -> None:
    parser = LogParser()
    for update in parser.feed(text):
        assert update.step >= 0
    parse_line(text)


REFERENCE_LOG = tqdm_log(total=5, ncols=80) + "\x1b[33mstep 6/8\x1b[0m\r\n" + tqdm_log(total=8, ascii=True)


def test_every_single_split_offset_gives_the_same_updates() -> None:
    whole = steps(LogParser().feed(REFERENCE_LOG))
    assert whole[-1] == (8, 8)
    assert len(REFERENCE_LOG) > 1000
    for offset in range(len(REFERENCE_LOG) + 1):
        parser = LogParser()
        split = parser.feed(REFERENCE_LOG[:offset]) + parser.feed(REFERENCE_LOG[offset:])
        assert steps(split) == whole, offset


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(REFERENCE_LOG)), max_size=40))
def test_any_chunking_gives_the_same_updates(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(REFERENCE_LOG)]
    parser = LogParser()
    updates: list[LogProgress] = []
    for start, end in itertools.pairwise(bounds):
        updates += parser.feed(REFERENCE_LOG[start:end])
    assert steps(updates) == steps(LogParser().feed(REFERENCE_LOG))


def _lightning_tqdm_log(epochs: int, per_epoch: int, desc_total: bool = False) -> str:
    """What Lightning's TQDMProgressBar writes: one 'Epoch N' bar reset each epoch, a validation bar between."""
    file = io.StringIO()
    bar = tqdm(total=per_epoch, file=file, mininterval=0, miniters=1)
    for epoch in range(epochs):
        bar.reset(total=per_epoch)
        bar.set_description(f"Epoch {epoch}/{epochs}" if desc_total else f"Epoch {epoch}")
        for _ in range(per_epoch):
            bar.update(1)
            bar.set_postfix(v_num=0)
        for _ in tqdm(range(5), desc="Validation DataLoader 0", file=file, mininterval=0, leave=False):
            pass
    bar.close()
    return file.getvalue()


def test_lightning_epochs_without_their_number_give_the_current_epoch_only() -> None:
    # Lightning resets the bar, then sets its description: the very first line is unlabelled.
    updates = [u for u in LogParser().feed(_lightning_tqdm_log(epochs=3, per_epoch=10)) if u.label]
    assert {update.scope for update in updates} == {"epoch"}
    # Cumulative over the epochs so far (the rate carries over), the total being the current epoch's end.
    assert [(u.step, u.total) for u in updates][-1] == (30, 30)
    assert [u.step for u in updates] == sorted(u.step for u in updates)
    assert (updates[-1].epoch, updates[-1].epochs, updates[-1].epoch_step, updates[-1].epoch_total) == (2, None, 10, 10)
    assert not any("Validation" in u.label for u in updates)


def test_epochs_with_their_number_are_stitched_into_the_whole_run() -> None:
    updates = [u for u in LogParser().feed(_lightning_tqdm_log(epochs=3, per_epoch=10, desc_total=True)) if u.label]
    # A tqdm bar 'Epoch 0/3' .. 'Epoch 2/3' (zero-based: epoch 0 was seen; 3 epochs printed).
    assert {u.scope for u in updates} == {"run"}
    assert {u.total for u in updates} == {30}
    assert updates[-1].step == 30
    assert [u.step for u in updates] == sorted(u.step for u in updates)


RICH_FRAMES = [
    "Epoch 0/2 ━━━━━━━━━━━━━━━━━━╸━━━━━━━━━━━━━━━━━━━ 25/50 0:00:01 • 0:00:02 18.32it/s v_num: 0.000",
    "Epoch 1/2 ━╸━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 2/50 0:00:00 • 0:00:03 15.00it/s v_num: 0.000",
    "Epoch 1/2 ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 50/50 0:00:02 • 0:00:00 22.79it/s v_num: 0.000",
    "Validation ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 5/5 0:00:00 • 0:00:00 40.00it/s",
    "Epoch 2/2 ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 50/50 0:00:06 • 0:00:00 22.79it/s v_num: 0.000",
]


def test_rich_bars_are_read_and_stitched_with_lightnings_zero_based_epochs() -> None:
    updates = LogParser().feed("\n".join(RICH_FRAMES) + "\n")
    assert [(u.step, u.total, u.scope) for u in updates] == [
        (25, 150, "run"), (52, 150, "run"), (100, 150, "run"), (150, 150, "run")
    ]
    assert updates[0].rate == pytest.approx(18.32)
    assert all(u.form == "rich" for u in updates)


def test_plain_epoch_and_step_lines_are_stitched() -> None:
    text = "".join(f"Epoch [{e}/4], Step [{s}/50], Loss: 0.1\n" for e in range(1, 5) for s in range(10, 51, 10))
    updates = LogParser().feed(text)
    assert [u.step for u in updates] == list(range(10, 201, 10))
    assert {u.total for u in updates} == {200}


def test_a_global_counter_with_epoch_in_its_label_is_not_stitched() -> None:
    text = "".join(f"Epoch {1 + s // 50}/4 step {s}/200\n" for s in range(10, 201, 10))
    assert [(u.step, u.total) for u in LogParser().feed(text)][-3:] == [(180, 200), (190, 200), (200, 200)]


def test_a_bar_past_its_total_keeps_its_total() -> None:
    file = io.StringIO()
    bar = tqdm(total=20, desc="Steps", file=file, mininterval=0, miniters=1)
    for _ in range(21):  # one update too many: tqdm switches to '21it [...]'
        bar.update(1)
    bar.close()
    updates = LogParser().feed(file.getvalue())
    assert (updates[-1].step, updates[-1].total) == (20, 20)
    assert all(u.total == 20 for u in updates)


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("Validation DataLoader 0", "validation"),
        ("Validation", "validation"),
        ("Sanity Checking DataLoader 0", "sanity check"),
        ("Testing DataLoader 0", "testing"),
        ("Predicting DataLoader 0", "prediction"),
        ("Evaluating", "evaluation"),
        ("Loading pipeline components...", "loading or transfer"),
        ("Saving checkpoint", "saving"),
        ("Map", "dataset preparation"),
        ("caching latents", "dataset preparation"),
        ("Generating images", "sampling or generation"),
        ("Steps", None),
        ("Epoch 3", None),
    ],
)
def test_side_task_bars_are_ignored_for_a_stated_reason(label: str, reason: str | None) -> None:
    from maintenance_shim.progress.logparse import side_task

    assert side_task(label) == reason


def test_lightnings_closing_line_ends_an_epoch_only_run() -> None:
    parser = LogParser()
    updates = parser.feed(_lightning_tqdm_log(epochs=2, per_epoch=10))
    assert updates[-1].scope == "epoch"
    done = parser.feed("`Trainer.fit` stopped: `max_epochs=2` reached.\n")
    assert [(u.step, u.total, u.scope) for u in done] == [(20, 20, "run")]


# ---- the trainers operators run (their forms; whole runs replayed in tests/progress/test_replay.py) -------------


def test_rich_count_before_the_bar_ltx2_and_in_a_live_panel_ltx_video_trainer() -> None:
    ltx2 = ("Training 120/2000 ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ Loss: 0.0712 | LR: 1.00e-04 | 4.21s/step "
            "0:08:25 ETA: 2:11:54")
    panel = ("│ Training Step  120/2000 ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ Loss: 0.0712 LR: 1.00e-04 "
             "Time/Step: 4.21s 0:08:25 ETA: 2:11:54       │")
    sampling = "Sampling 1/2 ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ step 5/30 0:00:10 ETA: 0:00:20"
    assert parse_line(ltx2) == LogProgress(120, 2000, pytest.approx(1 / 4.21), "Training", form="rich")
    assert parse_line(panel) == LogProgress(120, 2000, None, "Training Step", form="rich")
    # LTX-2's Sampling task (its 'step 5/30' is denoising) is a side task.
    assert set(steps(LogParser().feed(f"{ltx2}\n{sampling}\n{panel}\n"))) == {(120, 2000)}
    # Lightning's count after the bar still wins over 'Epoch 2/4' before it.
    assert parse_line(RICH_FRAMES[0]) == LogProgress(25, 50, pytest.approx(18.32), "Epoch 0/2", form="rich")


def test_ltx2_resume_offsets_its_bar_of_remaining_steps() -> None:
    text = ("INFO     🚀 Resuming training from step 400 → 2000\n"
            "Training 0/1600 ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ Starting... 0:00:00 ETA: --:--\n"
            "Training 120/1600 ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ Loss: 0.07 | 4.21s/step 0:08:25 ETA: 1:50:00\n")
    assert steps(LogParser().feed(text)) == [(400, 2000), (520, 2000)]


def test_ltx_disable_progress_bars_lines() -> None:
    line = "INFO     Step 120/2000 - Loss: 0.0712, LR: 1.00e-04, Time/Step: 4.21s, Total Time: 2h 11m"
    assert steps(LogParser().feed(line + "\n")) == [(120, 2000)]


def test_a_bar_that_finishes_before_training_is_a_side_task() -> None:
    """kohya: an unlabelled image-size bar (300,000 it/s) and latent caching bar before the 'steps' bar: never
    the run's end; 'pending' says training has not started."""
    file = io.StringIO()
    for _ in tqdm(range(40), file=file, mininterval=0):
        pass
    for _ in tqdm(range(40), file=file, mininterval=0):  # the same bar again (caching): known as a side task
        pass
    parser = LogParser()
    early = parser.feed(file.getvalue())
    assert early[-1].pending and early[-1].total is None
    assert not any(u.total is not None and u.step >= u.total for u in early)
    train = io.StringIO()
    bar = tqdm(total=200, desc="steps", file=train, mininterval=0)
    bar.update(5)
    assert steps(parser.feed(train.getvalue()))[-1] == (5, 200)


def test_an_unlabelled_bar_moving_on_across_other_output_is_the_training_bar() -> None:
    """ai-toolkit's bar is described by the job's own name; saves print between its updates: it is the
    training bar, and its end is the run's end."""
    file = io.StringIO()
    bar = tqdm(total=30, desc="my_first_flux_lora_v1", file=file, mininterval=0)
    for step in range(1, 31):
        bar.update(1)
        if step == 10:
            file.write("\nSaving at step 10\n")
    bar.close()
    updates = LogParser().feed(file.getvalue())
    assert steps(updates)[-1] == (30, 30) and not any(u.pending for u in updates)


def test_onetrainer_nested_epoch_and_step_bars_are_stitched() -> None:
    file = io.StringIO()
    for _ in tqdm(range(3), desc="epoch", file=file, mininterval=0):
        for _ in tqdm(range(10), desc="step", file=file, mininterval=0):
            pass
    updates = LogParser().feed(file.getvalue())
    assert {u.total for u in updates} == {30}
    assert [u.step for u in updates] == sorted(u.step for u in updates)
    assert updates[-1].step == 30 and updates[-1].epochs == 3


def test_simpletuner_epoch_beside_a_global_counter_is_not_multiplied() -> None:
    file = io.StringIO()
    bar = tqdm(range(0, 100), initial=0, desc="Epoch 1/10 Steps", file=file, mininterval=0)
    for step in range(1, 31):
        bar.set_description(f"Epoch {1 + (step - 1) // 10}/10, Steps")
        bar.update(1)
    updates = LogParser().feed(file.getvalue())
    assert {u.total for u in updates} == {100} and steps(updates)[-1] == (30, 100)


def test_torchtune_per_epoch_bar_is_epoch_scoped() -> None:
    file = io.StringIO()
    global_step = 0
    for epoch in range(2):
        bar = tqdm(total=10, file=file, mininterval=0)
        for _ in range(10):
            global_step += 1
            bar.update(1)
            bar.set_description(f"{epoch + 1}|{global_step}|Loss: 0.81")
        bar.close()
    updates = [u for u in LogParser().feed(file.getvalue()) if u.label]
    assert {u.scope for u in updates} == {"epoch"}
    assert (updates[-1].step, updates[-1].epoch, updates[-1].epoch_step) == (20, 2, 10)


def test_hugging_face_log_dicts_with_the_banner_give_the_step() -> None:
    text = ("  Num Epochs = 3\n  Total optimization steps = 1,200\n"
            "{'loss': '7.51', 'grad_norm': '0.9577', 'learning_rate': '0.0004925', 'epoch': '0.25'}\n"
            "{'loss': 1.2345, 'grad_norm': 0.52, 'learning_rate': 4.5e-05, 'epoch': 1.5}\n")
    assert steps(LogParser().feed(text)) == [(100, 1200), (600, 1200)]
    # Without the banner the dicts say nothing about the run's length.
    assert LogParser().feed(text.split("\n", 2)[2]) == []


@pytest.mark.parametrize(("line", "every"), [
    ("12/06/2026 23:27:00 - INFO - __main__ - Saved state to /out/checkpoint-40", 40),  # diffusers' examples
    ("[transformers] Saving model checkpoint to /tmp/run/checkpoint-150", 150),  # HF Trainer, INFO
    ("         checkpoints/lora_weights_step_00100.safetensors", 100),  # LTX-2, its Rich line wrapped
    ("saving checkpoint: out/lora-step00000040.safetensors", 40),  # kohya, save_every_n_steps
    ("Saved checkpoint /tmp/capture/ckpt-180.pt", 180),
    ("saving checkpoint: /tmp/kohya/last-000003.safetensors", None),  # an epoch's number, not a step
    ("Resuming from checkpoint checkpoint-360", None),  # loaded, not saved
    ("Loading checkpoint-200", None),
])
def test_a_save_named_by_its_step_gives_the_saving_rhythm(line: str, every: int | None) -> None:
    """The first step-numbered save names the trainer's saving interval; the updates after it carry it."""
    parser = LogParser()
    parser.feed("Steps:  10%|█         | 10/100 [00:01<00:09, 10.0it/s]\n" + line + "\n")
    found = parser.feed("Steps:  11%|█         | 11/100 [00:01<00:09, 10.0it/s]\n")
    assert parser.save_every == every
    assert found and found[-1].save_every == every
    parser.feed("Saved state to /out/checkpoint-80\n")
    assert parser.save_every == (80 if every is None else every)  # the first save named by a step counts
