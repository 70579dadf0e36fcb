"""Settings: environment (prefix MAINT_) or an env file -> one validated Settings object."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from babel import Locale, UnknownLocaleError
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# page: HTML by default; api: JSON in FastAPI's {"detail": ...} shape; openai: JSON in OpenAI's error shape.
ServiceKind = Literal["page", "api", "openai"]
_KINDS: dict[str, ServiceKind] = {"page": "page", "api": "api", "openai": "openai"}
DEFAULT_ENV_FILE = "maintenance.env"


@dataclass(frozen=True)
class Listener:
    """One socket to serve, tagged with the service it stands in for."""

    host: str
    port: int
    service: str  # "" when unnamed: messages then say "This service"
    kind: ServiceKind

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}={self.service or '(unnamed)'}:{self.kind}"


_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
_DURATION_RE = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s?)?$")


def parse_listener(text: str) -> Listener:
    """`HOST:PORT[=SERVICE[:page|api|openai]]` -> Listener; raises ValueError with a readable reason."""
    address, _, service_part = text.strip().partition("=")
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT[=SERVICE]")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: port must be 1-65535")
    if host not in ("localhost",) and not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not a host name or IP address") from None
    name, _, kind = service_part.partition(":")
    name = name.strip()
    if name and not _SERVICE_RE.match(name):
        raise ValueError(f"{text!r}: service name must be letters, digits, space, '.', '_' or '-'")
    kind = kind.strip() or "page"
    if kind not in _KINDS:
        raise ValueError(f"{text!r}: service kind must be 'page', 'api' or 'openai', not {kind!r}")
    return Listener(host, int(port_text), name, _KINDS[kind])


def parse_eta(text: str, now: datetime) -> datetime:
    """A duration (`45m`, `1h30m`, `900`) from `now`, or an ISO-8601 time -> an aware datetime."""
    value = text.strip()
    match = _DURATION_RE.match(value.lower()) if value else None
    if match and any(match.groupdict().values()):
        parts = {k: int(v or 0) for k, v in match.groupdict().items()}
        return now + timedelta(hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (45m, 1h30m, 900) nor an ISO-8601 time"
        ) from None
    # A naive time is the operator's local wall-clock time.
    return when if when.tzinfo else when.astimezone()


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of the shim, validated; see the README's settings table.

    Built by `load_settings`, which merges the environment and the env file itself (so that the
    environment wins, `MAINT_MESSAGE_<LANG>` is gathered, and every error names its variable).
    """

    model_config = SettingsConfigDict(env_prefix="MAINT_", extra="ignore", case_sensitive=False)

    listen: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["127.0.0.1:8080"])
    languages: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["en", "ja", "zh_Hans"])
    default_language: str = "en"
    lang_cookie: str = "lang"
    eta: str | None = None
    progress_file: Path | None = None
    train_log: Path | None = None
    resume_seconds: float = Field(default=120, ge=0, le=86400)
    # The scripts' state dir (they export it to the shim they start): run events in, run history out.
    state_dir: Path | None = None
    retry_after_min: int = Field(default=5, ge=1)
    retry_after_max: int = Field(default=3600, ge=1)
    retry_after_unknown: int = Field(default=60, ge=1)
    stall_seconds: float = Field(default=300, gt=0)
    admin_token: SecretStr | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    json_paths: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["/api/"])
    health_paths: Annotated[list[str], NoDecode] = Field(default_factory=list)
    message: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    bind_retry_seconds: float = Field(default=0, ge=0, le=600)
    # `x-should-retry: true` on a 503 while the ETA is at most this far away, else `false` (SDK retry loops).
    sdk_retry_max_seconds: int = Field(default=120, ge=0)
    # Limits where the shim faces the internet (app/protocol.py): nginx's 32 KiB of request head,
    # Apache's 100 header fields, a 10 s header timeout, and a cap on open connections per process.
    max_header_bytes: int = Field(default=32768, ge=1024, le=1048576)
    max_headers: int = Field(default=100, ge=16, le=10000)
    header_timeout: float = Field(default=10, gt=0, le=600)
    max_connections: int = Field(default=4096, ge=16, le=1000000)
    # MAINT_MESSAGE_<LANG>, gathered by load_settings (pydantic-settings has no pattern fields).
    messages: dict[str, str] = Field(default_factory=dict, exclude=True)

    _split_lists = field_validator(
        "listen", "languages", "cors_origins", "json_paths", "health_paths", mode="before"
    )(_split)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one HOST:PORT is needed")
        listeners = [parse_listener(item) for item in value]
        services: dict[int, str] = {}
        for item in listeners:
            if services.setdefault(item.port, item.service) != item.service:
                raise ValueError(f"port {item.port} is tagged with two services")
        return value

    @field_validator("languages")
    @classmethod
    def _check_languages(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one language is needed")
        return [_check_locale(item) for item in value]

    @field_validator("default_language")
    @classmethod
    def _check_default_language(cls, value: str) -> str:
        return _check_locale(value)

    @field_validator("lang_cookie")
    @classmethod
    def _check_cookie(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
            raise ValueError(f"{value!r} is not a valid cookie name")
        return value

    @field_validator("eta")
    @classmethod
    def _check_eta(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_eta(value, datetime.now().astimezone())
            return value.strip()
        return None

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin like https://studio.example.com")
        return value

    @field_validator("json_paths", "health_paths")
    @classmethod
    def _check_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} must start with '/'")
            if path.startswith("/_maintenance"):
                raise ValueError(f"{path!r} is inside the reserved /_maintenance/ prefix")
        return value

    @field_validator("admin_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (use `openssl rand -hex 32`)")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.retry_after_min > self.retry_after_max:
            raise ValueError("MAINT_RETRY_AFTER_MIN is larger than MAINT_RETRY_AFTER_MAX")
        if self.default_language not in self.languages:
            raise ValueError(
                f"MAINT_DEFAULT_LANGUAGE {self.default_language!r} is not in MAINT_LANGUAGES"
            )
        return self

    @property
    def listeners(self) -> list[Listener]:
        """The parsed MAINT_LISTEN entries."""
        return [parse_listener(item) for item in self.listen]

    def eta_deadline(self, started: datetime) -> datetime | None:
        """The static ETA as an absolute time, durations counted from `started`."""
        return parse_eta(self.eta, started) if self.eta else None

    def message_for(self, locale: str) -> str | None:
        """The operator's message for `locale` (MAINT_MESSAGE_<LANG>), else MAINT_MESSAGE, else None."""
        return self.messages.get(locale.lower()) or self.message or None


def _check_locale(value: str) -> str:
    try:
        return str(Locale.parse(value.strip().replace("-", "_")))
    except (ValueError, UnknownLocaleError):
        raise ValueError(f"{value!r} is not a known locale (e.g. en, ja, zh_Hans)") from None


class SettingsError(Exception):
    """Invalid configuration; `lines` has one readable line per bad setting."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SettingsError([f"{path}:{number}: not a KEY=value line"])
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load_settings(
    env_file: str | Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Environment, then the env file (`./maintenance.env` when present), then `overrides` win.

    Raises SettingsError with one line per bad setting, named by its environment variable.
    """
    env = dict(os.environ if environ is None else environ)
    path = Path(env_file) if env_file else Path(DEFAULT_ENV_FILE)
    if env_file and not path.is_file():
        raise SettingsError([f"--env-file: {path} does not exist"])
    file_values = _read_env_file(path) if path.is_file() else {}
    # The process environment wins over the file, as with `set -a; . file` followed by exports.
    merged = {k.upper(): v for k, v in {**file_values, **env}.items() if k.upper().startswith("MAINT_")}
    messages = {
        key[len("MAINT_MESSAGE_") :].lower(): value
        for key, value in merged.items()
        if key.startswith("MAINT_MESSAGE_") and value
    }
    raw_fields = {
        key[len("MAINT_") :].lower(): value
        for key, value in merged.items()
        if key[len("MAINT_") :].lower() in Settings.model_fields and key != "MAINT_MESSAGES"
    }
    fields: dict[str, Any] = {k: (None if v == "" and k in _OPTIONAL else v) for k, v in raw_fields.items()}
    fields.update(overrides or {})
    try:
        settings = Settings.model_validate({**fields, "messages": messages})
    except ValidationError as error:
        raise SettingsError([_describe(err) for err in error.errors()]) from None
    for lang in messages:
        if lang not in {item.lower() for item in settings.languages}:
            raise SettingsError([f"MAINT_MESSAGE_{lang.upper()}: {lang!r} is not in MAINT_LANGUAGES"])
    return settings


_OPTIONAL = {"eta", "progress_file", "train_log", "admin_token", "message"}


def _describe(error: Any) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    value = error.get("input")
    if not loc:
        return message
    name = "MAINT_" + loc[0].upper()
    shown = "" if loc[0] == "admin_token" or isinstance(value, dict) else f" (got {value!r})"
    return f"{name}: {message}{shown}"
