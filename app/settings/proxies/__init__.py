"""The proxies the scripts switch, one module each: a new proxy is this package's `<name>.py` (its settings,
its MAINT_SERVICE_<name>_* keys, their checks) and its adapter `scripts/proxy/<name>.sh`, nothing else.

Each module defines `PROXY`, a `Proxy` subclass; `MAINT_SWITCH` accepts every registered name besides
`none` and `port`.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ...plugins import discover


class ProxySettings(BaseModel):
    """A proxy's own MAINT_* settings (fields named as the variables, lowercased, without MAINT_)."""

    model_config = ConfigDict(extra="ignore")


class Proxy:
    """One proxy: what the settings reference, `check` and `env --shell` need to know of it."""

    name: ClassVar[str]  # MAINT_SWITCH's value, and scripts/proxy/<name>.sh
    title: ClassVar[str]  # the settings reference's section
    include: ClassVar[bool] = False  # switched by rewriting each service's INCLUDE file
    settings: ClassVar[type[ProxySettings]] = ProxySettings
    service_keys: ClassVar[dict[str, str]] = {}  # MAINT_SERVICE_<name>_<KEY>: meaning
    defaults_doc: ClassVar[dict[str, str]] = {}  # field -> the default in words, where it depends on others

    @classmethod
    def service_defaults(cls, name: str, keys: dict[str, str]) -> dict[str, str]:
        """Its service keys with their defaults filled in (`keys` holds every key, "" when unset)."""
        return {}

    @classmethod
    def check_service(cls, prefix: str, keys: dict[str, str], switch: str) -> list[str]:
        """One line per bad MAINT_SERVICE_<name>_* key of this proxy's (`prefix` is `MAINT_SERVICE_<name>_`)."""
        return []

    @classmethod
    def resolved(cls, settings: ProxySettings) -> dict[str, Any]:
        """Its settings as the scripts get them, defaults that depend on other settings filled in."""
        return settings.model_dump()


@cache
def registry() -> dict[str, type[Proxy]]:
    """Every proxy module of this package, by name."""
    return discover(__name__, __path__, "PROXY", Proxy)
