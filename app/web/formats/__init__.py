"""Response formats, one module each: a new format is this package's `<name>.py`, nothing else.

Each module defines `FORMAT`, a `ResponseFormat` subclass named as the module: the media types it answers
to in `Accept`, its `?format=` values, any other trigger it has (the service kinds it is the default of,
`MAINT_JSON_PATHS`), its Content-Type and its renderer. Negotiation (negotiate.py), the replies
(responder.py) and the bodies (render.py) know formats only through `registry()` and `table()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ...plugins import discover

if TYPE_CHECKING:
    from ...progress.tracker import Snapshot
    from ..texts import Texts

# The Content-Security-Policy of every answer that is not a page: nothing may load, nothing may frame it.
PLAIN_CSP = b"default-src 'none'; frame-ancestors 'none'"


class ServiceInfo(Protocol):
    """What a format may read of the replaced service (render.Service is one)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...


class Renderer(Protocol):
    """What a format may ask of the renderer (render.Renderer is one): the page and its CSP. Named here, not
    imported from render.py, so that render.py stands above the formats it calls and nothing loops."""

    page_csp: str

    def page(
        self, snapshot: Snapshot, service: ServiceInfo, locale: str, texts: Texts, maintenance: dict[str, Any]
    ) -> str: ...


class ResponseFormat:
    """One response format: how a request asks for it, and how its 503 body is made."""

    name: ClassVar[str]  # the module's name: counted and logged as the reply's format
    media_types: ClassVar[tuple[str, ...]]  # in Accept, most specific first; `type/*` matches the first
    query_values: ClassVar[tuple[str, ...]] = ()  # `?format=` values (lowercase) that pick it
    content_type: ClassVar[bytes]
    # Among formats an Accept item matches equally well (`text/*`, `application/*`), the lowest goes first.
    precedence: ClassVar[int] = 100
    default_for_kinds: ClassVar[tuple[str, ...]] = ()  # service kinds (MAINT_LISTEN's) that get it for `*/*`
    for_json_paths: ClassVar[bool] = False  # what paths under MAINT_JSON_PATHS get (one format says so)
    last_resort: ClassVar[bool] = False  # what a request gets when it accepts none (one format says so)
    remembers_locale: ClassVar[bool] = False  # `?lang=` sets the language cookie on this format's answers

    @classmethod
    def csp(cls, renderer: Renderer) -> bytes:
        """Its Content-Security-Policy."""
        return PLAIN_CSP

    @classmethod
    def render(
        cls,
        renderer: Renderer,
        snapshot: Snapshot,
        service: ServiceInfo,
        locale: str,
        texts: Texts,
        maintenance: dict[str, Any],
    ) -> bytes:
        """The 503 body, from the localized sentences and the `maintenance` object of DESIGN.md."""
        raise NotImplementedError


@cache
def registry() -> dict[str, type[ResponseFormat]]:
    """Every format module of this package, by name, in precedence order."""
    found = sorted(discover(__name__, __path__, "FORMAT", ResponseFormat).values(),
                   key=lambda fmt: (fmt.precedence, fmt.name))
    return {fmt.name: fmt for fmt in found}


@dataclass(frozen=True)
class FormatTable:
    """What negotiation needs of the registered formats, looked up once."""

    names: tuple[str, ...]  # in precedence order
    media: Mapping[str, tuple[str, ...]]  # format -> its media types
    query: Mapping[str, str]  # `?format=` value -> format
    by_kind: Mapping[str, str]  # service kind -> its default format
    json_paths: str  # the format of paths under MAINT_JSON_PATHS
    last_resort: str  # the format when nothing offered is acceptable


@cache
def table() -> FormatTable:
    """The registry as negotiation reads it; a TypeError names a clash (two formats claiming one thing)."""
    formats = registry()
    query: dict[str, str] = {}
    by_kind: dict[str, str] = {}
    for fmt in formats.values():
        for value in fmt.query_values:
            if query.setdefault(value, fmt.name) != fmt.name:
                raise TypeError(f"?format={value} is claimed by {query[value]} and {fmt.name}")
        for kind in fmt.default_for_kinds:
            if by_kind.setdefault(kind, fmt.name) != fmt.name:
                raise TypeError(f"the {kind} kind's default is claimed by {by_kind[kind]} and {fmt.name}")

    def the_one(what: str, flag: str) -> str:
        named = [fmt.name for fmt in formats.values() if getattr(fmt, flag)]
        if len(named) != 1:
            raise TypeError(f"exactly one response format must be {what} ({flag}); found {named}")
        return named[0]

    return FormatTable(
        names=tuple(formats),
        media={fmt.name: fmt.media_types for fmt in formats.values()},
        query=query,
        by_kind=by_kind,
        json_paths=the_one("for MAINT_JSON_PATHS", "for_json_paths"),
        last_resort=the_one("the last resort", "last_resort"),
    )


def get(name: str) -> type[ResponseFormat]:
    """The format called `name`; KeyError when there is none."""
    return registry()[name]
