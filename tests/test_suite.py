"""The test suite itself: it collects without Playwright, and no test module imports another."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, clean_env


def test_the_suite_collects_without_playwright(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked" / "playwright"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('playwright is not installed (blocked by this test)')\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        env=clean_env({"PYTHONPATH": str(tmp_path / "blocked")}), cwd=ROOT, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # "930 tests collected", or "930/931 tests collected (1 deselected)": addopts leaves out the vllm marker
    collected = int(done.stdout.strip().splitlines()[-1].split()[0].split("/")[0])
    assert collected > 500, done.stdout[-500:]


def test_no_test_module_imports_another() -> None:
    """Shared code lives in the tests/support/ package; fixtures in conftest.py."""
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        others = sorted(name for name in imported if name.startswith("tests.test_"))
        assert others == [], f"{path.relative_to(ROOT)} imports {others}"


# ---- the time rule: no fixed sleep followed by an assertion -----------------------------------------------

# Modules of helpers (waiting loops live there, with deadlines); test modules are checked.
HELPERS = {"conftest.py", *(f"support/{name}" for name in (
    "__init__.py", "scripts.py", "loadgen.py", "page.py", "standin.py", "fleet_trainer.py", "nginx.py", "caddy.py",
    "haproxy.py", "traefik.py"))}
SLEEP_OK = "# sleep-ok:"  # on the sleep's line or the line above: why this sleep cannot make the test fail


def _is_sleep(node: ast.stmt) -> bool:
    """`time.sleep(...)`, and Playwright's `page.wait_for_timeout(...)` (a fixed sleep in the browser's time)."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    func = ast.unparse(node.value.func)
    return func in ("time.sleep", "sleep") or func.endswith(".wait_for_timeout")


def sleeps_followed_by_asserts(source: str) -> list[int]:
    """Lines of `time.sleep(...)` statements followed (within the next three statements of the same block,
    before another sleep) by an assertion, with no `# sleep-ok: <reason>` comment on or above the sleep."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if not isinstance(block, list):
                continue
            for index, statement in enumerate(block):
                if not _is_sleep(statement):
                    continue
                following = []
                for later in block[index + 1:index + 4]:
                    if _is_sleep(later):
                        break
                    following.append(later)
                if not any(isinstance(inner, ast.Assert) for later in following for inner in ast.walk(later)):
                    continue
                here = lines[statement.lineno - 1]
                above = lines[statement.lineno - 2] if statement.lineno > 1 else ""
                reason = (here.split(SLEEP_OK, 1)[1] if SLEEP_OK in here else
                          above.split(SLEEP_OK, 1)[1] if SLEEP_OK in above.strip() else "")
                if not reason.strip():
                    found.append(statement.lineno)
    return sorted(found)


def _is_count_threshold(node: ast.AST) -> bool:
    """`assert <a count: len(...), sum(...), .count(...), counts[...]> > N` (or >=) asking for more than one:
    how much happened, which on a busy machine is less (`> 0`, that it happened at all, is not a count)."""
    if not isinstance(node, ast.Assert):
        return False
    for compare in ast.walk(node.test):
        if not (isinstance(compare, ast.Compare) and len(compare.ops) == 1
                and isinstance(compare.comparators[0], ast.Constant)):
            continue
        op, value = compare.ops[0], compare.comparators[0].value
        more_than_one = (isinstance(op, ast.Gt) and value >= 1) or (isinstance(op, ast.GtE) and value >= 2)
        if isinstance(value, (int, float)) and more_than_one:
            left = ast.unparse(compare.left)
            if any(word in left for word in ("sum(", "len(", ".count(", "counts")):
                return True
    return False


def sleeps_then_count_thresholds(source: str) -> list[int]:
    """Lines of count thresholds (`_is_count_threshold`) anywhere after a fixed sleep in the same test: a
    loop paced by sleeps, then a minimum on what it counted (the sleeps_followed_by_asserts rule only sees
    the next three statements). A sleep inside a loop that asserts a deadline is a wait, not a pace; a
    sleep with a `# sleep-ok:` reason is justified."""
    lines = source.splitlines()
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        waits = {id(inner) for loop in ast.walk(function) if isinstance(loop, ast.While)
                 and any(isinstance(node, ast.Assert) for node in ast.walk(loop)) for inner in ast.walk(loop)}
        paced = [node.lineno for node in ast.walk(function)
                 if isinstance(node, ast.stmt) and _is_sleep(node) and id(node) not in waits
                 and SLEEP_OK not in lines[node.lineno - 1] and SLEEP_OK not in lines[node.lineno - 2]]
        if paced:
            found += [node.lineno for node in ast.walk(function)
                      if _is_count_threshold(node) and getattr(node, "lineno", 0) > min(paced)]
    return sorted(set(found))


def test_the_rule_finds_a_count_after_a_paced_loop() -> None:
    paced = ("import time\ndef test_x():\n    seen = []\n    for _ in range(9):\n        time.sleep(0.3)\n"
             "        seen.append(1)\n    assert sum(seen) > 5\n")
    waited = ("import time\ndef test_x():\n    while len(seen) < 5:\n        assert time.monotonic() < deadline\n"
              "        time.sleep(0.05)\n    assert len(seen) >= 5\n")
    assert sleeps_then_count_thresholds(paced) == [7]
    assert sleeps_then_count_thresholds(waited) == []


def test_no_test_counts_what_a_paced_loop_did() -> None:
    tests = ROOT / "tests"
    found = {name: lines for path in sorted(tests.rglob("*.py"))
             if (name := path.relative_to(tests).as_posix()) not in HELPERS and not name.startswith("data/")
             and (lines := sleeps_then_count_thresholds(path.read_text()))}
    assert found == {}, f"a count threshold after fixed sleeps (file: lines); wait for the count instead: {found}"


def test_the_rule_finds_a_sleep_then_a_count() -> None:
    bad = "import time\ndef test_x():\n    n = []\n    time.sleep(1)\n    assert len(n) == 3\n"
    justified = ("import time\ndef test_x():\n    n = []\n    time.sleep(1)  # sleep-ok: a quiet period\n"
                 "    assert len(n) == 0\n")
    polled = ("import time\ndef test_x():\n    while True:\n        if ready():\n            break\n"
              "        assert time.monotonic() < deadline\n        time.sleep(0.05)\n")
    assert sleeps_followed_by_asserts(bad) == [4]
    browser = ("def test_x(page):\n    first = seconds(page)\n    page.wait_for_timeout(1300)\n"
               "    assert seconds(page) < first\n")
    assert sleeps_followed_by_asserts(browser) == [3]
    assert sleeps_followed_by_asserts(justified) == []
    assert sleeps_followed_by_asserts(polled) == []


def test_no_test_sleeps_then_asserts() -> None:
    """Tests wait for conditions (tests/support/__init__.py: wait_until, wait_listening, ...) with generous deadlines;
    a fixed sleep followed by an assertion measures the machine. The exceptions say why in a comment."""
    tests = ROOT / "tests"
    found = {name: lines for path in sorted(tests.rglob("*.py"))
             if (name := path.relative_to(tests).as_posix()) not in HELPERS and not name.startswith("data/")
             and (lines := sleeps_followed_by_asserts(path.read_text()))}
    assert found == {}, f"time.sleep(...) then assert (file: lines); wait for the condition instead: {found}"


# ---- markers: quick tests start no process ----------------------------------------------------------------


def _run_probe(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_quick_probe.py"
    probe.write_text("import socket\nimport subprocess\n\nimport pytest\n\npytestmark = pytest.mark.quick\n\n\n" + body)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", str(ROOT / "pyproject.toml"), str(probe)],
        env=clean_env({"PYTHONPATH": str(ROOT)}), cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False,
    )


def test_a_quick_test_that_starts_a_process_fails(tmp_path: Path) -> None:
    done = _run_probe(tmp_path, (
        "def test_spawns():\n    subprocess.run(['true'], check=False)\n\n\n"
        "def test_swallows():\n    try:\n        subprocess.run(['true'], check=False)\n    except Exception:\n"
        "        pass\n\n\n"
        "def test_connects():\n    with socket.socket() as sock:\n        sock.connect(('127.0.0.1', 9))\n\n\n"
        "def test_computes():\n    assert sum(range(4)) == 6\n"
    ))
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "3 failed, 1 passed" in out, out
    assert out.count("is marked quick but started a process or opened a connection") >= 3, out


def test_every_test_has_one_kind() -> None:
    """Every collected test is `quick` or `e2e` (never both), and proxies/browser/trainers tests are e2e."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m",
         "(quick and e2e) or (quick and (proxies or browser or trainers)) or not (quick or e2e)", "tests"],
        env=clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 5, done.stdout[-2000:]  # 5: no test selected
