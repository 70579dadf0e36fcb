"""The trainers operators run, unmodified, on tiny random models on the CPU, under with_maintenance.sh.

diffusers' `examples/text_to_image/train_text_to_image_lora.py` (v0.40.0, vendored unchanged in
tests/data/field/diffusers/) trains a LoRA on a tiny random Stable Diffusion built by tests/data/field/tiny_sd.py,
with mid-run checkpoints and validations, a final LoRA save and a final validation. The script imports
torchvision, and PyPI's torchvision is a CUDA build whose C extension needs libtorch_cuda.so, which the CPU
torch of the project's venv lacks: it runs in a venv of its own (tests/data/field/README.md), given as

    .venv/bin/python -m pytest -m field tests/trainers/test_field_trainers.py --field-python FIELD_VENV/bin/python

so it is out of the default run, like the vLLM test. The run's speed follows this machine's load: only what
does not depend on it is asserted (the training bar found, the run's total, the page never `finishing` or
`overdue` before the first step, a finite ETA while training, `finishing` after the last step, the shim gone
at the end); the errors at 25/50/75 % go to tests/artifacts/field-<name>.txt. The accuracy of the ETA over this
trainer's output is asserted on its recording replayed at its recorded timing (tests/progress/test_replay.py,
`field_diffusers_lora`, captured with the same command by tests/data/capture/capture_all.sh).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import free_port, request, stop_pid
from tests.support.scripts import ROOT, SCRIPTS, Setup, _write_artifact, assert_no_stray_lines

pytestmark = pytest.mark.field
FIELD = ROOT / "tests" / "data" / "field"
CAPTURE = ROOT / "tests" / "data" / "capture"
RESUME = 30


def diffusers_lora(model: Path, data: Path, out: Path, steps: int) -> list[str]:
    """The example's arguments as its README gives them, at a tiny resolution: a checkpoint every 20 steps, a
    validation after epoch 0 (8 images an epoch: step 8) and none after (every 100 epochs), the LoRA saved and
    validated after the last step. tests/data/capture/capture_all.sh runs a longer one for the corpus."""
    return [
        str(FIELD / "diffusers" / "train_text_to_image_lora.py"), f"--pretrained_model_name_or_path={model}",
        f"--train_data_dir={data}", "--resolution=16", "--train_batch_size=1", f"--max_train_steps={steps}",
        "--checkpointing_steps=20", "--validation_prompt=a photo", "--num_validation_images=1",
        "--validation_epochs=100", "--learning_rate=1e-04", "--lr_scheduler=constant", "--lr_warmup_steps=0",
        "--rank=4", "--seed=0", f"--output_dir={out}", "--dataloader_num_workers=0",
    ]


def field_env(tmp_path: Path, total: int) -> dict[str, str]:
    """No hub, no downloads; the truth of the unmodified script through tests/data/field/truth/sitecustomize.py."""
    return {
        "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CAPTURE_TOTAL": str(total),
        "PYTHONPATH": os.pathsep.join([str(FIELD / "truth"), str(CAPTURE)]),
    }


@pytest.fixture
def field_python(request: pytest.FixtureRequest) -> str:
    python = request.config.getoption("--field-python")
    assert python, "give --field-python PATH: the Python of the field venv (tests/data/field/README.md)"
    return str(python)


def _status(port: int) -> dict[str, object]:
    return json.loads(request(port, "GET", "/_maintenance/status", close=True).body)  # type: ignore[no-any-return]


def test_diffusers_lora_example_unmodified_under_with_maintenance(
    setup: Setup, tmp_path: Path, field_python: str
) -> None:
    s = setup
    model, data = tmp_path / "tiny-sd", tmp_path / "images"
    subprocess.run([field_python, str(FIELD / "tiny_sd.py"), str(model), str(data)], check=True,
                   capture_output=True, timeout=600)
    steps = 60
    shim_port = free_port()
    s.write_env(MAINT_LISTEN=f"127.0.0.1:{shim_port}", MAINT_RESUME_SECONDS=str(RESUME), MAINT_LIGHTNING_AUTO="0")
    truth, t0 = tmp_path / "truth.jsonl", time.time()
    env = {**s.env(), **field_env(tmp_path, steps), "CAPTURE_TRUTH": str(truth), "CAPTURE_T0": repr(t0)}
    command = [field_python, *diffusers_lora(model, data, tmp_path / "out", steps)]
    err_path = tmp_path / "with_maintenance.err"  # a file, not a pipe nobody reads while the run is polled
    with err_path.open("w") as err_file:
        proc = subprocess.Popen([str(SCRIPTS / "with_maintenance.sh"), "--", *command], env=env, cwd=s.tmp,
                                stdout=subprocess.DEVNULL, stderr=err_file, text=True)
    seen: list[tuple[float, dict[str, object]]] = []
    deadline = time.monotonic() + 1200  # about 40 s idle; the deadline only stops a hung run
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the run did not end within 20 minutes"
            with contextlib.suppress(OSError, ValueError):  # before the shim is up, and after it is gone
                seen.append((time.time() - t0, _status(shim_port)))
            time.sleep(0.5)
        proc.wait(timeout=60)
    finally:
        stop_pid(proc, grace=60)
    wall = time.time() - t0
    err = err_path.read_text(errors="replace")
    assert_no_stray_lines("", err)
    assert proc.returncode == 0, err[-3000:]
    assert "Steps: 100%" in err, err[-2000:]  # the script's own bar, tee'd by with_maintenance.sh
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    done = [(item["t"], item["step"]) for item in records if "step" in item]
    assert [step for _, step in done] == list(range(1, steps + 1)), done[:3]
    first, end = done[0][0], done[-1][0]
    # Before the first step (model loading, the dataset, the accelerator): never 'finishing' nor 'overdue'.
    early = [(round(t, 1), st["state"]) for t, st in seen if t < first and st["state"] in ("finishing", "overdue")]
    assert not early, f"before the first step at {first:.1f} s: {early[:5]}"
    report = [f"wall {wall:.1f} s, steps from {first:.1f} s to {end:.1f} s"]
    for fraction in (0.25, 0.5, 0.75):
        reached = next(t for t, step in done if step >= fraction * steps)
        at, status = next((t, st) for t, st in seen if t >= reached)
        progress, eta = status["progress"], status["eta"]
        # The training bar ('Steps'), not a side bar (the dataset's map, the validation pipeline's): the run's total.
        assert isinstance(progress, dict) and progress["total"] == steps and progress["scope"] == "run", status
        if fraction >= 0.5:  # 25 % comes about 5 s into training: the ETA may still be 'estimating' then
            assert status["state"] == "training" and isinstance(eta, dict) and eta["seconds"] is not None, status
        if isinstance(eta, dict) and eta["seconds"] is not None:
            seconds = float(eta["seconds"])  # type: ignore[arg-type]
            assert math.isfinite(seconds) and seconds > 0, status
            shown, true = seconds - RESUME, end - at
            report.append(f"{fraction:.0%}: {status['state']}, ETA {seconds:.0f} s; the services were back "
                          f"{wall - at:.1f} s later (error {abs(seconds - (wall - at)) / (wall - at):.1%}); "
                          f"less MAINT_RESUME_SECONDS {shown:.0f} s, the last step {true:.1f} s later")
        else:
            report.append(f"{fraction:.0%}: {status['state']}, no ETA yet")
    # After the last step (the final LoRA save and validation, then with_maintenance.sh's switch back).
    after = [st for t, st in seen if t >= end]
    assert any(st["state"] == "finishing" for st in after), [(st["state"], st.get("progress")) for st in after]
    assert not any(st["state"] in ("unknown", "overdue") for t, st in seen if first + 1.0 < t < end), [
        (round(t, 1), st["state"]) for t, st in seen if first + 1.0 < t < end]
    # with_maintenance.sh returns once the services answer again: the ETA's true target is `wall`.
    report.append("t, state, step, ETA shown, true to the last step, true until the services were back:")
    report += [f"{t:.1f} {st['state']} {(st.get('progress') or {}).get('step')} "  # type: ignore[union-attr]
               f"{(st.get('eta') or {}).get('seconds')} {end - t:.1f} {wall - t:.1f}" for t, st in seen]  # type: ignore[union-attr]
    _write_artifact("field-diffusers-lora.txt", "\n".join(report))
    s.assert_live()  # the services back, the shim stopped
