"""Is the GPU free before training starts? `maintenance-shim gpu --wait S --below MIB` (with_maintenance.sh
runs it once the services are stopped or asleep): nvidia-smi's memory in use per GPU, polled until every
GPU is at or below MIB, and on the deadline the processes that still hold memory. Without nvidia-smi (no
NVIDIA GPU, or no driver) it says in one line that it cannot check. It never fails the run: exit 0 when
free or unknown, 1 when memory is still held (the caller warns and trains anyway).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

GPU_QUERY = ["--query-gpu=index,uuid,memory.used,memory.total", "--format=csv,noheader,nounits"]
APPS_QUERY = ["--query-compute-apps=gpu_uuid,pid,process_name,used_memory", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class Gpu:
    index: str
    uuid: str
    used_mib: int
    total_mib: int


@dataclass(frozen=True)
class Holder:
    gpu_uuid: str
    pid: int
    name: str
    used_mib: int | None  # "[N/A]" on some drivers (e.g. without permission)


def _rows(text: str, columns: int) -> list[list[str]]:
    rows = [[cell.strip() for cell in line.split(",")] for line in text.splitlines() if line.strip()]
    bad = [row for row in rows if len(row) < columns]
    if bad:
        raise ValueError(f"unexpected nvidia-smi line {', '.join(bad[0])!r}")
    return rows


def parse_gpus(text: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=index,uuid,memory.used,memory.total --format=csv,noheader,nounits`."""
    return [Gpu(row[0], row[1], int(row[2]), int(row[3])) for row in _rows(text, 4)]


def parse_holders(text: str) -> list[Holder]:
    """`nvidia-smi --query-compute-apps=gpu_uuid,pid,process_name,used_memory --format=csv,noheader,nounits`;
    a process name holding a comma stays whole."""
    out = []
    for row in _rows(text, 4):
        used = row[-1]
        out.append(Holder(row[0], int(row[1]), ",".join(row[2:-1]), int(used) if used.isdigit() else None))
    return out


def describe(gpus: list[Gpu], holders: list[Holder], below: int) -> str:
    """The GPUs above `below` MiB and the processes on them, for one line."""
    busy = [gpu for gpu in gpus if gpu.used_mib > below]
    parts = []
    for gpu in busy:
        procs = [holder for holder in holders if holder.gpu_uuid == gpu.uuid]
        held = "; ".join(f"PID {p.pid} {p.name} {'?' if p.used_mib is None else p.used_mib} MiB" for p in procs)
        parts.append(f"GPU {gpu.index}: {gpu.used_mib} of {gpu.total_mib} MiB in use"
                     + (f" ({held})" if held else " (no compute process listed: another container or graphics?)"))
    return "; ".join(parts)


Run = Callable[[list[str]], str]


def _nvidia_smi(binary: str) -> Run:
    def run(args: list[str]) -> str:
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise OSError(lines[-1] if lines else f"exit {done.returncode}")
        return done.stdout

    return run


def wait_free(seconds: float, below: int, run: Run | None = None, every: float = 1.0) -> int:
    """Poll until every GPU uses at most `below` MiB or `seconds` pass; one line on stderr either way."""
    if run is None:
        binary = shutil.which("nvidia-smi")
        if binary is None:
            _say("cannot check that the GPU is free: no nvidia-smi here (no NVIDIA GPU or driver)")
            return 0
        run = _nvidia_smi(binary)
    start = time.monotonic()
    while True:
        try:
            gpus = parse_gpus(run(GPU_QUERY))
        except (OSError, ValueError, subprocess.TimeoutExpired) as error:
            _say(f"cannot check that the GPU is free: nvidia-smi failed: {error}")
            return 0
        if not gpus:
            _say("cannot check that the GPU is free: nvidia-smi lists no GPU")
            return 0
        if all(gpu.used_mib <= below for gpu in gpus):
            used = ", ".join(f"GPU {gpu.index} {gpu.used_mib} MiB" for gpu in gpus)
            _say(f"the GPU is free ({used} in use; at most {below} MiB counts as free) "
                 f"after {time.monotonic() - start:.1f}s")
            return 0
        if time.monotonic() - start >= seconds:
            try:
                holders = parse_holders(run(APPS_QUERY))
            except (OSError, ValueError, subprocess.TimeoutExpired):
                holders = []
            _say(f"the GPU is not free after {seconds:g}s: {describe(gpus, holders, below)}")
            return 1
        time.sleep(every)


def _say(message: str) -> None:
    print(f"maintenance-shim: {message}", file=sys.stderr, flush=True)
