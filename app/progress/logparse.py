"""Training progress from trainer log text (tqdm bars and ``step N/M`` lines): pure, never raises.

Forms: tqdm bars (known and unknown total), Rich progress bars with the count after the bar (PyTorch
Lightning's ``RichProgressBar``: ``Epoch 2/4 ━━━━━━━╸━━━━ 37/50 0:00:02 • 0:00:01 18.32it/s``) or before it
(``MofNCompleteColumn``, LTX-2's ``Training 120/2000 ━━━━ Loss: ...``, also inside a ``Live`` panel) and
``step N/M`` lines.

Which bar is the training bar (``LogParser``):

1. Bars whose label names a side task are never progress, each for a stated reason (``side_task``):
   validation, evaluation, testing, prediction, sanity checks, loading, saving, downloads, dataset
   preparation, sampling and generation.
2. Bars whose label names training (step, train, epoch, iter, optimiz) and plain ``step N/M`` lines win:
   the first one seen is locked; another training label takes over only with a total at least as large.
3. Unlabelled bars (the Hugging Face Trainer prints none) count only while no training label is locked,
   and only when their total is at least the largest total seen so far, so the 50-item evaluation bar
   does not replace the 3,000-step training bar.
   An unlabelled bar that finishes before any training bar is confirmed was a side task after all
   (kohya's image listing and latent caching, ai-toolkit's baseline samples): a ``pending`` update says
   training has not started, and that bar is ignored from then on. An unlabelled bar is confirmed by the
   printed run's total (``Total optimization steps = N``) or by moving on across other output.
4. A bar that runs past its total (tqdm then prints ``901it [00:41, 6.08it/s]``) keeps the total of
   the bar it continues: training has ended. So does Lightning's closing line ``Trainer.fit stopped:
   max_epochs=5 reached`` for the last step seen, even when only the current epoch was known.

Epochs. A training bar or step line that names its epoch (``Epoch 3/9``, ``Epoch [2/10], Step [100/600]``,
Lightning's ``Epoch 3``) counts steps per epoch. With the number of epochs printed, the parser stitches
the epochs into global progress (``scope="run"``); without it, only the current epoch is known
(``scope="epoch"``: step and total then count from the run's first epoch to the end of the current one,
so that the rate carries over). A counter that does not restart when the epoch changes was global all
along and is taken as it is; so is one whose total is the printed run's total, or SimpleTuner's
``Epoch 3/10, Steps``. OneTrainer's ``epoch`` bar (no number in its label) counts epochs and stitches the
per-epoch ``step`` bar under it. torchtune's ``epoch|global_step|Loss`` description is an epoch label.

Lines that are not bars: the Hugging Face Trainer's banner (``Num Epochs``, ``Total optimization steps``)
and its log dicts (``{'loss': ..., 'epoch': 0.12}``: step = total x epoch / epochs), LTX-2's ``Resuming
training from step 400 → 2000`` (its Rich bar then counts the remaining steps), and lines announcing
training (``training_announced``: with no progress after them the log hides its bar).

Epoch numbers are 1-based unless an epoch 0 was seen, or the bar is Rich's
(Lightning numbers epochs from 0 and prints the last index: ``Epoch 2/2`` is the last of three).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

# CSI (colours, cursor moves tqdm uses for nested bars), OSC (titles, links), then lone two-byte escapes.
# Repeats are bounded so that a hostile line costs linear time.
_ANSI = re.compile(r"\x1b\[[0-?]{0,64}[ -/]{0,8}[@-~]|\x1b\][^\x07\x1b]{0,512}(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_NUM = r"\d+(?:\.\d+)?[kMGT]?"
# tqdm's default format, the label being the text before the percentage:
# '{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate}{postfix}]'
_BAR = re.compile(
    rf"(?<![\d.])\d{{1,3}}%\|[^|]{{0,1000}}\|\s{{0,8}}(?P<n>{_NUM})/(?P<total>{_NUM})\s{{0,8}}"
    r"\[(?P<inner>[^\]]{0,2000})\]"
)
# Unknown total: '{desc}: {n_fmt}{unit} [{elapsed}, {rate}{postfix}]'.
_OPEN_BAR = re.compile(rf"(?<![\w.])(?P<n>{_NUM})[A-Za-z]{{0,20}} \[(?P<inner>\d+:\d\d(?::\d\d)?,[^\]]{{0,2000}})\]")
# Rich's bar: '{description} {bar} {completed}/{total} {elapsed} • {remaining} {rate}{metrics}'.
# The lookbehind tries a match only where a run of bar characters starts: a line of them costs linear time.
_RICH_BAR = re.compile(
    r"(?<![━╸╺╾╼])[━╸╺╾╼]{2,400}\s{1,8}(?P<n>\d+)/(?P<total>\d+)\s{1,8}(?P<inner>\d+:\d\d:\d\d\b.{0,2000})"
)
# Rich with the count before the bar (MofNCompleteColumn, or a text column such as LTX-2's '{completed}/{total}'):
# 'Training Step  120/2000 ━━━━ Loss: ...', 'Training 120/2000 ━━━━ Loss: ... 0:08:25 ETA: 2:11:54'.
_RICH_BEFORE = re.compile(r"(?<![\d/.])(?P<n>\d{1,12})/(?P<total>\d{1,12})\s{1,8}[━╸╺╾╼]{2,400}(?P<inner>.{0,2000})")
# Box drawing around a Rich Live panel ('│ Training Step ... │'): not part of the label.
_PANEL = "│┃║|"
# torchtune's description 'epoch|global_step|Loss: x' (recipes/*.py: pbar.set_description(f"{curr_epoch + 1}|
# {self.global_step}|Loss: {loss_to_log}")): the epoch and the global step.
_TORCHTUNE = re.compile(r"^(?P<epoch>\d{1,6})\|(?P<step>\d{1,12})\|Loss\b")
# A whole run's length as trainers print it before the bar: the Hugging Face Trainer, diffusers, SimpleTuner
# ('Total optimization steps = 1,000'; not '... steps remaining = N'), kohya ('total optimization steps /
# 学習ステップ数: 300'), musubi-tuner ('total optimization steps: 300').
_BANNER_TOTAL = re.compile(
    r"total optimi[sz]ation steps(?:\s{0,4}/\s{0,4}学習ステップ数)?\s{0,8}[:=]\s{0,8}"
    r"(?P<total>\d{1,3}(?:,\d{3}){0,4}|\d{1,15})\b",
    re.I,
)
_BANNER_EPOCHS = re.compile(r"\bNum Epochs\s{0,8}=\s{0,8}(?P<epochs>\d{1,3}(?:,\d{3}){0,2}|\d{1,9})\b")
# The Hugging Face Trainer's log dicts (PrinterCallback / disable_tqdm=True): "{'loss': 1.23, ..., 'epoch': 0.12}"
# (values quoted as strings since transformers 5).
_HF_DICT_EPOCH = re.compile(r"^\{'[a-z_]{1,40}': .{0,1500}'epoch': '?(?P<epoch>\d{1,6}(?:\.\d{1,8})?)'?\}$")
# LTX-2 (packages/ltx-trainer trainer.py): '🚀 Resuming training from step 400 → 2000'; its bar then counts the
# remaining 1,600 steps.
_RESUMED = re.compile(r"Resuming training from step\s{1,4}(?P<start>\d{1,12})\s{1,4}(?:→|->)\s{1,4}(?P<end>\d{1,12})")
# A save named by its step: diffusers/accelerate 'Saved state to out/checkpoint-100', the Hugging Face Trainer
# 'Saving model checkpoint to out/checkpoint-150', LTX-2 'lora_weights_step_00100.safetensors', kohya's
# '-step00000040.safetensors', 'ckpt-180.pt'. Epoch-numbered names ('last-000003.safetensors') are not steps.
# A name alone counts (Rich wraps LTX-2's line before the file name); one being resumed from or loaded does not.
_NOT_A_SAVE = re.compile(r"resum|load", re.I)
_SAVED_STEP = re.compile(r"(?:checkpoint|ckpt)[-_](?P<n>\d{1,12})(?!\d)|[_-]step[_-]?(?P<s>\d{1,12})(?!\d)", re.I)
# SimpleTuner's one bar over the whole run: 'Epoch 3/10, Steps' - the counter is global.
_GLOBAL_EPOCH_LABEL = re.compile(r"^epoch\s{0,4}\d{1,6}\s{0,4}/\s{0,4}\d{1,6},?\s{1,4}steps$", re.I)
# An epoch bar with no number in its label (OneTrainer's tqdm(epochs, desc="epoch")): it counts epochs.
_EPOCH_BAR_LABEL = re.compile(r"^epochs?$", re.I)
# Lines that say training has started; a log with one of them and no progress afterwards hides its bar.
_TRAINING_STARTED = re.compile(r"Starting training|Resuming training from step|\*{5} Running training \*{5}"
                               r"|running training / 学習開始")
_EPOCH = re.compile(r"\bepoch\b\s*[:=]?\s*\[?\s*(?P<epoch>\d{1,6})(?:\s*(?:/|\bof\b)\s*(?P<epochs>\d{1,6}))?", re.I)
_RATE = re.compile(rf"(?P<value>{_NUM})[A-Za-z]*/s\b|(?P<inverse>{_NUM})s/[A-Za-z]+")
# A 'step' keyword is required so that dates (12/03/2026) and other fractions are never progress.
_PLAIN = re.compile(
    r"\b(?P<label>(?:global[_ ]?)?steps?)\b\s*[:=]?\s*\[?\s*(?P<n>\d+)\s*(?:/|\bof\b)\s*(?P<total>\d+)\b",
    re.I,
)
# Lightning's last word after fit: the run is over, whatever the bar said (it may know only an epoch).
_FIT_STOPPED = re.compile(r"`?Trainer\.fit`? stopped: `?(?P<why>max_epochs|max_steps|max_time)")
_TRAINING = re.compile(r"step|train|epoch|iter|optimi[sz]", re.I)
# Side tasks, each with the reason its bar is not the training bar.
_SIDE_TASKS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I), reason)
    for pattern, reason in (
        (r"validat|\bval\b", "validation"),
        (r"eval", "evaluation"),
        (r"\btest", "testing"),
        (r"predict", "prediction"),
        (r"sanity", "sanity check"),
        (r"load|fetch|download|resolv|shard|upload", "loading or transfer"),
        (r"sav|writ|checkpoint", "saving"),
        (r"\bmap\b|tokeni|filter|prepar|extract|encod|cach|latent|bucket", "dataset preparation"),
        (r"sampl|generat|infer", "sampling or generation"),
    )
)
_SCALE = {"": 1, "k": 1_000, "M": 1_000_000, "G": 1_000_000_000, "T": 1_000_000_000_000}
_HINTS = ("%|", "it", "/s", "s/", "step", "Step", "STEP", "━", "'epoch'")

MAX_PARTIAL = 64 * 1024
# Steps and totals beyond this are not progress (the push API's own cap): a bar or line showing one is
# ignored, so it can neither reach the ETA nor become the locked training bar.
MAX_COUNT = 10**12


Scope = Literal["run", "epoch"]


@dataclass(frozen=True)
class LogProgress:
    """One progress update: ``step`` of ``total`` (None when unknown), the printed rate in steps/s, the
    bar label; for a per-epoch counter also the epoch, the number of epochs when printed, the step and
    total within the epoch, and whether the whole run is known (``scope``)."""

    step: int
    total: int | None
    rate: float | None
    label: str
    epoch: int | None = None
    epochs: int | None = None
    epoch_step: int | None = None
    epoch_total: int | None = None
    scope: Scope = "run"
    form: Literal["tqdm", "rich", "line"] = "tqdm"
    # True: what looked like training progress was a side task after all (an unlabelled bar that finished
    # before any training bar); training has not started yet.
    pending: bool = False
    # The step the first step-numbered save of the run named (``checkpoint-100``): the trainer saves every
    # that many steps (a save first at step N under 'every N steps' or 'every epoch of N steps').
    save_every: int | None = None


def side_task(label: str) -> str | None:
    """Why a bar with this label is not the training bar (``"validation"``, ``"saving"``, ...), or None."""
    for pattern, reason in _SIDE_TASKS:
        if pattern.search(label):
            return reason
    return None


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def _number(text: str) -> float:
    scale = _SCALE.get(text[-1:], 1) if text[-1:].isalpha() else 1
    # Capped: a printed number too large for a float would make int() raise; MAX_COUNT rejects it anyway.
    return min(float(text.rstrip("kMGT")) * scale, 1e18)


def _rate(inner: str) -> float | None:
    match = _RATE.search(inner)
    if match is None:
        return None
    if match.group("value") is not None:
        return _number(match.group("value"))
    seconds = _number(match.group("inverse"))
    return 1.0 / seconds if seconds > 0 else None


def _label(text: str) -> str:
    label = text.strip().rstrip(":").strip()
    torchtune = _TORCHTUNE.match(label)
    if torchtune is not None:
        # 'epoch|global_step|Loss: x': a per-epoch bar; the number of epochs is printed nowhere.
        return f"epoch {torchtune.group('epoch')}"
    return label


def _parse_bar(text: str) -> LogProgress | None:
    match = _BAR.search(text)
    if match is not None:
        total = int(_number(match.group("total")))
        return LogProgress(
            step=int(_number(match.group("n"))),
            total=total if total else None,
            rate=_rate(match.group("inner")),
            label=_label(text[: match.start()]),
        )
    match = _RICH_BAR.search(text) or _RICH_BEFORE.search(text)
    if match is not None:
        total = int(match.group("total"))
        return LogProgress(
            step=int(match.group("n")),
            total=total if total else None,
            rate=_rate(match.group("inner")),
            label=_label(text[: match.start()].strip().strip(_PANEL)),
            form="rich",
        )
    match = _OPEN_BAR.search(text)
    if match is not None and ("?" in match.group("inner") or _RATE.search(match.group("inner"))):
        return LogProgress(
            step=int(_number(match.group("n"))),
            total=None,
            rate=_rate(match.group("inner")),
            label=_label(text[: match.start()]),
        )
    return None


def parse_line(text: str) -> LogProgress | None:
    """The progress one log segment (text between ``\\r``/``\\n``) shows, or None."""
    if len(text) > MAX_PARTIAL or not any(hint in text for hint in _HINTS):
        return None
    text = strip_ansi(text)
    bar = _parse_bar(text)
    if bar is not None:
        return bar
    match = _PLAIN.search(text)
    if match is None:
        return None
    total = int(match.group("total"))
    epoch = _EPOCH.search(text)
    # 'Epoch [2/10], Step [100/600]': the epoch is part of the label, as in a bar's description.
    label = match.group("label").lower() if epoch is None else f"{epoch.group(0)} {match.group('label').lower()}"
    return LogProgress(
        step=int(match.group("n")),
        total=total if total else None,
        rate=None,
        label=label,
        form="line",
    )


def _is_side_task(label: str) -> bool:
    return side_task(label) is not None


def _is_training(label: str) -> bool:
    return _TRAINING.search(label) is not None and not _is_side_task(label)


def _label_key(label: str) -> str:
    # 'Epoch 3' and 'Epoch 4' are the same bar with a changing description.
    return re.sub(r"\d+", "#", label.lower())


def _bar_id(progress: LogProgress) -> tuple[str, int | None]:
    return _label_key(progress.label), progress.total


def _banner_number(text: str) -> int:
    return int(text.replace(",", ""))


class LogParser:
    """Incremental: feed appended text chunks, get back the training progress updates found."""

    def __init__(self, max_partial: int = MAX_PARTIAL) -> None:
        self.max_partial = max_partial
        self.dropped_lines = 0
        self.reset()

    def reset(self) -> None:
        """Forget the partial line and the chosen bar (after truncation or rotation)."""
        self._partial = ""
        self._discarding = False
        self._locked_key: str | None = None
        self._locked_total: int | None = None
        self._largest_total = 0
        self._last: tuple[int, int | None, str] | None = None
        self._last_bar: tuple[str, int] | None = None
        self._zero_based = False
        self._epoch_seen: tuple[int, int] | None = None  # (epoch, its last step) of the training bar
        self._global_counter = False
        # What trainers print around their bars: the run's total and epochs, a resume offset (LTX-2).
        self.banner_total: int | None = None
        self.banner_epochs: int | None = None
        #: The step named by the first step-numbered save seen (``Saved state to out/checkpoint-100``).
        self.save_every: int | None = None
        self._resumed: tuple[int, int] | None = None
        # Unlabelled (or unrecognised) bars: the one followed while unconfirmed, whether other output came
        # between two of its updates (a training bar keeps moving across saves and evaluations), and the
        # bars known to be side tasks (finished before training, absurd rates).
        self._provisional: tuple[str, int | None] | None = None
        self._interrupted = False
        self._side_bars: set[tuple[str, int | None]] = set()
        # OneTrainer's 'epoch' bar: (epochs done, epochs); the per-epoch 'step' bar's base epoch and last count.
        self._epoch_bar: tuple[int, int] | None = None
        self._nest_base = 0
        self._nest_last = -1
        #: A line saying training started was seen (LTX's '🚀 Starting training...', the HF banner, kohya's).
        self.training_announced = False
        #: Training progress was found (any update, pending ones aside).
        self.progress_found = False

    def feed(self, chunk: str) -> list[LogProgress]:
        """Updates of the training bar found in ``chunk``; repeats of the same step are dropped."""
        found: list[LogProgress] = []
        parts = re.split(r"[\r\n]", chunk)
        for index, part in enumerate(parts):
            last_part = index == len(parts) - 1
            if self._discarding:
                if last_part:
                    continue
                # The overlong line ends here; the next segment starts clean.
                self._discarding = False
                continue
            segment = self._partial + part
            if last_part:
                if len(segment) > self.max_partial:
                    self._partial = ""
                    self._discarding = True
                    self.dropped_lines += 1
                    continue
                self._partial = segment
                # tqdm writes '\r' before each update, so the newest bar stays unterminated until the
                # next one; a bar whose closing ']' has arrived is safe to read now.
                if segment.rstrip().endswith("]"):
                    self._take(_parse_bar(strip_ansi(segment)), found)
                continue
            self._partial = ""
            if len(segment) > self.max_partial:
                self.dropped_lines += 1
                continue
            if "Trainer.fit" in segment and _FIT_STOPPED.search(segment):
                self._fit_stopped(found)
                continue
            progress = parse_line(segment)
            if progress is None:
                progress = self._context(segment)
            elif self._provisional is not None and _bar_id(progress) != self._provisional:
                self._interrupted = True
            self._take(progress, found)
        if found:
            self.progress_found = self.progress_found or any(not item.pending for item in found)
        return found

    def _context(self, segment: str) -> LogProgress | None:
        """What a line that is not a bar says: banners, a resume, the Hugging Face Trainer's log dicts."""
        text = segment.strip()
        if not text or (text.startswith("\x1b") and not strip_ansi(text).strip()):
            return None
        if self._provisional is not None:
            self._interrupted = True
        text = strip_ansi(text) if "\x1b" in text else text
        if "ptimi" in text and (match := _BANNER_TOTAL.search(text)) is not None:
            self.banner_total = _banner_number(match.group("total"))
        if "Num Epochs" in text and (match := _BANNER_EPOCHS.search(text)) is not None:
            self.banner_epochs = _banner_number(match.group("epochs"))
        if self.save_every is None and (match := _SAVED_STEP.search(text)) is not None and not _NOT_A_SAVE.search(text):
            saved = int(match.group("n") or match.group("s"))
            self.save_every = saved if 0 < saved <= MAX_COUNT else None
        if "raining" in text and _TRAINING_STARTED.search(text):
            self.training_announced = True
        if "Resuming training" in text and (match := _RESUMED.search(text)) is not None:
            start, end = int(match.group("start")), int(match.group("end"))
            self._resumed = (start, end) if 0 <= start < end else None
        if "'epoch'" in text and text.startswith("{'") and (match := _HF_DICT_EPOCH.match(text)) is not None:
            return self._from_epoch_fraction(float(match.group("epoch")))
        return None

    def _from_epoch_fraction(self, epoch: float) -> LogProgress | None:
        """HF log dict: step = total steps x epochs done / number of epochs, both from the banner."""
        total, epochs = self.banner_total, self.banner_epochs
        if not total or not epochs:
            return None
        step = min(total, max(0, round(total * epoch / epochs)))
        self.training_announced = True
        return LogProgress(step=step, total=total, rate=None, label="step", form="line")

    def _take(self, progress: LogProgress | None, found: list[LogProgress]) -> None:
        if progress is None or progress.step > MAX_COUNT or (progress.total or 0) > MAX_COUNT:
            return
        progress = self._past_total(progress)
        if progress.label and _EPOCH_BAR_LABEL.match(progress.label) and progress.total:
            # OneTrainer's outer bar counts epochs: it stitches the step bar, it is not progress itself.
            self._epoch_bar = (min(progress.step, progress.total), progress.total)
            return
        if self._resumed is not None and progress.form == "rich" and progress.total is not None:
            start, end = self._resumed
            if progress.total == end - start:
                # LTX-2 resumed: its bar counts the remaining steps; the run's step is the resumed one plus.
                progress = replace(progress, step=start + progress.step, total=end)
        if not self._accept(progress):
            return
        if self._side_task_after_all(progress, found):
            return
        if progress.total is not None:
            self._last_bar = (_label_key(progress.label), progress.total)
        stitched = self._stitch(progress)
        if stitched is None:
            return
        progress = stitched
        if progress.step > MAX_COUNT or (progress.total or 0) > MAX_COUNT:
            return
        # The same step again (tqdm's closing refresh, a bar re-read when completed) is no news.
        key = (progress.step, progress.total, progress.label)
        if key == self._last:
            return
        self._last = key
        if self.save_every is not None:
            progress = replace(progress, save_every=self.save_every)
        found.append(progress)

    def _side_task_after_all(self, progress: LogProgress, found: list[LogProgress]) -> bool:
        """An unconfirmed unlabelled bar that finished before any training bar: a side task (kohya's image
        sizes at 300,000 it/s, caching latents, a baseline sample). Say that training has not started
        (``pending``) in place of its progress. A bar is confirmed as the training bar by a labelled
        training bar or step line, by the printed run's total, or by moving on across other output."""
        if self._locked_key is not None and (not progress.label or not _is_training(progress.label)):
            return False
        if progress.label and _is_training(progress.label):
            return False
        bar = _bar_id(progress)
        if self._provisional != bar:
            self._provisional, self._interrupted = bar, False
        elif self._interrupted and progress.total is not None and progress.step < progress.total:
            # It kept moving across other output (saves, evaluations): the training bar.
            self._locked_key, self._locked_total = bar
            return False
        if self.banner_total is not None and progress.total == self.banner_total:
            return False
        if progress.total is None or progress.step < progress.total:
            return False
        self._side_bars.add(bar)
        self._provisional = None
        if self._last is not None:
            self._last = None
            found.append(LogProgress(step=0, total=None, rate=None, label="", pending=True))
        return True

    def _fit_stopped(self, found: list[LogProgress]) -> None:
        """Lightning says fit ended at its limit: the last step seen is the run's last step."""
        if self._last is None:
            return
        step, _, label = self._last
        done = LogProgress(step=step, total=step, rate=None, label=label, scope="run")
        self._last = (step, step, label)
        found.append(done)

    def _past_total(self, progress: LogProgress) -> LogProgress:
        """``901it [...]`` after the same bar's ``900/900``: the bar ran past its total; keep the total."""
        if progress.total is not None or self._last_bar is None:
            return progress
        key, total = self._last_bar
        if _label_key(progress.label) != key or progress.step < total:
            return progress
        return replace(progress, step=total, total=total)

    def _nested(self, progress: LogProgress) -> LogProgress:
        """A step bar under an epoch bar (OneTrainer): a new bar each epoch, stitched with the epoch count.
        The finished bar of the last epoch may be redrawn after the epoch bar moved on: only a restart of the
        step bar takes the new epoch."""
        assert self._epoch_bar is not None and progress.total is not None
        done, epochs = self._epoch_bar
        if progress.step < self._nest_last or self._nest_last < 0:
            self._nest_base = done
        self._nest_last = progress.step
        per_epoch = progress.total
        index = min(self._nest_base, epochs - 1)
        return replace(
            progress,
            step=index * per_epoch + min(progress.step, per_epoch),
            total=epochs * per_epoch,
            epoch=index + 1,
            epochs=epochs,
            epoch_step=progress.step,
            epoch_total=per_epoch,
        )

    def _stitch(self, progress: LogProgress) -> LogProgress | None:
        """A per-epoch counter -> global progress (number of epochs printed) or the current epoch only;
        None for a bar reset to 0 before its new epoch is printed (Lightning resets, then describes)."""
        match = _EPOCH.search(progress.label)
        per_epoch = progress.total
        if match is None and self._epoch_bar is not None and per_epoch is not None and progress.form == "tqdm":
            return self._nested(progress)
        if match is None or per_epoch is None or self._global_counter:
            return progress
        if _GLOBAL_EPOCH_LABEL.match(progress.label) or (
            self.banner_total is not None and per_epoch == self.banner_total and progress.form != "rich"
        ):
            # SimpleTuner's 'Epoch 3/10, Steps' over one bar for the run, or a bar whose total is the
            # printed run's total: the counter is global, the epoch is said beside it.
            return progress
        epoch = int(match.group("epoch"))
        epochs = int(match.group("epochs")) if match.group("epochs") else None
        if self._epoch_seen is not None:
            seen_epoch, seen_step = self._epoch_seen
            if epoch == seen_epoch and progress.step < seen_step:
                return None
            if progress.form != "rich" and epoch > seen_epoch and progress.step >= seen_step and progress.step > 1:
                # A counter that did not restart with the new epoch: global all along. (The parser reads
                # every line a bar writes, so a restart is never missed; Rich is Lightning's, per epoch.)
                self._global_counter = True
                return progress
        self._epoch_seen = (epoch, progress.step)
        rich = progress.form == "rich"
        if epoch == 0 or rich:
            self._zero_based = True
        index = epoch if self._zero_based else max(0, epoch - 1)
        if epochs is not None and rich:
            epochs += 1  # Lightning's Rich bar prints the last epoch's index: 'Epoch 2/2' is the third
        step = index * per_epoch + min(progress.step, per_epoch)
        known = epochs is not None and epochs > index
        return replace(
            progress,
            step=step,
            total=epochs * per_epoch if known and epochs else (index + 1) * per_epoch,
            epoch=epoch,
            epochs=epochs if known else None,
            epoch_step=progress.step,
            epoch_total=per_epoch,
            scope="run" if known else "epoch",
        )

    def _accept(self, progress: LogProgress) -> bool:
        label = progress.label
        if label and _is_side_task(label):
            return False
        total = progress.total or 0
        if label and _is_training(label):
            key = _label_key(label)
            if self._locked_key is None or key == self._locked_key or total >= (self._locked_total or 0):
                self._locked_key, self._locked_total = key, progress.total
                self._largest_total = max(self._largest_total, total)
                return True
            return False
        if self._locked_key is not None:
            return _bar_id(progress) == (self._locked_key, self._locked_total)
        if _bar_id(progress) in self._side_bars:
            return False
        # An unlabelled (or unrecognised) bar: only the biggest one seen is the training bar.
        if total >= self._largest_total:
            self._largest_total = total
            return True
        return False
