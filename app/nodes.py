"""What a GPU node name is, and how many nodes are tracked at most (the push API, the sources and the settings)."""

from __future__ import annotations

import re

# Distinct nodes tracked at most, whatever an authenticated client pushes: memory stays bounded.
MAX_NODES = 64


NODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


_NODE_RE = re.compile(NODE_PATTERN)


def is_node_name(value: object) -> bool:
    """A node name: 1-64 characters, letters, digits, '.', '_' or '-', not starting with a punctuation mark."""
    return isinstance(value, str) and _NODE_RE.fullmatch(value) is not None


class NodeLimitError(ValueError):
    """An update named a new node while ``MAX_NODES`` are tracked already; nothing was changed."""
