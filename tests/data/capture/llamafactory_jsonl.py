"""Derive the `trainer_llamafactory_jsonl` replay case: LLaMA-Factory's `trainer_log.jsonl`, as its
LogCallback would have written it during the real Hugging Face Trainer run of `trainer_hf_disable_tqdm_real`.

LLaMA-Factory trains through the Hugging Face Trainer and writes `<output_dir>/trainer_log.jsonl` from its
`LogCallback.on_log` (hiyouga/LLaMA-Factory, src/llamafactory/train/callbacks.py at ff6d4d12e), the same
Trainer event on which the Trainer's PrinterCallback prints its log dict. So each dict printed in that
capture (every `logging_steps` = 10 steps, after each evaluation, and the final `train_runtime` one) is one
line of the file, appended at the moment it was printed, built as `on_log` builds it:

- callbacks.py:199-204 `_reset` at `on_train_begin` (239-244): `start_time = time.time()`, `max_steps =
  state.max_steps`; here the moment the Trainer printed `***** Running training *****`;
- callbacks.py:206-213 `_timing(cur_steps=state.global_step)`: `elapsed_time` and `remaining_time` as
  `str(timedelta(seconds=int(...)))`; the global step is the truth's step at that moment;
- callbacks.py:277-290 the `logs` dict (`current_steps`, `total_steps`, `loss`, `eval_loss`, ..., `lr`,
  `epoch`, `percentage`, `elapsed_time`, `remaining_time`), None values dropped (300);
- callbacks.py:215-217 `_write_log`: `f.write(json.dumps(logs) + "\\n")` in append mode.

The LLaMA-Factory package itself is not installed here (it pins its own transformers); its callback's
code is what is reproduced. Run from the repository root: `python tests/data/capture/llamafactory_jsonl.py`.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

REPLAY = Path(__file__).resolve().parent.parent / "replay"
SOURCE = REPLAY / "trainer_hf_disable_tqdm_real"
CASE = REPLAY / "trainer_llamafactory_jsonl"
DICT = re.compile(r"\{'(?:loss|eval_loss|train_runtime)'[^{}]*\}")


def _number(value: Any) -> Any:
    """The Trainer's log values as numbers (transformers 5's PrinterCallback prints them as short strings)."""
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


def main() -> None:
    chunks = [json.loads(line) for line in (SOURCE / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    truth = (SOURCE / "truth.jsonl").read_text(encoding="utf-8")
    steps = [(item["t"], item["step"]) for item in map(json.loads, truth.splitlines()) if "step" in item]
    meta = json.loads((SOURCE / "meta.json").read_text(encoding="utf-8"))
    max_steps = int(meta["total_steps"])
    start_time = next(c["t"] for c in chunks if "***** Running training *****" in c["data"])  # on_train_begin
    out = []
    for chunk in chunks:
        for match in DICT.finditer(chunk["data"]):
            last = {key: _number(value) for key, value in ast.literal_eval(match[0]).items()}
            t = chunk["t"]
            global_step = max((step for when, step in steps if when <= t), default=0)
            # _timing(cur_steps=state.global_step), callbacks.py:206-213
            elapsed = t - start_time
            per_step = elapsed / global_step if global_step != 0 else 0
            remaining = (max_steps - global_step) * per_step
            logs = dict(  # callbacks.py:277-290
                current_steps=global_step,
                total_steps=max_steps,
                loss=last.get("loss"),
                eval_loss=last.get("eval_loss"),
                predict_loss=last.get("predict_loss"),
                reward=last.get("reward"),
                accuracy=last.get("rewards/accuracies"),
                lr=last.get("learning_rate"),
                epoch=last.get("epoch"),
                percentage=round(global_step / max_steps * 100, 2) if max_steps != 0 else 100,
                elapsed_time=str(timedelta(seconds=int(elapsed))),
                remaining_time=str(timedelta(seconds=int(remaining))),
            )
            logs = {k: v for k, v in logs.items() if v is not None}  # callbacks.py:300
            out.append({"t": t, "data": json.dumps(logs) + "\n"})  # _write_log, callbacks.py:216-217
    CASE.mkdir(exist_ok=True)
    (CASE / "chunks.jsonl").write_text("".join(json.dumps(item) + "\n" for item in out), encoding="utf-8")
    shutil.copyfile(SOURCE / "truth.jsonl", CASE / "truth.jsonl")
    meta.update(
        name=CASE.name,
        source="trainer_log_jsonl",
        trainer=f"LLaMA-Factory's LogCallback (callbacks.py at ff6d4d12e) over {meta['trainer']}",
        description="LLaMA-Factory's trainer_log.jsonl (current_steps/total_steps every logging_steps = 10, after "
        "each evaluation, and at the end), derived from the real Trainer run of trainer_hf_disable_tqdm_real: "
        "one line per log dict that run printed, at the moment it printed it (tests/data/capture/"
        "llamafactory_jsonl.py)",
        command="python tests/data/capture/llamafactory_jsonl.py",
    )
    meta["capture"] = {**meta["capture"], "chunks": len(out), "chunks_bytes": sum(len(i["data"]) for i in out)}
    (CASE / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
