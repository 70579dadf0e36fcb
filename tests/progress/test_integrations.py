"""The trainer integrations, live: real transformers and Lightning runs on CPU drive a running shim.

Each training runs in its own process (tiny randomly initialised models, random tensors) while this
process polls the shim's ``/_maintenance/status`` and the progress file every 0.1 s / 0.05 s; the runs are
independent and go a few side by side (the ``runs`` fixture). Evaluations
and saves are made to last a second or more (a sleep after each evaluation batch, a sleep next to the real
save) so a poller that reads the file every 0.5 s and a status recomputed once a second see them; asleep,
not computing, so the rest of the suite keeps the CPU.
"""

from __future__ import annotations

import json
import logging
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from maintenance_shim.integrations import ProgressSink, PushReporter, push_endpoint
from tests.support import ROOT, Shim, ShimFactory, build_wheel, clean_env, free_port, request

TOKEN = "integration-test-token-0123456789"
TRAINING_TIMEOUT = 150.0  # seconds: a run takes 5 to 25 s (busy machine); this only bounds a hung one

# ---------------------------------------------------------------------------------------------------------
# Training scripts (run in a subprocess; each prints one JSON line starting with RESULT at the end)

HF_STEPS, HF_EVAL_EVERY, HF_SAVE_EVERY, HF_SAVE_SLEEP = 300, 100, 150, 1.5
HF_EVAL_SAMPLES, HF_EVAL_BATCH_SLEEP = 64, 0.2  # 8 batches of 8: 1.6 s of evaluation, asleep

HF_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments
    from maintenance_shim.integrations.transformers import MaintenanceCallback

    steps, eval_every, save_every, save_sleep, eval_samples = (float(a) for a in sys.argv[1:6])
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                        bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, n):
            self.ids = torch.randint(0, 64, (int(n), 16))
        def __len__(self):
            return len(self.ids)
        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    class SlowSave(TrainerCallback):
        # Runs before MaintenanceCallback.on_save: the checkpoint write, made long enough to be seen.
        def on_save(self, args, state, control, **kwargs):
            time.sleep(save_sleep)

    class PacedSteps(TrainerCallback):
        # A step floor (a real model's step time), so that steps are seen between the phase changes; and
        # an evaluation batch's, so that the evaluation is seen.
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(float(os.environ.get("STEP_SLEEP", "0")))

        def on_prediction_step(self, args, state, control, **kwargs):
            time.sleep(float(os.environ.get("EVAL_BATCH_SLEEP", "0")))

    class CrashInEvaluation(TrainerCallback):
        def on_prediction_step(self, args, state, control, **kwargs):
            time.sleep(0.5)  # the file shows evaluating meanwhile
            raise RuntimeError("out of memory, say")

    callback = MaintenanceCallback()
    extra = [CrashInEvaluation()] if os.environ.get("CRASH_IN_EVALUATION") else []
    args = TrainingArguments(
        output_dir=os.environ["OUT_DIR"], max_steps=int(steps), per_device_train_batch_size=8,
        per_device_eval_batch_size=8, eval_strategy="steps" if eval_every else "no",
        eval_steps=int(eval_every) or None, save_strategy="steps" if save_every else "no",
        save_steps=int(save_every) or 500, logging_steps=50, report_to=[], use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(512),
                      eval_dataset=Tokens(eval_samples) if eval_every else None,
                      callbacks=[PacedSteps(), SlowSave(), callback, *extra])
    started = time.monotonic()
    trainer.train()
    print("RESULT " + json.dumps({"seconds": time.monotonic() - started, "global_step": trainer.state.global_step,
                                  "max_steps": trainer.state.max_steps, "targets": len(callback.sink.targets)}))
    """
)

PL_EPOCHS, PL_BATCHES, PL_VAL_BATCHES, PL_VAL_SLEEP, PL_SAVE_SLEEP = 3, 60, 15, 0.1, 0.5

PL_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import torch
    mode, bar_kind, package = sys.argv[1:4]
    epochs, batches, val_batches, val_sleep, save_sleep = (float(a) for a in sys.argv[4:9])
    if package == "lightning":
        import lightning.pytorch as L
        from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
        from maintenance_shim.integrations.lightning import MaintenanceCallback
    else:
        import pytorch_lightning as L
        from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
        from maintenance_shim.integrations.pytorch_lightning import MaintenanceCallback

    class Regression(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
        def training_step(self, batch, batch_idx):
            x, y = batch
            time.sleep(0.03)  # about 2 s of training per epoch: a paced write or two within each
            return torch.nn.functional.mse_loss(self.net(x), y)
        def validation_step(self, batch, batch_idx):
            x, y = batch
            time.sleep(val_sleep)  # a validation long enough to be seen
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))
        def on_save_checkpoint(self, checkpoint):
            time.sleep(save_sleep)  # runs after the callbacks' on_save_checkpoint, before the write
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    def loader(n_batches):
        data = torch.utils.data.TensorDataset(torch.randn(int(n_batches) * 32, 16), torch.randn(int(n_batches) * 32, 1))
        return torch.utils.data.DataLoader(data, batch_size=32)

    torch.manual_seed(0)
    callbacks = [RichProgressBar() if bar_kind == "rich" else TQDMProgressBar(refresh_rate=5)]
    if mode == "explicit":
        callbacks.append(MaintenanceCallback(os.environ["EXPLICIT_PROGRESS_FILE"]))
    trainer = L.Trainer(max_epochs=int(epochs), accelerator="cpu", devices=1, callbacks=callbacks, logger=False,
                        default_root_dir=os.environ["OUT_DIR"], enable_model_summary=False, num_sanity_val_steps=2)
    ours = [cb for cb in trainer.callbacks if isinstance(cb, MaintenanceCallback)]
    started = time.monotonic()
    trainer.fit(Regression(), loader(batches), loader(val_batches))
    print("RESULT " + json.dumps({
        "seconds": time.monotonic() - started, "global_step": trainer.global_step,
        "estimated_stepping_batches": trainer.estimated_stepping_batches,
        "callbacks": [type(cb).__module__ + "." + type(cb).__name__ for cb in trainer.callbacks],
        "ours": [{"auto": cb.auto, "disabled": cb.disabled} for cb in ours],
    }))
    """
)

# ---------------------------------------------------------------------------------------------------------
# Running a training while watching the shim and the progress file


@dataclass
class Run:
    """What one training run showed: status samples from the shim, distinct progress file contents."""

    result: dict[str, Any]
    output: str
    statuses: list[dict[str, Any]] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)

    def progress(self) -> list[dict[str, Any]]:
        return [s["progress"] for s in self.statuses if s.get("progress")]

    def phases_seen(self) -> dict[str, set[int]]:
        """Status samples: phase -> the steps it was seen at."""
        seen: dict[str, set[int]] = {}
        for progress in self.progress():
            seen.setdefault(str(progress.get("phase")), set()).add(progress["step"])
        return seen

    def file_phases(self) -> dict[str, set[int]]:
        """Progress file contents: phase -> the steps it was written with."""
        seen: dict[str, set[int]] = {}
        for document in self.documents:
            seen.setdefault(str(document.get("phase")), set()).add(document["step"])
        return seen


def status(shim: Shim) -> dict[str, Any]:
    code, _, body = request(shim, "GET", "/_maintenance/status")
    assert code == 200
    result: dict[str, Any] = json.loads(body)
    return result


def read_document(path: Path) -> dict[str, Any] | None:
    try:
        document: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    return document


def assert_has(document: dict[str, Any] | None, **expected: object) -> None:
    assert document is not None and {k: document.get(k) for k in expected} == expected, document


def train(
    script: str,
    args: list[object],
    tmp_path: Path,
    *,
    env: dict[str, str],
    shim: Shim | None = None,
    watch: Path | None = None,
    returncode: int = 0,
) -> Run:
    """Run ``script`` to its end (bounded), polling ``shim`` every 0.1 s and ``watch`` every 0.05 s."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    script_path = tmp_path / "train.py"
    script_path.write_text(script, encoding="utf-8")
    log = tmp_path / "train.log"
    out_dir = tmp_path / "out"
    # One torch thread: on 2 busy cores OpenMP's spinning threads make a tiny model 5 to 50 times slower.
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    full_env = clean_env({"OUT_DIR": str(out_dir), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                          **threads, **env})
    statuses: list[dict[str, Any]] = []
    documents: list[dict[str, Any]] = []
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, str(script_path), *map(str, args)],
            cwd=tmp_path, env=full_env, stdout=handle, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + TRAINING_TIMEOUT
        next_status = 0.0
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if watch is not None:
                    document = read_document(watch)
                    if document is not None and (not documents or documents[-1] != document):
                        documents.append(document)
                if shim is not None and time.monotonic() >= next_status:
                    next_status = time.monotonic() + 0.1
                    statuses.append(status(shim))
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == returncode, output[-3000:]
    if watch is not None:
        document = read_document(watch)
        if document is not None and (not documents or documents[-1] != document):
            documents.append(document)
    if shim is not None:
        time.sleep(1.1)  # one status recomputation after the last write
        statuses.append(status(shim))
    results = [line.removeprefix("RESULT ") for line in output.splitlines() if line.startswith("RESULT ")]
    assert results or returncode != 0, output[-3000:]
    return Run(json.loads(results[-1]) if results else {}, output, statuses, documents)


def assert_steps_advance(run: Run, total: int, landmarks: set[int]) -> None:
    """Steps only grow, are seen between the ``landmarks`` (phase changes), and end at ``total``."""
    progress = run.progress()
    steps = [p["step"] for p in progress]
    assert steps == sorted(steps), steps
    assert len(set(steps) - landmarks - {0}) >= 2, sorted(set(steps))  # two, on a loaded 2-core machine
    assert {p["total"] for p in progress} == {total}, progress
    assert steps[-1] == total and run.statuses[-1]["state"] == "finishing", run.statuses[-1]


# ---------------------------------------------------------------------------------------------------------
# Import hygiene and the push reporter (no framework needed)


@pytest.mark.e2e
def test_importing_the_package_imports_no_framework() -> None:
    code = textwrap.dedent(
        """
        import sys
        import maintenance_shim, maintenance_shim.integrations, maintenance_shim.reporter, maintenance_shim.cli
        heavy = sorted({name.split(".")[0] for name in sys.modules} & {"torch", "transformers", "lightning",
                        "pytorch_lightning", "accelerate", "numpy"})
        print(heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/_maintenance/progress"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/_maintenance/progress"),
        ("https://shim.example/_maintenance/progress", "https://shim.example/_maintenance/progress"),
        ("http://proxy.example/gpu1", "http://proxy.example/gpu1/_maintenance/progress"),
        ("unix:/run/maintenance-shim/admin.sock", "unix:/run/maintenance-shim/admin.sock"),
    ],
)
def test_push_endpoint(url: str, endpoint: str) -> None:
    assert push_endpoint(url) == endpoint


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "file:///etc/passwd", "http://", "unix:admin.sock"])
def test_push_endpoint_refuses_non_http(url: str) -> None:
    with pytest.raises(ValueError):
        push_endpoint(url)


def test_push_reporter_reaches_a_real_shim(start_shim: ShimFactory) -> None:
    shim = start_shim(env={"MAINT_ADMIN_TOKEN": TOKEN})
    reporter = PushReporter(shim.admin_url, TOKEN, total=50, min_interval=0)
    for step in (5, 10, 20):
        reporter.update(step)
    reporter.close(timeout=5)
    assert reporter.failures == 0 and reporter.sent >= 1
    deadline = time.monotonic() + 5
    while (progress := status(shim)["progress"]) is None or progress["step"] != 20:
        assert time.monotonic() < deadline, progress
        time.sleep(0.1)
    assert progress["total"] == 50


@pytest.mark.e2e
def test_push_reporter_never_blocks_on_a_silent_or_dead_shim(caplog: pytest.LogCaptureFixture) -> None:
    # A socket that accepts connections (the kernel's backlog) and never answers: requests time out.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    dead_port = free_port()
    try:
        with caplog.at_level(logging.WARNING, logger="maintenance_shim.integrations"):
            for url in (f"http://127.0.0.1:{silent.getsockname()[1]}", f"http://127.0.0.1:{dead_port}"):
                reporter = PushReporter(url, TOKEN, total=1000, min_interval=0, timeout=0.5)
                slowest = 0.0
                for step in range(1, 201):
                    started = time.perf_counter()
                    reporter.update(step, phase="evaluating" if step % 20 == 0 else "training")
                    slowest = max(slowest, time.perf_counter() - started)
                assert slowest < 0.05, slowest  # the training loop never waits for the network
                started = time.monotonic()
                reporter.close(timeout=1.0)
                assert time.monotonic() - started < 1.5
                assert reporter.failures >= 1 and reporter.sent == 0
        warnings = [r for r in caplog.records if "cannot push progress" in r.getMessage()]
        assert len(warnings) == 2, [r.getMessage() for r in warnings]  # once per reporter
    finally:
        silent.close()


def test_sink_targets_come_from_arguments_or_the_environment(tmp_path: Path) -> None:
    env = {"MAINT_PROGRESS_FILE": str(tmp_path / "env.json"), "MAINT_PUSH_URL": "http://127.0.0.1:9",
           "MAINT_ADMIN_TOKEN": TOKEN}
    assert [type(t).__name__ for t in ProgressSink("t", environ=env).targets] == ["Reporter", "PushReporter"]
    # An explicit target replaces the environment's, it is not added to it.
    explicit = ProgressSink("t", path=tmp_path / "own.json", environ=env)
    assert [type(t).__name__ for t in explicit.targets] == ["Reporter"]
    explicit.report(3, 10, "evaluating")
    assert_has(read_document(tmp_path / "own.json"), step=3, total=10, phase="evaluating")
    explicit.abort()  # what an exception (or the exit hook) does: a dead run must not look paused
    assert_has(read_document(tmp_path / "own.json"), step=3, total=10, phase="training")
    assert not (tmp_path / "env.json").exists()
    assert not ProgressSink("t", environ={}).enabled


def test_sink_survives_pickling(start_shim: ShimFactory, tmp_path: Path) -> None:
    # Lightning's ddp_spawn (and notebooks) pickle the Trainer with its callbacks into each process.
    shim = start_shim(env={"MAINT_ADMIN_TOKEN": TOKEN})
    sink = ProgressSink(
        "t", path=tmp_path / "progress.json", url=shim.admin_url, token=TOKEN, min_interval=0, environ={}
    )
    sink.report(1, 10, "training")  # a push thread runs, an exit hook is registered
    copy = pickle.loads(pickle.dumps(sink))
    copy.report(7, 10, "saving")
    copy.abort()
    assert_has(read_document(tmp_path / "progress.json"), step=7, total=10, phase="training")
    assert status(shim)["progress"]["step"] == 7
    sink.finish(7, 10)


def test_sink_never_raises_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "progress.json"
    with caplog.at_level(logging.WARNING, logger="maintenance_shim.integrations"):
        sink = ProgressSink("t", path=path, min_interval=0, environ={})
        sink.report(5, 10, "training")
        sink.report(12, 10, "training")  # an estimated total fell short: no total rather than past 100 %
        assert_has(read_document(path), step=12, total=None)
        sink.report(13, 10, "training")
        sink.finish(13, 10)  # a finished run ends at step == total
        assert_has(read_document(path), step=13, total=13, phase="training")
        broken = ProgressSink("t", path=tmp_path / "missing-dir" / "progress.json", min_interval=0, environ={})
        for step in range(3):
            broken.report(step, 10, "training")
        idle = ProgressSink("t", environ={"MAINT_PUSH_URL": "http://127.0.0.1:9"})  # no token
        for step in range(3):
            idle.report(step, 10, "training")
        nothing = ProgressSink("t", environ={})
        for step in range(3):
            nothing.report(step, 10, "training")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("past the total" in m for m in messages) == 1, messages
    assert sum("cannot write progress file" in m for m in messages) == 1, messages
    assert sum("no token" in m for m in messages) == 1, messages
    assert sum("no progress target" in m for m in messages) == 1, messages


# ---------------------------------------------------------------------------------------------------------
# The runs, side by side
#
# Every training below (and the Lightning import check) is independent: its own process, directory and shim,
# and no test changes what a run showed. So the runs that the selected tests use (@uses) all start when a
# test first asks for one, RUNS_AT_ONCE at a time in the order of JOBS, and each test takes its run's result.
# A run paces itself with sleeps (steps, evaluations, saves) on one torch thread, so three side by side on
# 2 cores take about half the time of one after another. A busier machine only makes steps and phases last
# longer, never shorter: the tests check which steps and phases were seen, never how fast.

RUNS_AT_ONCE = 3
Job = Callable[[ShimFactory, pytest.TempPathFactory], Any]
FunctionT = TypeVar("FunctionT", bound=Callable[..., None])


def uses(*names: str) -> Callable[[FunctionT], FunctionT]:
    """The runs (names in JOBS) a test reads: the `runs` fixture starts those of the selected tests."""

    def mark(test: FunctionT) -> FunctionT:
        test.runs = names  # type: ignore[attr-defined]
        return test

    return mark


class Runs:
    """The module's runs: ``runs[name]`` waits for one (re-raising its error), first starting it if no
    selected test said it uses it."""

    def __init__(self, pool: ThreadPoolExecutor, launch: ShimFactory, tmp_path_factory: pytest.TempPathFactory,
                 names: set[str]) -> None:
        self.pool, self.launch, self.tmp_path_factory = pool, launch, tmp_path_factory
        self.futures: dict[str, Future[Any]] = {}
        for name in JOBS:  # their order: the longest first
            if name in names:
                self.start(name)

    def start(self, name: str) -> None:
        self.futures[name] = self.pool.submit(JOBS[name], self.launch, self.tmp_path_factory)

    def __getitem__(self, name: str) -> Any:
        if name not in self.futures:
            self.start(name)
        return self.futures[name].result()


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, module_shim_launcher: ShimFactory,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    used = {name for item in request.session.items if getattr(item, "module", None) is request.module
            for name in getattr(getattr(item, "function", None), "runs", ())}
    pool = ThreadPoolExecutor(max_workers=RUNS_AT_ONCE, thread_name_prefix="training-run")
    try:
        yield Runs(pool, module_shim_launcher, tmp_path_factory, used)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # each run is bounded (TRAINING_TIMEOUT), then reaped


# ---------------------------------------------------------------------------------------------------------
# transformers


def hf_job(launch: ShimFactory, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One Trainer run (300 steps, 3 evaluations, 2 saves) followed by a shim through the progress file."""
    tmp_path = tmp_path_factory.mktemp("hf")
    progress_file = tmp_path / "progress.json"
    shim = launch(env={"MAINT_PROGRESS_FILE": str(progress_file), "MAINT_RESUME_SECONDS": "30"})
    run = train(
        HF_SCRIPT,
        [HF_STEPS, HF_EVAL_EVERY, HF_SAVE_EVERY, HF_SAVE_SLEEP, HF_EVAL_SAMPLES],
        tmp_path,
        env={"MAINT_PROGRESS_FILE": str(progress_file), "STEP_SLEEP": "0.015",
             "EVAL_BATCH_SLEEP": str(HF_EVAL_BATCH_SLEEP)},
        shim=shim,
        watch=progress_file,
    )
    shim.stop()  # what it said is in the run; the tests ask it nothing more
    return run


@pytest.fixture(scope="module")
def hf_run(runs: Runs) -> Run:
    """hf_job's run, for the two tests below."""
    run: Run = runs["hf"]
    return run


@uses("hf")
def test_transformers_callback_writes_step_total_and_phases(hf_run: Run) -> None:
    assert hf_run.result["global_step"] == HF_STEPS and hf_run.result["targets"] == 1
    documents = hf_run.documents
    assert {d["total"] for d in documents} == {HF_STEPS}
    steps = [d["step"] for d in documents]
    # Paced writes between the phase changes: 2 or more (an idle machine here trains the 300 steps in about
    # 3 s between its evaluations and saves, and gave 2: 51 and 253).
    assert steps == sorted(steps) and len(set(steps) - {0, 100, 150, 200, 300}) >= 2, steps
    phases = hf_run.file_phases()
    # Written at once when the step that triggers them ends, and only then.
    assert phases["evaluating"] == {100, 200, 300}, phases
    assert phases["saving"] == {150, 300}, phases
    assert set(phases) == {"training", "evaluating", "saving"}
    assert_has(documents[-1], step=HF_STEPS, total=HF_STEPS, phase="training")
    # Paced: about one write a second, plus the phase changes.
    assert len(documents) <= hf_run.result["seconds"] * 1.5 + 20, len(documents)


@uses("hf")
def test_transformers_trainer_drives_the_status(hf_run: Run) -> None:
    assert_steps_advance(hf_run, HF_STEPS, {100, 150, 200, 300})
    seen = hf_run.phases_seen()
    assert seen.get("evaluating", set()) and seen["evaluating"] <= {100, 200, 300}, seen
    assert seen.get("saving", set()) and seen["saving"] <= {150, 300}, seen
    assert seen.get("training"), seen


# Here, not with the import checks at the top: by now the `runs` fixture has started the trainings, and the
# wheel builds while they run (it asserts nothing about time).
@pytest.mark.e2e
def test_the_wheel_ships_the_integrations_and_their_entry_points(tmp_path: Path) -> None:
    # scripts/test.sh and users install the wheel (not the editable tree): it must carry both.
    built = build_wheel(ROOT, tmp_path)
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(next(tmp_path.glob("maintenance_shim-*.whl"))) as wheel:
        names = set(wheel.namelist())
        entry_points = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    modules = {"__init__", "_core", "_lightning", "lightning", "pytorch_lightning", "transformers"}
    assert {f"maintenance_shim/integrations/{m}.py" for m in modules} <= names, sorted(names)
    assert "[lightning.pytorch.callbacks_factory]\n" in entry_points
    assert "[pytorch_lightning.callbacks_factory]\n" in entry_points
    assert "maintenance_shim = maintenance_shim.integrations.lightning:callbacks_factory" in entry_points
    assert "maintenance_shim = maintenance_shim.integrations.pytorch_lightning:callbacks_factory" in entry_points


def hf_push_job(launch: ShimFactory, tmp_path_factory: pytest.TempPathFactory) -> Run:
    shim = launch(env={"MAINT_ADMIN_TOKEN": TOKEN, "MAINT_RESUME_SECONDS": "30"})
    run = train(
        HF_SCRIPT,
        [300, 150, 0, 0, HF_EVAL_SAMPLES],
        tmp_path_factory.mktemp("hf-push"),
        env={"MAINT_PUSH_URL": shim.admin_url, "MAINT_ADMIN_TOKEN": TOKEN, "STEP_SLEEP": "0.015",
             "EVAL_BATCH_SLEEP": str(HF_EVAL_BATCH_SLEEP)},
        shim=shim,
    )
    shim.stop()
    return run


@uses("hf-push")
def test_transformers_callback_pushes_to_the_shim(runs: Runs) -> None:
    run: Run = runs["hf-push"]
    assert run.result["targets"] == 1 and "cannot push" not in run.output
    assert_steps_advance(run, 300, {150, 300})
    seen = run.phases_seen()
    assert seen.get("evaluating", set()) and seen["evaluating"] <= {150, 300}, seen


def hf_dead_shim_job(launch: ShimFactory, tmp_path_factory: pytest.TempPathFactory) -> Run:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"MAINT_PUSH_URL": dead, "MAINT_ADMIN_TOKEN": TOKEN}
    return train(HF_SCRIPT, [40, 0, 0, 0, 8], tmp_path_factory.mktemp("hf-dead"), env=env)


def hf_no_target_job(launch: ShimFactory, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return train(HF_SCRIPT, [40, 0, 0, 0, 8], tmp_path_factory.mktemp("hf-none"), env={})


@uses("hf-dead-shim", "hf-no-target")
def test_transformers_callback_survives_a_dead_shim_and_no_target(runs: Runs) -> None:
    run: Run = runs["hf-dead-shim"]
    assert run.result["global_step"] == 40
    assert run.output.count("cannot push progress") == 1, run.output[-3000:]
    run = runs["hf-no-target"]
    assert run.result["global_step"] == 40 and run.result["targets"] == 0
    assert run.output.count("no progress target") == 1, run.output[-3000:]


def hf_crash_job(launch: ShimFactory, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    tmp_path = tmp_path_factory.mktemp("hf-crash")
    progress_file = tmp_path / "progress.json"
    env = {"MAINT_PROGRESS_FILE": str(progress_file), "CRASH_IN_EVALUATION": "1"}
    return train(HF_SCRIPT, [40, 20, 0, 0, 64], tmp_path, env=env, watch=progress_file, returncode=1), progress_file


@uses("hf-crash")
def test_transformers_crash_during_evaluation_leaves_phase_training(runs: Runs) -> None:
    # Left at "evaluating", the shim would take the dead run for a long evaluation and never call it stalled.
    run, progress_file = runs["hf-crash"]
    assert "out of memory, say" in run.output
    assert run.file_phases().get("evaluating") == {20}, run.documents
    assert_has(read_document(progress_file), step=20, total=40, phase="training")


# ---------------------------------------------------------------------------------------------------------
# Lightning

PL_TOTAL = PL_EPOCHS * PL_BATCHES
EPOCH_ENDS = {PL_BATCHES * (epoch + 1) for epoch in range(PL_EPOCHS)}


def pl_job(mode: str, bar: str) -> Job:
    """A 3-epoch Lightning fit with validation; the callback passed by the script or attached by the entry point.

    Both get MAINT_PROGRESS_FILE (as with_maintenance.sh exports it). The explicit callback writes its own
    path (the shim follows that one), so the entry point's callback must stay idle and never write the other.
    """

    def job(launch: ShimFactory, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Run, Path]:
        tmp_path = tmp_path_factory.mktemp(f"pl-{mode}")
        env_file, explicit_file = tmp_path / "progress.json", tmp_path / "explicit.json"
        followed = explicit_file if mode == "explicit" else env_file
        shim = launch(env={"MAINT_PROGRESS_FILE": str(followed), "MAINT_RESUME_SECONDS": "30"})
        run = train(
            PL_SCRIPT,
            [mode, bar, "lightning", PL_EPOCHS, PL_BATCHES, PL_VAL_BATCHES, PL_VAL_SLEEP, PL_SAVE_SLEEP],
            tmp_path,
            env={"MAINT_PROGRESS_FILE": str(env_file), "EXPLICIT_PROGRESS_FILE": str(explicit_file)},
            shim=shim,
            watch=followed,
        )
        shim.stop()
        return mode, run, env_file

    return job


@pytest.fixture(scope="module", params=[("explicit", "rich"), ("auto", "tqdm")], ids=["explicit-rich", "auto-tqdm"])
def pl_run(request: pytest.FixtureRequest, runs: Runs) -> tuple[str, Run, Path]:
    """pl_job's run for this mode and bar (explicit callback with Rich's bar, or the entry point's with TQDM)."""
    mode, bar = request.param
    result: tuple[str, Run, Path] = runs[f"pl-{mode}-{bar}"]
    return result


@uses("pl-explicit-rich", "pl-auto-tqdm")  # pl_run's, by its parameter
def test_lightning_callback_is_attached_once(pl_run: tuple[str, Run, Path]) -> None:
    mode, run, env_file = pl_run
    ours = [name for name in run.result["callbacks"] if name.endswith(".MaintenanceCallback")]
    if mode == "auto":
        assert ours == ["maintenance_shim.integrations.lightning.MaintenanceCallback"]
        assert run.result["ours"] == [{"auto": True, "disabled": False}]
        assert "Adding 1 callbacks from entry point 'maintenance_shim'" in run.output
    else:
        # The script's own, and the entry point's, which steps aside.
        assert run.result["ours"] == [{"auto": False, "disabled": False}, {"auto": True, "disabled": True}]
        assert not env_file.exists()
    assert ("RichProgressBar" in " ".join(run.result["callbacks"])) == (mode == "explicit")


@uses("pl-explicit-rich", "pl-auto-tqdm")
def test_lightning_callback_writes_global_step_total_and_phases(pl_run: tuple[str, Run, Path]) -> None:
    _, run, _ = pl_run
    assert run.result["global_step"] == PL_TOTAL == run.result["estimated_stepping_batches"]
    documents = run.documents
    assert {d["total"] for d in documents} == {PL_TOTAL}
    steps = [d["step"] for d in documents]
    assert steps == sorted(steps) and max(steps) == PL_TOTAL
    phases = run.file_phases()
    # Validation after each epoch (never the sanity check at step 0), then the checkpoint it triggers.
    assert phases["evaluating"] == EPOCH_ENDS, phases
    assert phases["saving"] == EPOCH_ENDS, phases
    assert_has(documents[-1], step=PL_TOTAL, total=PL_TOTAL, phase="training")


@uses("pl-explicit-rich", "pl-auto-tqdm")
def test_lightning_trainer_drives_the_status(pl_run: tuple[str, Run, Path]) -> None:
    _, run, _ = pl_run
    assert_steps_advance(run, PL_TOTAL, EPOCH_ENDS)
    steps = {p["step"] for p in run.progress()}
    assert max(steps) > PL_BATCHES  # the global step goes on across epochs, not per epoch
    assert any(PL_BATCHES < step < 2 * PL_BATCHES for step in steps), sorted(steps)
    seen = run.phases_seen()
    assert seen.get("evaluating", set()) and seen["evaluating"] <= EPOCH_ENDS, seen


def pytorch_lightning_job(launch: ShimFactory, tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp_path = tmp_path_factory.mktemp("pytorch-lightning")
    progress_file = tmp_path / "progress.json"
    return train(
        PL_SCRIPT,
        ["auto", "tqdm", "pytorch_lightning", 1, 30, 5, 0.1, 0],
        tmp_path,
        env={"MAINT_PROGRESS_FILE": str(progress_file)},
        watch=progress_file,
    )


@uses("pytorch-lightning")
def test_pytorch_lightning_entry_point(runs: Runs) -> None:
    run: Run = runs["pytorch-lightning"]
    assert [n for n in run.result["callbacks"] if n.endswith("MaintenanceCallback")] == [
        "maintenance_shim.integrations.pytorch_lightning.MaintenanceCallback"
    ]
    assert run.documents[-1]["step"] == run.documents[-1]["total"] == 30
    assert run.file_phases()["evaluating"] == {30}


NO_TARGET_CODE = textwrap.dedent(
    """
    import json, os
    import lightning.pytorch as L
    import pytorch_lightning as PL
    names = lambda t: [type(cb).__name__ for cb in t.callbacks]
    before = [names(L.Trainer(logger=False)), names(PL.Trainer(logger=False))]
    os.environ["MAINT_PUSH_URL"] = "http://127.0.0.1:9"
    after = [names(L.Trainer(logger=False)), names(PL.Trainer(logger=False))]
    print(json.dumps([before, after]))
    """
)


def lightning_no_target_job(
    launch: ShimFactory, tmp_path_factory: pytest.TempPathFactory
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", NO_TARGET_CODE], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path_factory.mktemp("lightning-no-target"), env=clean_env())


@uses("lightning-no-target")
def test_lightning_entry_point_adds_nothing_without_a_target(runs: Runs) -> None:
    result: subprocess.CompletedProcess[str] = runs["lightning-no-target"]
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = json.loads(result.stdout.strip().splitlines()[-1])
    assert all("MaintenanceCallback" not in names for names in before), before
    assert all(names.count("MaintenanceCallback") == 1 for names in after), after


# Every run of the module; the `runs` fixture starts them in this order: the longest first.
JOBS: dict[str, Job] = {
    "hf": hf_job,
    "hf-push": hf_push_job,
    "pl-explicit-rich": pl_job("explicit", "rich"),
    "pl-auto-tqdm": pl_job("auto", "tqdm"),
    "pytorch-lightning": pytorch_lightning_job,
    "hf-dead-shim": hf_dead_shim_job,
    "hf-no-target": hf_no_target_job,
    "hf-crash": hf_crash_job,
    "lightning-no-target": lightning_no_target_job,
}


@pytest.mark.e2e
def test_threads_left_behind_are_daemons() -> None:
    # The push thread must never keep a finished training process alive.
    reporter = PushReporter(f"http://127.0.0.1:{free_port()}", TOKEN, total=10, min_interval=0, timeout=0.2)
    reporter.update(1)
    threads = [t for t in threading.enumerate() if t.name == "maintenance-shim-push"]
    assert threads and all(t.daemon for t in threads)
    reporter.close(timeout=1)
