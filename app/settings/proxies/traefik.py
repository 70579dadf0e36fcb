"""Traefik: each service's servers in a file-provider YAML, confirmed through Traefik's API
(scripts/proxy/traefik.sh)."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator

from ..urls import check_http_url
from . import Proxy, ProxySettings


class TraefikSettings(ProxySettings):
    traefik_api: str = Field("http://127.0.0.1:8080", description="Traefik's API, to confirm a switch took effect")

    @field_validator("traefik_api")
    @classmethod
    def _check_url(cls, value: str) -> str:
        check_http_url(value)
        return value.rstrip("/")  # the scripts append the API's paths to it


class Traefik(Proxy):
    name = "traefik"
    title = "Traefik"
    include = True
    settings = TraefikSettings
    service_keys: ClassVar[dict[str, str]] = {
        "TRAEFIK_SERVICE": "Traefik mode: the service's name in the dynamic config (default <name>)"
    }

    @classmethod
    def service_defaults(cls, name: str, keys: dict[str, str]) -> dict[str, str]:
        return {"TRAEFIK_SERVICE": keys["TRAEFIK_SERVICE"] or name}

    @classmethod
    def check_service(cls, prefix: str, keys: dict[str, str], switch: str) -> list[str]:
        problems = []
        if switch == cls.name and keys.get("INCLUDE") and not keys["INCLUDE"].endswith((".yml", ".yaml")):
            problems.append(f"{prefix}INCLUDE: {keys['INCLUDE']} must be Traefik's .yml or .yaml file")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", keys["TRAEFIK_SERVICE"]):
            problems.append(f"{prefix}TRAEFIK_SERVICE: {keys['TRAEFIK_SERVICE']!r} is not a Traefik service name")
        return problems


PROXY = Traefik
