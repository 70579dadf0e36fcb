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
    """Shared code lives in tests/support.py and the *_harness.py modules; fixtures in conftest.py."""
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        others = sorted(name for name in imported if name.startswith("tests.test_"))
        assert others == [], f"{path.name} imports {others}"
