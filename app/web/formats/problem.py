"""RFC 9457 problem details (`application/problem+json`), the `maintenance` object inside."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import Renderer, ResponseFormat, ServiceInfo
from .json import json_bytes

if TYPE_CHECKING:
    from ...progress.tracker import Snapshot
    from ..texts import Texts


class Problem(ResponseFormat):
    name = "problem"
    media_types = ("application/problem+json",)
    query_values = ("problem", "problem+json")
    content_type = b"application/problem+json"
    precedence = 30

    @classmethod
    def render(
        cls, renderer: Renderer, snapshot: Snapshot, service: ServiceInfo, locale: str, texts: Texts,
        maintenance: dict[str, Any],
    ) -> bytes:
        return json_bytes(
            {
                "type": "about:blank",
                "title": texts.problem_title,
                "status": 503,
                "detail": texts.detail,
                "maintenance": maintenance,
            }
        )


FORMAT = Problem
