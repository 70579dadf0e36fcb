"""One-file plug-ins, for real: a new proxy added to a copy of the tree needs only its own files (its
settings module and its bash adapter), and then `check`, `env --shell`, the scripts' adapter loading and
status all know it; a new progress source needs only its own two (its settings module and its follower),
and then `check` names it, a bad value is refused naming its variable, and the shim follows it; a new
response format is its one module, and a real shim serves it."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, ShimLauncher, clean_env, request, start_server, wait_until

EXAMPLE_PY = '''"""A throwaway proxy for the plug-in test."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from . import Proxy, ProxySettings


class ExampleSettings(ProxySettings):
    example_api: str = Field("http://127.0.0.1:9999", description="the example proxy's API")


class Example(Proxy):
    name = "example"
    title = "Example"
    settings = ExampleSettings
    service_keys: ClassVar[dict[str, str]] = {"EXAMPLE_POOL": "the example proxy's pool"}

    @classmethod
    def check_service(cls, prefix: str, keys: dict[str, str], switch: str) -> list[str]:
        if switch == cls.name and not keys["EXAMPLE_POOL"]:
            return [f"{prefix}EXAMPLE_POOL is not set (needed by MAINT_SWITCH=example)"]
        return []


PROXY = Example
'''
EXAMPLE_SH = """# shellcheck shell=bash
proxy_describe() { printf 'example'; }
proxy_check() { :; }
proxy_where() { printf 'pool %s at %s' "$(svc "$1" EXAMPLE_POOL)" "$MAINT_EXAMPLE_API"; }
proxy_point() { :; }
proxy_test() { :; }
proxy_reload() { :; }
"""


SOURCE_SETTINGS_PY = '''"""A throwaway progress source for the plug-in test: a file holding `STEP/TOTAL`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from . import Source, SourceSettings


class CounterSettings(SourceSettings):
    example_counter: Path | None = Field(None, description="a file holding `STEP/TOTAL`")

    @field_validator("example_counter")
    @classmethod
    def _check(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


class Counter(Source):
    name = "example_counter"
    settings = CounterSettings
    label = "example counter"


SOURCE = Counter
'''
SOURCE_FOLLOWER_PY = '''"""A throwaway progress source for the plug-in test: a file holding `STEP/TOTAL`, read whole."""

from __future__ import annotations

import time
from pathlib import Path

from ...files import read_regular
from ..tracker import EXACT, ProgressUpdate
from ._base import Context, Follower, _WarnOnce


class CounterFollower(Follower):
    name = "example_counter"
    tag = "counter"
    priority = EXACT

    def __init__(self, path: Path, context: Context, node: str | None) -> None:
        self.path, self.on_progress, self.node, self.poll_interval = path, context.on_progress, node, 0.2
        self._warn = _WarnOnce(str(path))

    @classmethod
    def from_settings(cls, path: Path, node: str | None, context: Context) -> CounterFollower:
        return cls(path, context, node)

    def _poll(self) -> None:
        step, _, total = read_regular(self.path, 64).decode().strip().partition("/")
        self._emit(ProgressUpdate(time.monotonic(), int(step), int(total), self.tag, node=self.node,
                                  priority=self.priority))


SOURCE = CounterFollower
'''
EXAMPLE_FORMAT = '''"""A throwaway response format for the plug-in test."""

from __future__ import annotations

from typing import Any

from . import ResponseFormat


class Example(ResponseFormat):
    name = "example"
    media_types = ("application/x-example",)
    query_values = ("example", "ex")
    content_type = b"application/x-example; charset=utf-8"

    @classmethod
    def render(cls, renderer: Any, snapshot: Any, service: Any, locale: str, texts: Any, maintenance: Any) -> bytes:
        return f"example|{maintenance['locale']}|{texts.detail}\\n".encode()


FORMAT = Example
'''


def _copy_tree(tmp_path: Path) -> Path:
    """The tracked files of this checkout, copied; `maintenance_shim` importable from the copy's app/."""
    tree = tmp_path / "tree"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    site = tmp_path / "site"
    site.mkdir()
    (site / "maintenance_shim").symlink_to(tree / "app")
    return tree


def _shim(tree: Path, tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = clean_env({"PYTHONPATH": str(tmp_path / "site"), **env})
    return subprocess.run(
        [sys.executable, "-m", "maintenance_shim", *args], cwd=tmp_path, env=full, capture_output=True, text=True
    )


def test_a_new_proxy_is_its_own_two_files(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    settings = {"MAINT_SWITCH": "example", "MAINT_SERVICES": "studio", "MAINT_SERVICE_studio_EXAMPLE_POOL": "gpu"}

    before = _shim(tree, tmp_path, settings, "check")
    assert before.returncode == 2 and "MAINT_SWITCH" in before.stderr + before.stdout

    (tree / "app/settings/proxies/example.py").write_text(EXAMPLE_PY)
    (tree / "scripts/proxy/example.sh").write_text(EXAMPLE_SH)

    checked = _shim(tree, tmp_path, settings, "check")
    assert checked.returncode == 0, checked.stderr
    missing = _shim(tree, tmp_path, {**settings, "MAINT_SERVICE_studio_EXAMPLE_POOL": ""}, "check")
    assert missing.returncode == 2 and "MAINT_SERVICE_studio_EXAMPLE_POOL is not set" in missing.stderr

    shell = _shim(tree, tmp_path, {**settings, "MAINT_EXAMPLE_API": "http://10.0.0.1:1"}, "env", "--shell")
    assert shell.returncode == 0, shell.stderr
    assert "export MAINT_EXAMPLE_API=http://10.0.0.1:1" in shell.stdout
    assert "export MAINT_SERVICE_studio_EXAMPLE_POOL=gpu" in shell.stdout

    # The scripts load the adapter by MAINT_SWITCH and status shows its line through proxy_status.
    script = (
        f'set -Eeuo pipefail; source "{tree}/scripts/lib.sh"; eval "$1"; STATE_DIR="{tmp_path}/state"; '
        'proxy_load; proxy_status studio'
    )
    shown = subprocess.run(
        ["bash", "-c", script, "lib", shell.stdout], cwd=tmp_path, capture_output=True, text=True,
        env=clean_env({"PYTHONPATH": str(tmp_path / "site")}),
    )
    assert shown.returncode == 0, shown.stderr
    assert "studio:   example pool gpu at http://10.0.0.1:1; live side not saved" in shown.stdout

    # And that was all: the copy differs from the tracked tree by the two new files alone.
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split())
    files = {str(path.relative_to(tree)) for path in tree.rglob("*") if path.is_file()}
    files = {name for name in files if "__pycache__" not in name}
    assert files - tracked == {"app/settings/proxies/example.py", "scripts/proxy/example.sh"}
    for name in tracked & files:
        assert (tree / name).read_bytes() == (ROOT / name).read_bytes(), name


def test_a_new_progress_source_is_its_own_two_files(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    counter = tmp_path / "counter.txt"
    counter.write_text("7/10\n")
    settings = {"MAINT_EXAMPLE_COUNTER": str(counter), "MAINT_ADMIN_LISTEN": "off"}

    before = _shim(tree, tmp_path, settings, "check")
    assert before.returncode == 0 and "example counter" not in before.stdout  # an unknown MAINT_ name: ignored

    (tree / "app/settings/sources/example_counter.py").write_text(SOURCE_SETTINGS_PY)
    (tree / "app/progress/sources/example_counter.py").write_text(SOURCE_FOLLOWER_PY)

    checked = _shim(tree, tmp_path, settings, "check")
    assert checked.returncode == 0, checked.stderr
    assert "progress from example counter;" in checked.stdout, checked.stdout
    bad = _shim(tree, tmp_path, {**settings, "MAINT_EXAMPLE_COUNTER": "counter.txt"}, "check")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maintenance-shim: MAINT_EXAMPLE_COUNTER: must be an absolute path")
    shell = _shim(tree, tmp_path, settings, "env", "--shell")  # handed to the scripts as the others are
    assert f"export MAINT_EXAMPLE_COUNTER={counter}" in shell.stdout.splitlines(), shell.stdout

    # The shim follows it: its progress is the service's.
    launcher = ShimLauncher(tmp_path)
    try:
        shim = launcher(env={"PYTHONPATH": str(tmp_path / "site"), "MAINT_EXAMPLE_COUNTER": str(counter)},
                        cwd=tmp_path)

        def progress() -> dict[str, object] | None:
            status, _, body = request(shim, "GET", "/_maintenance/status")
            found: dict[str, object] | None = json.loads(body).get("progress") if status == 200 else None
            return found

        assert wait_until(lambda: (progress() or {}).get("step") == 7, what="step 7 from the new source")
        counter.write_text("8/10\n")
        assert wait_until(lambda: (progress() or {}).get("step") == 8, what="step 8 from the new source")
        assert (progress() or {}).get("total") == 10
    finally:
        launcher.close()

    # And that was all: the copy differs from the tracked tree by the two new files alone.
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split())
    files = {str(path.relative_to(tree)) for path in tree.rglob("*") if path.is_file()}
    files = {name for name in files if "__pycache__" not in name}
    assert files - tracked == {"app/settings/sources/example_counter.py", "app/progress/sources/example_counter.py"}
    for name in tracked & files:
        assert (tree / name).read_bytes() == (ROOT / name).read_bytes(), name


def _imports(path: Path) -> set[str]:
    """Every module an app/ module imports, anywhere in it (lazy imports too), as `maintenance_shim.*` names."""
    parts = ["maintenance_shim", *path.relative_to(ROOT / "app").with_suffix("").parts]
    package = parts[:-1]  # a module's package, or a package's own (its __init__)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_the_settings_import_nothing_from_web_or_progress() -> None:
    """The seam's promise: a source's settings module lives in settings/, its follower in progress/, and the
    settings layer never reaches up for either (nor for web/)."""
    bad = {
        str(path.relative_to(ROOT)): sorted(
            name for name in _imports(path) if name.startswith(("maintenance_shim.web", "maintenance_shim.progress"))
        )
        for path in (ROOT / "app" / "settings").rglob("*.py")
    }
    assert {name: found for name, found in bad.items() if found} == {}
    # And the check sees imports at all: the follower registry reaches the settings' registry.
    assert "maintenance_shim.settings.sources" in _imports(ROOT / "app/progress/sources/__init__.py")


def test_each_source_is_its_settings_module_and_its_follower() -> None:
    from maintenance_shim.progress.sources import registry as followers
    from maintenance_shim.settings.shim import Settings
    from maintenance_shim.settings.sources import registry as sources

    assert set(followers()) == set(sources()) == {"progress_file", "train_log", "trainer_log_jsonl"}
    assert set(sources()) <= set(Settings.model_fields)
    assert len({follower.tag for follower in followers().values()}) == len(followers())


def _added_files(tree: Path) -> set[str]:
    """The files of the copy that the tracked tree lacks (each tracked one checked unchanged)."""
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split())
    files = {str(path.relative_to(tree)) for path in tree.rglob("*") if path.is_file()}
    files = {name for name in files if "__pycache__" not in name}
    for name in tracked & files:
        assert (tree / name).read_bytes() == (ROOT / name).read_bytes(), name
    return files - tracked


def test_a_new_response_format_is_its_own_file(tmp_path: Path) -> None:
    """A format module dropped into app/web/formats/ of a copy: a real shim serves it for its media type
    and its ?format= values (through the fast path and the full path), and nothing else changed."""
    tree = _copy_tree(tmp_path)
    (tree / "app/web/formats/example.py").write_text(EXAMPLE_FORMAT)
    assert _added_files(tree) == {"app/web/formats/example.py"}

    env = clean_env({"PYTHONPATH": str(tmp_path / "site"), "MAINT_ETA": "45m", "MAINT_LANGUAGES": "en,ja",
                     "MAINT_ADMIN_LISTEN": "off"})
    shim = start_server(
        lambda ports: [sys.executable, "-m", "maintenance_shim", "serve", "--listen", f"127.0.0.1:{ports[0]}=studio"],
        tmp_path / "shim.log", what="the shim with the example format", cwd=tmp_path, env=env,
    )
    try:
        cases = [
            ("/", {"Accept": "application/x-example"}),
            ("/gallery", {"Accept": "text/html;q=0.5, application/x-example"}),
            ("/?format=example", {"Accept": "text/html"}),
            ("/?format=EX&lang=ja", {}),
            ("/api/v1/x?format=example", {"Accept": "application/json", "Cookie": "lang=ja"}),
        ]
        for path, headers in cases:
            for _ in range(2):  # the second from the fast path's cache
                answer = request(shim.port, path=path, headers=headers)
                assert answer.status == 503, (path, answer)
                assert answer.headers["content-type"] == "application/x-example; charset=utf-8", (path, answer)
                locale = "ja" if "ja" in path or "lang=ja" in headers.get("Cookie", "") else "en"
                assert answer.text.startswith(f"example|{locale}|"), (path, answer.text)
                assert answer.headers["cache-control"] == "no-store"
                assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
                assert "set-cookie" not in answer.headers  # ?lang= remembers the locale on pages only
        # The built-in formats are still served as before beside it.
        assert request(shim.port, headers={"Accept": "text/html"}).headers["content-type"].startswith("text/html")
        assert request(shim.port, path="/?format=json").headers["content-type"] == "application/json"
        assert request(shim.port, headers={"Accept": "image/webp"}).headers["content-type"].startswith("text/plain")
    finally:
        shim.stop()
    assert "Traceback" not in shim.output(), shim.output()


def test_the_package_has_no_import_cycle() -> None:
    """No module of app/ imports, even for type checking or lazily, a module that imports it back (the layers
    of docs/architecture.md stand on each other; a plug-in's base names what it needs as a Protocol)."""
    modules = {}
    for path in (ROOT / "app").rglob("*.py"):
        parts = path.relative_to(ROOT / "app").with_suffix("").parts
        name = ".".join(("maintenance_shim", *(parts[:-1] if parts[-1] == "__init__" else parts)))
        modules[name] = path
    graph = {name: sorted({found for found in _imports(path) if found in modules and found != name})
             for name, path in modules.items()}
    seen: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(name: str, trail: list[str]) -> list[str]:
        seen[name] = 1
        for other in graph[name]:
            if seen.get(other) == 1:
                return [*trail[trail.index(other):], other] if other in trail else [name, other]
            if other not in seen and (loop := visit(other, [*trail, other])):
                return loop
        seen[name] = 2
        return []

    for name in sorted(graph):
        if name not in seen:
            assert not (loop := visit(name, [name])), " -> ".join(loop)
