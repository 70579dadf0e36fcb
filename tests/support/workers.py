"""How the suite is spread over pytest-xdist workers (scripts/test.sh runs it with `-n N --dist loadgroup`).

- Tests that use a module-scoped fixture (a browser, a built wheel, a shim shared by read-only tests, a set of
  training runs) run on one worker, their module's: the fixture is set up once, as without workers.
- Every other test is a unit of its own, handed to whichever worker is free, in the order of collection
  (tests/conftest.py puts the longest first, so that none of them is left for the end).

pytest-xdist's own `loadgroup` reads groups from `xdist_group` marks by rewriting each test's node id, which no
longer takes effect with pytest 9.2 (a node id is computed, not stored). Here each worker writes the groups it
collected to a file the controller named, and the controller's scheduler reads them (`Groups`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

INPUT_KEY = "maint_groups_dir"


def module_group(item: pytest.Item) -> str | None:
    """The module's path when the test uses a module-scoped fixture, else None (a unit of its own)."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    if any(defs and defs[-1].scope == "module" for defs in definitions.values()):
        return item.nodeid.split("::", 1)[0]
    return None


def write_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: node id -> group of every grouped test, for the controller's scheduler."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if not workerinput or INPUT_KEY not in workerinput:
        return
    groups = {item.nodeid: group for item in items if (group := module_group(item)) is not None}
    directory = Path(workerinput[INPUT_KEY])
    partial = directory / f".{workerinput['workerid']}.json"
    partial.write_text(json.dumps(groups))
    partial.replace(directory / f"{workerinput['workerid']}.json")


def _groups_dir(config: pytest.Config) -> Path:
    directory: Path | None = getattr(config, "_maint_groups_dir", None)
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="maint-test-groups-"))
        config._maint_groups_dir = directory  # type: ignore[attr-defined]
    return directory


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """In the controller: tell each worker where to write its groups."""
    node.workerinput[INPUT_KEY] = str(_groups_dir(node.config))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup`: the groups above (other modes: pytest-xdist's own)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    directory = _groups_dir(config)

    class Groups(LoadScopeScheduling):  # type: ignore[misc]
        """pytest-xdist's scope scheduling with the workers' groups as scopes, in collection order."""

        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            self._groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:  # the workers have all collected when the scheduler first asks
                files = sorted(directory.glob("gw*.json"))
                self._groups = json.loads(files[0].read_text()) if files else {}
            return self._groups.get(nodeid, nodeid)

    config.option.loadscopereorder = False  # keep the collection's order: the longest tests first
    return Groups(config, log)


def cleanup(config: pytest.Config) -> None:
    """Remove the controller's directory of groups."""
    directory: Path | None = getattr(config, "_maint_groups_dir", None)
    if directory is not None and directory.is_dir():
        for path in directory.iterdir():
            path.unlink(missing_ok=True)
        os.rmdir(directory)
