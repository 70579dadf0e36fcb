"""nginx: each service's upstream in an include file, tested and reloaded gracefully (scripts/proxy/nginx.sh)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from . import Proxy, ProxySettings


class NginxSettings(ProxySettings):
    nginx_bin: str = Field("nginx", description="the nginx to test and reload")
    nginx_args: str = Field("", description="nginx's arguments, e.g. `-p /srv/nginx -c nginx.conf`")
    nginx_test_cmd: str | None = Field(None, description="the command that tests the nginx config")
    nginx_reload_cmd: str | None = Field(None, description="the command that reloads nginx")


class Nginx(Proxy):
    name = "nginx"
    title = "nginx"
    include = True
    settings = NginxSettings
    defaults_doc: ClassVar[dict[str, str]] = {
        "nginx_test_cmd": "`$MAINT_NGINX_BIN $MAINT_NGINX_ARGS -t -q`",
        "nginx_reload_cmd": "`$MAINT_NGINX_BIN $MAINT_NGINX_ARGS -s reload`",
    }

    @classmethod
    def resolved(cls, settings: ProxySettings) -> dict[str, Any]:
        assert isinstance(settings, NginxSettings)
        nginx = " ".join(filter(None, [settings.nginx_bin, settings.nginx_args]))
        return {
            **settings.model_dump(),
            "nginx_test_cmd": settings.nginx_test_cmd or f"{nginx} -t -q",
            "nginx_reload_cmd": settings.nginx_reload_cmd or f"{nginx} -s reload",
        }


PROXY = Nginx
