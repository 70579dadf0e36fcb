"""Caddy: each service's upstream in an imported snippet, validated and reloaded (scripts/proxy/caddy.sh)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from . import Proxy, ProxySettings


class CaddySettings(ProxySettings):
    caddy_bin: str = Field("caddy", description="the Caddy to validate and reload")
    caddy_config: Path = Field(Path("/etc/caddy/Caddyfile"), description="the Caddyfile")
    caddy_test_cmd: str | None = Field(None, description="the command that validates the Caddyfile")
    caddy_reload_cmd: str | None = Field(None, description="the command that reloads Caddy")


class Caddy(Proxy):
    name = "caddy"
    title = "Caddy"
    include = True
    settings = CaddySettings
    defaults_doc: ClassVar[dict[str, str]] = {
        "caddy_test_cmd": "`$MAINT_CADDY_BIN validate --config $MAINT_CADDY_CONFIG --adapter caddyfile`",
        "caddy_reload_cmd": "`$MAINT_CADDY_BIN reload --config $MAINT_CADDY_CONFIG --adapter caddyfile`",
    }

    @classmethod
    def resolved(cls, settings: ProxySettings) -> dict[str, Any]:
        assert isinstance(settings, CaddySettings)
        config = f"--config {settings.caddy_config} --adapter caddyfile"
        return {
            **settings.model_dump(),
            "caddy_test_cmd": settings.caddy_test_cmd or f"{settings.caddy_bin} validate {config}",
            "caddy_reload_cmd": settings.caddy_reload_cmd or f"{settings.caddy_bin} reload {config}",
        }


PROXY = Caddy
