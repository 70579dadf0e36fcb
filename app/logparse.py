"""Training progress from trainer log text (tqdm bars and ``step N/M`` lines): pure, never raises.

Which bar is the training bar (``LogParser``):

1. Bars whose label names a side task (loading, saving, validation, eval, download, map, tokenize,
   sampling, ...) are never progress.
2. Bars whose label names training (step, train, epoch, iter, optimiz) and plain ``step N/M`` lines win:
   the first one seen is locked; another training label takes over only with a total at least as large.
3. Unlabelled bars (the Hugging Face Trainer prints none) count only while no training label is locked,
   and only when their total is at least the largest total seen so far, so the 50-item evaluation bar
   does not replace the 3,000-step training bar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
_RATE = re.compile(rf"(?P<value>{_NUM})[A-Za-z]*/s\b|(?P<inverse>{_NUM})s/[A-Za-z]+")
# A 'step' keyword is required so that dates (12/03/2026) and other fractions are never progress.
_PLAIN = re.compile(
    r"\b(?P<label>(?:global[_ ]?)?steps?)\b\s*[:=]?\s*\[?\s*(?P<n>\d+)\s*(?:/|\bof\b)\s*(?P<total>\d+)\b",
    re.I,
)
_TRAINING = re.compile(r"step|train|epoch|iter|optimi[sz]", re.I)
_SIDE_TASK = re.compile(
    r"load|sav|valid|eval|download|fetch|\bmap\b|tokeni|sampl|generat|infer|extract|cach|filter|writ|upload|"
    r"prepar|\btest|shard|resolv|encod|latent|bucket",
    re.I,
)
_SCALE = {"": 1, "k": 1_000, "M": 1_000_000, "G": 1_000_000_000, "T": 1_000_000_000_000}
_HINTS = ("%|", "it", "/s", "s/", "step", "Step", "STEP")

MAX_PARTIAL = 64 * 1024


@dataclass(frozen=True)
class LogProgress:
    """One progress update: ``step`` of ``total`` (None when unknown), tqdm's rate in steps/s, bar label."""

    step: int
    total: int | None
    rate: float | None
    label: str


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def _number(text: str) -> float:
    scale = _SCALE.get(text[-1:], 1) if text[-1:].isalpha() else 1
    return float(text.rstrip("kMGT")) * scale


def _rate(inner: str) -> float | None:
    match = _RATE.search(inner)
    if match is None:
        return None
    if match.group("value") is not None:
        return _number(match.group("value"))
    seconds = _number(match.group("inverse"))
    return 1.0 / seconds if seconds > 0 else None


def _label(text: str) -> str:
    return text.strip().rstrip(":").strip()


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
    return LogProgress(
        step=int(match.group("n")),
        total=total if total else None,
        rate=None,
        label=match.group("label").lower(),
    )


def _is_side_task(label: str) -> bool:
    return _SIDE_TASK.search(label) is not None


def _is_training(label: str) -> bool:
    return _TRAINING.search(label) is not None and not _is_side_task(label)


def _label_key(label: str) -> str:
    # 'Epoch 3' and 'Epoch 4' are the same bar with a changing description.
    return re.sub(r"\d+", "#", label.lower())


class LogParser:
    """Incremental: feed appended text chunks, get back the training progress updates found."""

    def __init__(self, max_partial: int = MAX_PARTIAL) -> None:
        self.max_partial = max_partial
        self.dropped_lines = 0
        self._partial = ""
        self._discarding = False
        self._locked_key: str | None = None
        self._locked_total: int | None = None
        self._largest_total = 0
        self._last: tuple[int, int | None, str] | None = None

    def reset(self) -> None:
        """Forget the partial line and the chosen bar (after truncation or rotation)."""
        self._partial = ""
        self._discarding = False
        self._locked_key = None
        self._locked_total = None
        self._largest_total = 0
        self._last = None

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
            self._take(parse_line(segment), found)
        return found

    def _take(self, progress: LogProgress | None, found: list[LogProgress]) -> None:
        if progress is None or not self._accept(progress):
            return
        # The same step again (tqdm's closing refresh, a bar re-read when completed) is no news.
        key = (progress.step, progress.total, progress.label)
        if key == self._last:
            return
        self._last = key
        found.append(progress)

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
            return False
        # An unlabelled (or unrecognised) bar: only the biggest one seen is the training bar.
        if total >= self._largest_total:
            self._largest_total = total
            return True
        return False
