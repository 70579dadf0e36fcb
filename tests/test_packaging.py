"""The wheel holds every package of app/: pyproject.toml lists them by hand (app/ installs as
maintenance_shim), and an editable install finds a package left out of that list anyway, so only a
non-editable install (scripts/test.sh, CI, `pip install .`) would miss it. The data directories (catalogs,
templates) are listed too: setuptools ships their files either way (package-data), but prints a screenful of
warnings per unlisted directory on every install, `run.sh --install` included."""

from __future__ import annotations

import tomllib

from tests.support import ROOT


def test_every_directory_under_app_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"maintenance_shim": "app"}
    listed = set(config["packages"])
    found = {
        ".".join(("maintenance_shim", *directory.relative_to(ROOT / "app").parts))
        for directory in [ROOT / "app", *(ROOT / "app").rglob("*")]
        if directory.is_dir() and "__pycache__" not in directory.parts
    }
    assert found - listed == set(), f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
    assert listed - found == set(), f"listed in pyproject.toml but not a package: {sorted(listed - found)}"
