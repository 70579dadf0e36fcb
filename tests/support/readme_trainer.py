"""The README walkthrough's `train.py` in tests/scripts/test_readme.py: a paced stand-in trainer with a real tqdm bar.

It does no work: each step sleeps STEP seconds, and every SAVE_EVERY steps (and after the last one) a
checkpoint "save" sleeps SAVE seconds, as the Hugging Face Trainer does with save_steps. Paced, so the ETA
the shim shows can be checked against the true time without measuring the machine.

    python train.py   (READMETRAIN_STEPS, READMETRAIN_STEP, READMETRAIN_SAVE_EVERY, READMETRAIN_SAVE override)
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

STEPS = int(os.environ.get("READMETRAIN_STEPS", "200"))
STEP = float(os.environ.get("READMETRAIN_STEP", "0.4"))
SAVE_EVERY = int(os.environ.get("READMETRAIN_SAVE_EVERY", "40"))
SAVE = float(os.environ.get("READMETRAIN_SAVE", "2.0"))


def main() -> int:
    start = time.monotonic()
    with tqdm(total=STEPS, desc="train", mininterval=0.1) as bar:
        for step in range(1, STEPS + 1):
            # Paced against the clock from the start: a slow moment is made up, so the run's length is known.
            time.sleep(max(0.0, start + step * STEP - time.monotonic()))
            bar.update(1)
            if step % SAVE_EVERY == 0 or step == STEPS:
                tqdm.write(f"saving checkpoint-{step}")
                time.sleep(SAVE)
                start += SAVE
    print("training done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
