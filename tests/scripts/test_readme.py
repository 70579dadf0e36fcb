"""The README is executable: its walkthrough ("A training run behind nginx, step by step") runs as written.

The `sh walkthrough` blocks of README.md are extracted and run, with only the substitutions listed in
SUBSTITUTIONS (and in the README), as root on a fresh copy of the repository: `run.sh --install` makes its
own `.venv`. Everything after the install runs in private namespaces (mount, PID, network): /etc is a
copy-on-write overlay whose /etc/hosts sends the example's names to 127.0.0.1, /run, /var/log/nginx and
/var/lib/nginx are empty tmpfs, and the network is a loopback of its own, so the README's nginx really
listens on port 80 and the stand-in services on 7860 and 7861, and nothing on the machine is touched. The
namespace ends with its first process, which takes every process the walkthrough started with it.

During the training (a paced stand-in trainer drawing a real tqdm bar, tests/support/readme_trainer.py) the test
asks nginx, as a user would, and checks: 503s with Retry-After and a live ETA, and, with no run history, an
ETA within 20 % of the true time until both services answer again at 25, 50 and 75 % of the steps. After
it: both services 200 through nginx, and the trainer's exit status passed through.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.readme_walkthrough import README, walkthrough
from tests.support.scripts import STANDIN, _write_artifact, assert_no_stray_lines

TRAINER = Path(__file__).resolve().parents[1] / "support" / "readme_trainer.py"
NAMES = ("studio.example.com", "video-api.example.com")
PORTS = {"studio": 7860, "video": 7861}




def _hook(service: str, action: str) -> str:
    name = "studio" if service == "studio" else "video"
    py, standin = shlex.quote(sys.executable), shlex.quote(str(STANDIN))
    if action == "stop":
        return f"{py} {standin} stop --pidfile /run/standin/{name}.pid"
    return (f"{py} {standin} start --pidfile /run/standin/{name}.pid --log /run/standin/{name}.log -- "
            f"--name {name} --port {PORTS[name]}")


# The only changes made to the README's text; each must occur in it (else the README has drifted).
SUBSTITUTIONS: list[tuple[str, str]] = [
    ("sudo ", ""),  # the test runs as root: "as root, drop sudo"
    ("systemctl stop studio", _hook("studio", "stop")),
    ("systemctl start studio", _hook("studio", "start")),
    ("systemctl stop video-api", _hook("video-api", "stop")),
    ("systemctl start video-api", _hook("video-api", "start")),
    ("python3 train.py", f"{shlex.quote(sys.executable)} train.py"),  # the test's Python has tqdm
]


def substituted(block: str) -> str:
    for old, new in SUBSTITUTIONS:
        block = block.replace(old, new)
    return block


def test_the_walkthrough_is_marked_and_every_substitution_is_used() -> None:
    text = README.read_text()
    blocks = walkthrough(text)
    assert len(blocks) >= 4, "the README's walkthrough blocks are not marked ```sh walkthrough"
    assert "run.sh --install" in blocks[0], "the first walkthrough block installs the shim"
    assert "with_maintenance.sh" in blocks[-1], "the last walkthrough block runs the training"
    joined = "".join(blocks)
    for old, _ in SUBSTITUTIONS:
        assert old in joined, f"the substitution {old!r} no longer matches the README"
    # The README lists what the test changes, by name.
    assert "SUBSTITUTIONS" in text and "tests/scripts/test_readme.py" in text


def _tail(text: str, size: int = 4000) -> str:
    """The end of the walkthrough's output, without pip's notes about this machine's package index."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("WARNING: Location"))[-size:]


@dataclass
class Sample:
    t: float
    step: int
    total: int
    eta: float | None


def _fresh_clone(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and new, never .venv or caches)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def _runner(tmp: Path, clone: Path, blocks: list[str]) -> tuple[Path, Path]:
    """outer.sh (private mounts and PIDs; the install, which needs the network) and inner.sh (the rest, on a
    network of its own)."""
    ovl = tmp / "overlay"
    ovl.mkdir()
    log = tmp / "walkthrough.log"
    steps = []
    for index, block in enumerate(blocks[1:], 2):
        last = index == len(blocks)
        body = substituted(block)
        steps.append(f"echo '==== walkthrough block {index}'\n"
                     + (f"( set -e\n{body})\necho $? >{tmp}/walkthrough.rc\n" if last else
                        f"( set -e\n{body}) || {{ echo $? >{tmp}/walkthrough.rc; echo block {index} failed; "
                        f"exec sleep 600; }}\n"))
    inner = tmp / "inner.sh"
    inner.write_text(f"""set -u
exec >>{log} 2>&1
ip link set lo up
mkdir -p /run/standin
{_hook('studio', 'start')}
{_hook('video-api', 'start')}
for port in 7860 7861; do
  for _ in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:$port/health && break; sleep 0.05; done
done
touch {tmp}/netns-ready
cd {clone}
{''.join(steps)}
exec sleep 600
""")
    outer = tmp / "outer.sh"
    outer.write_text(f"""set -u
exec >>{log} 2>&1
mount -t tmpfs tmpfs {ovl}
mkdir -p {ovl}/upper {ovl}/work
mount -t overlay overlay -o lowerdir=/etc,upperdir={ovl}/upper,workdir={ovl}/work /etc
printf '127.0.0.1 {' '.join(NAMES)}\\n' >>/etc/hosts
mount -t tmpfs tmpfs /run
mkdir -p /var/log/nginx /var/lib/nginx
mount -t tmpfs tmpfs /var/log/nginx
mount -t tmpfs tmpfs /var/lib/nginx
cd {clone}
echo '==== walkthrough block 1'
( set -e
{substituted(blocks[0])}) || {{ echo $? >{tmp}/walkthrough.rc; echo block 1 failed; exec sleep 600; }}
exec unshare --net bash {inner}
""")
    return outer, log


class Namespace:
    """The walkthrough's namespaces, reached with nsenter through its first process."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = 0

    def find(self) -> None:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + 10
        while not self.pid:
            text = children.read_text().split() if children.exists() else []
            if text:
                self.pid = int(text[0])
            else:
                assert time.monotonic() < deadline, "the walkthrough's namespace did not start"
                time.sleep(0.05)

    def curl(self, url: str, *args: str) -> tuple[int, dict[str, str], str]:
        """A request from inside, as a user on the box: status, headers, body."""
        done = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-n", "-m", "--", "curl", "-s", "-i", "--max-time", "5", *args, url],
            capture_output=True, timeout=20, check=False,
        )
        head, _, body = done.stdout.decode(errors="replace").replace("\r\n", "\n").partition("\n\n")
        lines = head.splitlines()
        if not lines:
            return 0, {}, ""
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return status, headers, body

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # unshare; its child is the namespace's init: all go with it
            self.proc.wait(10)
        if self.pid:
            deadline = time.monotonic() + 10
            while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    break
                time.sleep(0.05)


def _status(ns: Namespace) -> Sample | None:
    code, _, body = ns.curl("http://video-api.example.com/_maintenance/status")
    if code != 200:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None  # the live service's own answer
    progress, eta = data.get("progress") or {}, data.get("eta") or {}
    if not progress.get("total"):
        return None
    return Sample(time.monotonic(), int(progress["step"]), int(progress["total"]),
                  float(eta["seconds"]) if eta.get("known") else None)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the walkthrough runs as written (apt's nginx on port 80) "
                    "in private mount/PID/network namespaces; scripts/test.sh and CI run as root")
def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    for tool in ("unshare", "nsenter", "nginx", "curl", "ip"):
        assert shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists(), f"{tool} is needed (CI installs it)"
    blocks = walkthrough(README.read_text())
    clone = _fresh_clone(tmp_path / "clone")
    shutil.copy(TRAINER, clone / "train.py")
    outer, log = _runner(tmp_path, clone, blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAINT_", "PYTEST", "VIRTUAL_ENV"))}
    proc = subprocess.Popen(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
                             "bash", str(outer)], env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    ns = Namespace(proc)
    rc_file = tmp_path / "walkthrough.rc"
    samples: list[Sample] = []
    answers: list[tuple[int, dict[str, str], str]] = []
    back_at: float | None = None
    try:
        ns.find()
        deadline = time.monotonic() + 600  # a fresh venv on a busy machine, then about 80 s of training
        while not (tmp_path / "netns-ready").exists():
            assert not rc_file.exists(), f"the walkthrough failed:\n{_tail(log.read_text())}"
            assert time.monotonic() < deadline and proc.poll() is None, _tail(log.read_text())
            time.sleep(0.2)
        time.sleep(0.5)  # sleep-ok: a moment for the shim to come up; the loop below waits for conditions
        while not rc_file.exists():
            assert time.monotonic() < deadline, f"the walkthrough did not finish:\n{_tail(log.read_text())}"
            sample = _status(ns)
            if sample is not None:
                samples.append(sample)
                if len(answers) < 3 and sample.eta is not None:
                    answers.append(ns.curl("http://video-api.example.com/api/generate", "-H", "Accept-Language: de"))
            elif samples and back_at is None:
                studio = ns.curl("http://studio.example.com/")[0]
                video = ns.curl("http://video-api.example.com/")[0]
                if studio == 200 and video == 200:
                    back_at = time.monotonic()
            time.sleep(0.4)
        output = log.read_text()
        rc = int(rc_file.read_text())
        assert rc == 0, f"the walkthrough failed (exit {rc}):\n{_tail(output)}"
        # After it: both services through nginx, as the README's step 2 checked them before.
        for name in NAMES:
            code, _, body = ns.curl(f"http://{name}/")
            assert code == 200 and body.startswith(("studio", "video")), (name, code, body[:200])
        if back_at is None:
            back_at = time.monotonic()
    finally:
        ns.end()
    assert_no_stray_lines(output)
    assert "exited with status 0" in output and "maintenance over" in output, _tail(output, 3000)
    assert "is NOT reachable" not in output, _tail(output, 3000)
    assert "configuration OK" in output

    # During it: the shim's 503 through nginx, with Retry-After, no caching and the live ETA in German.
    assert answers, f"no ETA was ever shown; samples: {samples[-5:]}\n{_tail(output, 3000)}"
    for code, headers, body in answers:
        assert code == 503 and int(headers["retry-after"]) >= 1 and headers["cache-control"] == "no-store"
        assert json.loads(body)["maintenance"]["eta"]["known"] is True and headers["content-language"] == "de"

    # First run, no history: the ETA against the true time until both services answered again.
    report, failures = [], []
    for fraction in (0.25, 0.5, 0.75):
        sample = next((s for s in samples if s.step >= fraction * s.total and s.eta is not None), None)
        assert sample is not None, f"no ETA at {fraction:.0%}: {samples}"
        truth = back_at - sample.t
        error = (sample.eta - truth) / truth
        report.append(f"{fraction:.0%}: step {sample.step}/{sample.total}, ETA {sample.eta:.0f} s, "
                      f"true {truth:.1f} s, error {error:+.1%}")
        if abs(error) > 0.2:
            failures.append(report[-1])
    _write_artifact("readme-walkthrough-eta.txt", "\n".join(report))
    assert not failures, report
