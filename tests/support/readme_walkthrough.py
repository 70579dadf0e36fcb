"""The README's walkthrough: the marked shell blocks a newcomer runs (tests/scripts/test_readme.py runs them, and
tests/settings/test_topology.py checks their names and ports against deploy/ and docs/)."""

from __future__ import annotations

import re
import textwrap

from tests.support import ROOT

README = ROOT / "README.md"
FENCE = re.compile(r"^(?P<indent> *)```sh walkthrough\n(?P<body>.*?)^(?P=indent)```$", re.S | re.M)


def walkthrough(text: str) -> list[str]:
    """The `sh walkthrough` blocks of the README, each dedented as a reader would copy it."""
    blocks = []
    for match in FENCE.finditer(text):
        indent = match["indent"]
        lines = [line[len(indent) :] if line.startswith(indent) else line for line in match["body"].splitlines()]
        blocks.append(textwrap.dedent("\n".join(lines)) + "\n")
    return blocks
