"""The HTML page for people (templates/page.html): what browsers and `*/*` on a page service get."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import Renderer, ResponseFormat, ServiceInfo

if TYPE_CHECKING:
    from ...progress.tracker import Snapshot
    from ..texts import Texts


class Html(ResponseFormat):
    name = "html"
    media_types = ("text/html", "application/xhtml+xml")
    query_values = ("html",)
    content_type = b"text/html; charset=utf-8"
    precedence = 10
    default_for_kinds = ("page",)
    remembers_locale = True

    @classmethod
    def csp(cls, renderer: Renderer) -> bytes:
        return renderer.page_csp.encode()

    @classmethod
    def render(
        cls, renderer: Renderer, snapshot: Snapshot, service: ServiceInfo, locale: str, texts: Texts,
        maintenance: dict[str, Any],
    ) -> bytes:
        return renderer.page(snapshot, service, locale, texts, maintenance).encode("utf-8")


FORMAT = Html
