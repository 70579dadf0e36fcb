"""A stand-in training job for the fleet tests: STEPS steps at RATE steps/s, reported through the trainer
callbacks' own plumbing (maintenance_shim.integrations ProgressSink: MAINT_PUSH_URL with MAINT_ADMIN_TOKEN,
and MAINT_NODE, as with_maintenance.sh --rolling sets it), then a line naming its node appended to LOG.

    python tests/support/fleet_trainer.py --steps 20 --rate 10 --log ran.txt
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from maintenance_shim.integrations._core import TRAINING, ProgressSink


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    sink = ProgressSink("fleet trainer", min_interval=0.2)
    for step in range(1, args.steps + 1):
        time.sleep(1 / args.rate)
        sink.report(step, args.steps, TRAINING)
    sink.finish(args.steps, args.steps)
    with args.log.open("a") as log:
        log.write(f"{os.environ.get('MAINT_NODE', '-')} {time.time():.3f} sent\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
