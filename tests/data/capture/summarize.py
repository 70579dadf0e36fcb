#!/usr/bin/env python3
"""Check and summarise the replay corpus: python tests/data/capture/summarize.py [CASE...]

For each case in tests/data/replay/: chunk count and size, capture duration, training time (first to last
step), steps/s before and after the middle, pauses longer than 3 s between steps, and problems: a step
missing or repeated in the truth (a restart excepted), no exit event, non-zero exit, total mismatch.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
from pathlib import Path

REPLAY = Path(__file__).resolve().parent.parent / "replay"


def load(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def summarise(case: Path) -> list[str]:
    problems: list[str] = []
    meta = json.loads((case / "meta.json").read_text(encoding="utf-8"))
    chunks = load(case / "chunks.jsonl")
    truth = load(case / "truth.jsonl")
    steps = [r for r in truth if "step" in r]
    restarts = [r for r in truth if r.get("event") == "restart"]
    exits = [r for r in truth if r.get("event") == "exit"]
    size = (case / "chunks.jsonl").stat().st_size

    previous = None
    for record in truth:
        if record.get("event") == "restart":
            previous = record["from_step"]
            continue
        if "step" not in record:
            continue
        if previous is not None and record["step"] != previous + 1:
            problems.append(f"step {record['step']} after {previous}")
        previous = record["step"]
    if steps and meta.get("total_steps") not in (None, steps[-1]["total"]):
        problems.append(f"meta total_steps {meta.get('total_steps')} != truth total {steps[-1]['total']}")
    if not exits:
        problems.append("no exit event")
    if exits and exits[-1]["status"] != 0:
        problems.append(f"last exit status {exits[-1]['status']}")
    if any(chunks[i]["t"] > chunks[i + 1]["t"] for i in range(len(chunks) - 1)):
        problems.append("chunk times go backwards")
    if size > 400_000:
        problems.append(f"chunks.jsonl is {size} bytes")

    gaps = [(b["t"] - a["t"], a["step"]) for a, b in itertools.pairwise(steps) if b["step"] > a["step"]]
    typical = statistics.median(g for g, _ in gaps) if gaps else 0.0
    pauses = [f"{g:.1f}s@{s}" for g, s in gaps if g > 3.0 and g > 10 * typical]
    half = len(steps) // 2
    first, second = steps[: max(half, 2)], steps[half:]

    def rate(part: list[dict]) -> float:
        span = part[-1]["t"] - part[0]["t"]
        return (len(part) - 1) / span if span > 0 else 0.0

    line = (
        f"{case.name:36} {meta['kind']:11} steps {len(steps):4} (last {steps[-1]['step'] if steps else '-'}/"
        f"{steps[-1]['total'] if steps else '-'})  capture {meta['capture']['duration_s']:6.1f}s  "
        f"training {steps[-1]['t'] - steps[0]['t'] if steps else 0:6.1f}s  chunks {len(chunks):5} "
        f"{size / 1024:6.1f}KiB  rate {rate(first):5.2f} -> {rate(second):5.2f}/s"
    )
    if restarts:
        line += f"  restart from {restarts[0]['from_step']}"
    if pauses:
        line += "  pauses " + ", ".join(pauses)
    return [line] + [f"    PROBLEM: {p}" for p in problems]


def main(names: list[str]) -> int:
    cases = [REPLAY / n for n in names] if names else sorted(p for p in REPLAY.iterdir() if p.is_dir())
    bad = 0
    for case in cases:
        lines = summarise(case)
        bad += len(lines) - 1
        print("\n".join(lines))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
