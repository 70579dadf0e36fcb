"""The wheel holds every package of app/: pyproject.toml lists them by hand (app/ installs as
maintenance_shim), and an editable install finds a package left out of that list anyway, so only a
non-editable install (scripts/test.sh, CI, `pip install .`) would miss it."""

from __future__ import annotations

import tomllib

from tests.support import ROOT


def test_every_package_under_app_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"maintenance_shim": "app"}
    listed = set(config["packages"])
    found = {
        ".".join(("maintenance_shim", *init.parent.relative_to(ROOT / "app").parts))
        for init in (ROOT / "app").rglob("__init__.py")
    }
    assert found - listed == set(), f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
    assert listed - found == set(), f"listed in pyproject.toml but not a package: {sorted(listed - found)}"
