"""Plain text for terminals and anything that accepts none of the other formats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import Renderer, ResponseFormat, ServiceInfo

if TYPE_CHECKING:
    from ...progress.tracker import Snapshot
    from ..texts import Texts


class Text(ResponseFormat):
    name = "text"
    media_types = ("text/plain",)
    query_values = ("text", "txt")
    content_type = b"text/plain; charset=utf-8"
    precedence = 40
    last_resort = True

    @classmethod
    def render(
        cls, renderer: Renderer, snapshot: Snapshot, service: ServiceInfo, locale: str, texts: Texts,
        maintenance: dict[str, Any],
    ) -> bytes:
        lines = [texts.title, "", texts.detail]
        lines += [line for line in (texts.progress, texts.steps_left) if line]
        return ("\n".join(lines) + "\n").encode("utf-8")


FORMAT = Text
