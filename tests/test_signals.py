"""Signals with one meaning each, to either process (issue 28, item 12): real shims, real signals.

TERM, INT and QUIT stop both processes gracefully (exit 0); HUP reloads the settings without a gap in the
answers; USR1 and USR2 are ignored; a server killed by any other signal is forked again.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from maintenance_shim.supervise import serving_pid
from tests.support import Shim, ShimFactory, request


def _server(shim: Shim) -> int:
    deadline = time.monotonic() + 10
    while (pid := serving_pid(shim.proc.pid)) == shim.proc.pid:
        assert time.monotonic() < deadline, shim.output()
        time.sleep(0.05)
    return pid


def _message(shim: Shim) -> str:
    status, _, body = request(shim, "GET", "/x?format=json")
    assert status == 503
    message: str = json.loads(body)["maintenance"]["message"]
    return message


def _wait(condition: object, shim: Shim, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}:\n{shim.output()}"
        time.sleep(0.1)


@pytest.mark.parametrize("target", ["supervisor", "server"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT], ids=["TERM", "INT", "QUIT"])
def test_term_int_quit_to_either_process_stop_both(start_shim: ShimFactory, target: str, signum: int) -> None:
    shim = start_shim()
    server = _server(shim)
    pid = shim.proc.pid if target == "supervisor" else server
    os.kill(pid, signum)
    assert shim.proc.wait(20) == 0, shim.output()
    _wait(lambda: not Path(f"/proc/{server}").exists() or "Z" in Path(f"/proc/{server}/stat").read_text(),
          shim, "the server outlived the stop")
    assert "Traceback" not in shim.output()


def test_usr1_usr2_are_ignored_and_other_deaths_restart(start_shim: ShimFactory) -> None:
    """Today SIGQUIT/SIGUSR1/SIGUSR2 killed the supervisor and left the server unsupervised."""
    shim = start_shim()
    server = _server(shim)
    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        os.kill(shim.proc.pid, signum)
        os.kill(server, signum)
    for _ in range(5):
        assert request(shim, "GET", "/x")[0] == 503
    assert shim.proc.poll() is None and serving_pid(shim.proc.pid) == server
    assert "SIGUSR1 has no meaning for the shim; ignored" in shim.output()
    os.kill(server, signal.SIGABRT)  # any other death: restarted on the same sockets
    _wait(lambda: serving_pid(shim.proc.pid) not in (server, shim.proc.pid), shim, "no new server")
    assert request(shim, "GET", "/x")[0] == 503
    assert "killed by SIGABRT; starting a new one" in shim.output()
    shim.proc.send_signal(signal.SIGTERM)
    assert shim.proc.wait(20) == 0


def test_hup_reloads_the_settings_without_a_gap(start_shim: ShimFactory, tmp_path: Path) -> None:
    """HUP to the supervisor or to the server: the env file is read again and a server built from it takes
    over while the old one finishes; bad settings are refused and the running ones stay."""
    env_file = tmp_path / "maintenance.env"  # ./maintenance.env of the shim's working directory
    env_file.write_text("MAINT_MESSAGE=first\n")
    shim = start_shim(cwd=tmp_path)
    assert _message(shim) == "first"
    codes: list[int | str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                codes.append(request(shim, "GET", "/x")[0])
            except OSError as error:
                codes.append(type(error).__name__)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        for text, target in (("second", "supervisor"), ("third", "server")):
            server = _server(shim)
            env_file.write_text(f"MAINT_MESSAGE={text}\n")
            os.kill(shim.proc.pid if target == "supervisor" else server, signal.SIGHUP)
            _wait(lambda text=text: _message(shim) == text, shim, f"not reloaded by a HUP to the {target}")
            assert shim.proc.poll() is None
        env_file.write_text("MAINT_STALL_SECONDS=inf\n")
        os.kill(shim.proc.pid, signal.SIGHUP)
        _wait(lambda: "the settings were not reloaded (MAINT_STALL_SECONDS" in shim.output(), shim, "no refusal")
        assert _message(shim) == "third"
    finally:
        stop.set()
        thread.join(15)
    assert codes and set(codes) == {503}, set(codes)
    shim.proc.send_signal(signal.SIGTERM)
    assert shim.proc.wait(20) == 0, shim.output()
