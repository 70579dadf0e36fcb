#!/usr/bin/env python3
"""Record one replay case: the trainer's merged stdout+stderr as timed chunks, plus its own true progress.

    python tests/data/capture/record.py NAME [options] -- CMD...

writes ``tests/data/replay/NAME/`` (``--out`` to change the parent):

- ``chunks.jsonl``: one ``{"t": seconds, "data": text}`` per ``os.read`` of the pipe that holds the
  trainer's stdout and stderr together (what ``python train.py 2>&1 | tee -a train.log`` stores), in order;
- ``truth.jsonl``: the trainer's own events (see ``truthlog.py``) plus an ``exit`` event per process;
- ``meta.json``: the recorder's arguments merged over what the trainer reported through ``CAPTURE_META``.

Both files use one clock: ``t = time.time() - T0``, T0 being the capture start, passed to the trainer as
``CAPTURE_T0``. The trainer runs with stdin on /dev/null, in its own session, with ``PYTHONUNBUFFERED=1``
(unless ``--buffered``), ``TERM=xterm-256color``, and without the other variables that change how tqdm or
Rich draw (COLUMNS, LINES, FORCE_COLOR, NO_COLOR, TTY_INTERACTIVE, TTY_COMPATIBLE, ...) unless given again
with ``--env``.

Bytes are decoded as UTF-8 incrementally, so each ``data`` is valid text: a character split across two
reads goes with the second chunk, and the first gets ``"carried": N``, the N bytes it held back.

``--kill-at-step N`` sends SIGKILL to the trainer once truth shows step N, then runs CMD again with
``--restart-arg`` arguments appended; its output goes on in the same chunk stream and truth file.
``--pre`` runs a shell command first (not recorded: e.g. making the checkpoint a resumed run loads).
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "replay"
# Variables that change how the bars are drawn: the capture must not inherit them from the shell it runs in.
DRAWING_VARS = (
    "COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "TTY_INTERACTIVE",
    "TTY_COMPATIBLE", "TERM", "COLORTERM", "JUPYTER_COLUMNS", "JUPYTER_LINES", "PYTHONUNBUFFERED",
    "TQDM_DISABLE", "TQDM_MININTERVAL", "TQDM_MINITERS", "TQDM_NCOLS", "COLAB_GPU",
)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        sys.exit("usage: record.py NAME [options] -- CMD...")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(prog="record.py")
    parser.add_argument("name")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--buffered", action="store_true", help="do not set PYTHONUNBUFFERED=1")
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="extra environment")
    parser.add_argument("--pre", help="shell command run before the capture, output not recorded")
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--restart-arg", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=600.0, help="kill the trainer after this many seconds")
    parser.add_argument("--trainer")
    parser.add_argument("--description")
    parser.add_argument("--kind", choices=["steady", "rate-change", "pause", "restart"])
    parser.add_argument("--bar-label")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--epochs-printed", choices=["true", "false"])
    parser.add_argument("--total-steps", type=int)
    parser.add_argument("--command", help="the re-capture command for meta.json (default: this one)")
    args = parser.parse_args(argv[:cut])
    cmd = argv[cut + 1 :]
    if not cmd:
        sys.exit("record.py: no command after --")
    return args, cmd


def child_env(args: argparse.Namespace, t0: float, truth: Path, meta: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DRAWING_VARS and not k.startswith("CAPTURE_")}
    if not args.buffered:
        env["PYTHONUNBUFFERED"] = "1"
    env["TERM"] = "xterm-256color"  # as in the terminal session a `| tee` runs from (tqdm ignores it)
    env["CAPTURE_T0"] = repr(t0)
    env["CAPTURE_TRUTH"] = str(truth)
    env["CAPTURE_META"] = str(meta)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    return env


class TruthWatch:
    """Follows truth.jsonl to see the latest step (for --kill-at-step)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""
        self.step = -1

    def poll(self) -> int:
        try:
            with self.path.open(encoding="utf-8") as handle:
                handle.seek(self.offset)
                text = handle.read()
                self.offset = handle.tell()
        except OSError:
            return self.step
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            record = json.loads(line)
            if "step" in record:
                self.step = record["step"]
        return self.step


def run_once(cmd: list[str], env: dict[str, str], t0: float, chunks, args, kill_at: int | None, truth: Path):
    """Run ``cmd`` with stdout+stderr on one pipe; append its chunks; return (status, signal name or None)."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, env=env, start_new_session=True
    )
    os.close(write_fd)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    watch = TruthWatch(truth) if kill_at is not None else None
    killed = None
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], 0.05)
            if ready:
                data = os.read(read_fd, 65536)
                stamp = time.time() - t0
                if not data:
                    break
                text = decoder.decode(data)
                record = {"t": round(stamp, 3), "data": text}
                held = len(decoder.getstate()[0])
                if held:
                    record["carried"] = held
                if text or held:
                    chunks.write(json.dumps(record, ensure_ascii=False) + "\n")
            if killed is None and watch is not None and watch.poll() >= kill_at:
                os.kill(proc.pid, signal.SIGKILL)
                killed = "SIGKILL"
            if killed is None and time.monotonic() > deadline:
                os.kill(proc.pid, signal.SIGKILL)
                killed = "SIGKILL (timeout)"
        tail = decoder.decode(b"", final=True)
        if tail:
            chunks.write(json.dumps({"t": round(time.time() - t0, 3), "data": tail}, ensure_ascii=False) + "\n")
    finally:
        os.close(read_fd)
    returncode = proc.wait()
    status = 128 - returncode if returncode < 0 else returncode  # as a shell reports it: 137 for SIGKILL
    return status, killed


def main(argv: list[str]) -> int:
    args, cmd = parse_args(argv)
    case = args.out / args.name
    case.mkdir(parents=True, exist_ok=True)
    truth = case / "truth.jsonl"
    chunks_path = case / "chunks.jsonl"
    truth.unlink(missing_ok=True)
    meta_fd, meta_tmp = tempfile.mkstemp(prefix="capture-meta-", suffix=".json")
    os.close(meta_fd)
    Path(meta_tmp).write_text("{}", encoding="utf-8")

    if args.pre:
        print(f"record.py: pre: {args.pre}", file=sys.stderr)
        subprocess.run(args.pre, shell=True, check=True, stdin=subprocess.DEVNULL, stdout=sys.stderr)

    t0 = time.time()
    env = child_env(args, t0, truth, Path(meta_tmp))
    runs = []
    with chunks_path.open("w", encoding="utf-8") as chunks:
        status, killed = run_once(cmd, env, t0, chunks, args, args.kill_at_step, truth)
        runs.append((status, killed))
        with truth.open("a", encoding="utf-8") as handle:
            event = {"t": round(time.time() - t0, 3), "event": "exit", "status": status}
            if killed:
                event["signal"] = killed
            handle.write(json.dumps(event) + "\n")
        if args.kill_at_step is not None and killed == "SIGKILL":
            status, killed = run_once(cmd + args.restart_arg, env, t0, chunks, args, None, truth)
            runs.append((status, killed))
            with truth.open("a", encoding="utf-8") as handle:
                event = {"t": round(time.time() - t0, 3), "event": "exit", "status": status}
                if killed:
                    event["signal"] = killed
                handle.write(json.dumps(event) + "\n")
    duration = time.time() - t0

    reported = json.loads(Path(meta_tmp).read_text(encoding="utf-8") or "{}")
    os.unlink(meta_tmp)
    meta = {
        "name": args.name,
        "trainer": None,
        "description": "",
        "kind": "steady",
        "bar_label": None,
        "epochs": None,
        "epochs_printed": False,
        "total_steps": None,
        "command": None,
        "versions": {},
    }
    meta.update(reported)
    given = {
        "trainer": args.trainer,
        "description": args.description,
        "kind": args.kind,
        "bar_label": args.bar_label,
        "epochs": args.epochs,
        "epochs_printed": None if args.epochs_printed is None else args.epochs_printed == "true",
        "total_steps": args.total_steps,
    }
    meta.update({k: v for k, v in given.items() if v is not None})
    python = os.path.relpath(sys.executable)
    python = sys.executable if python.startswith("..") else python
    meta["command"] = args.command or f"{python} tests/data/capture/record.py " + shlex.join(argv)
    meta["env"] = {
        "PYTHONUNBUFFERED": None if args.buffered else "1",
        "TERM": "xterm-256color",
        **{item.partition("=")[0]: item.partition("=")[2] for item in args.env},
    }
    sizes = chunks_path.stat().st_size
    with chunks_path.open(encoding="utf-8") as handle:
        count = sum(1 for _ in handle)
    meta["capture"] = {
        "duration_s": round(duration, 3),
        "chunks": count,
        "chunks_bytes": sizes,
        "exit_status": [s for s, _ in runs],
    }
    (case / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"record.py: {args.name}: {duration:.1f} s, {count} chunks, {sizes} bytes, exit {runs}", file=sys.stderr)
    return 0 if all(s == 0 or k == "SIGKILL" for s, k in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
