"""Settings: environment (prefix MAINT_) or an env file -> one validated Settings object."""

from __future__ import annotations

import ipaddress
import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from babel import Locale, UnknownLocaleError
from pydantic import (
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ..nodes import MAX_NODES
from ..statedir import default_state_dir
from .env import SettingsError, describe_error, read_environment
from .sources import SourcePath, SourceSettings, merged, parse_source_paths, registry

if TYPE_CHECKING:
    _SourceFields = SourceSettings
else:
    # Every progress source's own setting (app/settings/sources/<name>.py), as fields of Settings.
    _SourceFields = merged()

# page: HTML by default; api: JSON in FastAPI's {"detail": ...} shape; openai: JSON in OpenAI's error shape.
ServiceKind = Literal["page", "api", "openai"]
_KINDS: dict[str, ServiceKind] = {"page": "page", "api": "api", "openai": "openai"}


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
# `45m`, `1h30m`, `2h`, `90s`, or plain seconds (`900`); every unit written (`1h30` is an error, not 1 h 30 s).
_DURATION_RE = re.compile(r"^(?:(?P<h>\d{1,9})h)?(?:(?P<m>\d{1,9})m)?(?:(?P<s>\d{1,9})s)?$|^(?P<plain>\d{1,9})$")
# A static ETA is at most this far ahead (the ETA shown is capped at the same year).
MAX_STATIC_ETA = timedelta(days=365)
# Time-like settings are at most this (seconds): a week, or a year for the Retry-After family.
WEEK = 7 * 24 * 3600
YEAR = 365 * 24 * 3600


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


@dataclass(frozen=True)
class AdminAddress:
    """Where the admin listener (writes, metrics, API docs) listens: TCP `host`/`port`, or a Unix socket `path`."""

    host: str = ""
    port: int = 0
    path: Path | None = None
    # The default: a socket in the state directory, not asked for by name. It never stops start-up: a
    # path that is too long, or a live shim already there, leaves this shim without an admin listener.
    default: bool = False

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str | None:
        """The base URL of a TCP admin listener (0.0.0.0 and :: reached through loopback); None for a socket."""
        if self.path is not None:
            return None
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"


ADMIN_SOCKET = "admin.sock"  # the default admin listener: a Unix socket in the state directory


def parse_admin_listen(text: str) -> AdminAddress | None:
    """`HOST:PORT`, `unix:PATH` or `off` -> AdminAddress or None; raises ValueError with a readable reason."""
    value = text.strip()
    if value.lower() in ("off", "none", "no", "false", "0"):
        return None
    if value.startswith("unix:"):
        path = Path(value[len("unix:") :])
        if not path.is_absolute():
            raise ValueError(f"{text!r}: the socket path must be absolute (unix:/run/maintenance-shim/admin.sock)")
        if len(bytes(path)) > 107:
            raise ValueError(f"{text!r}: a Unix socket path is at most 107 bytes")
        return AdminAddress(path=path)
    if "=" in value:
        raise ValueError(f"{text!r} is HOST:PORT, unix:PATH or off (the admin listener serves no service)")
    listener = parse_listener(value)
    return AdminAddress(host=listener.host, port=listener.port)


def parse_eta(text: str, now: datetime) -> datetime:
    """A duration (`45m`, `1h30m`, `900` seconds) from `now`, or an ISO-8601 time -> an aware datetime.

    Strict: every unit is written (`1h30` is an error: write `1h30m`), the result lies after `now` and at
    most a year (``MAX_STATIC_ETA``) ahead; ValueError saying what is wrong otherwise."""
    value = text.strip()
    match = _DURATION_RE.match(value.lower()) if value else None
    if match and any(match.groupdict().values()):
        parts = {k: int(v or 0) for k, v in match.groupdict().items()}
        duration = timedelta(seconds=parts["h"] * 3600 + parts["m"] * 60 + parts["s"] + parts["plain"])
        if duration > MAX_STATIC_ETA:
            raise ValueError(f"{text!r} is more than {MAX_STATIC_ETA.days} days")
        if not duration:
            raise ValueError(f"{text!r} is no time at all")
        return now + duration
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # A naive time is the operator's local wall-clock time.
        when = when if when.tzinfo else when.astimezone()
        ahead = when - now
    except (ValueError, OverflowError, OSError):
        raise ValueError(
            f"{text!r} is neither a duration (45m, 1h30m, 900 for seconds) nor an ISO-8601 time"
        ) from None
    if ahead <= timedelta(0):
        raise ValueError(f"{text!r} is in the past")
    if ahead > MAX_STATIC_ETA:
        raise ValueError(f"{text!r} is more than {MAX_STATIC_ETA.days} days ahead")
    return when


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(_SourceFields):
    """Every setting of the shim, validated; see the README's settings table. The progress sources' fields
    (MAINT_PROGRESS_FILE, MAINT_TRAIN_LOG, ...) come from their modules in settings/sources/.

    Built by `load_settings`, which merges the environment and the env file itself (so that the
    environment wins, `MAINT_MESSAGE_<LANG>` is gathered, and every error names its variable).
    """

    # A plain model: `load_settings` is the one place that reads the environment and the env file, so an
    # explicit `environ` is all there is (nothing from os.environ leaks in).
    # No inf or NaN anywhere: every number is bounded.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    listen: list[str] = Field(default_factory=lambda: ["127.0.0.1:8080"])
    # Every locale with a catalog in app/locales/, in the language switcher's order (docs/translations.md).
    languages: list[str] = Field(
        default_factory=lambda: [
            "en", "ja", "zh_Hans", "zh_Hant", "ko", "es", "fr", "de", "pt_BR", "ru", "id", "vi", "th", "ar"
        ]
    )
    default_language: str = "en"
    lang_cookie: str = "lang"
    eta: str | None = None
    resume_seconds: float = Field(default=120, ge=0, le=86400)
    # The scripts' state dir (they export it to the shim they start): run events in, run history out.
    state_dir: Path | None = None
    retry_after_min: int = Field(default=5, ge=1, le=YEAR)
    retry_after_max: int = Field(default=3600, ge=1, le=YEAR)
    retry_after_unknown: int = Field(default=60, ge=1, le=YEAR)
    stall_seconds: float = Field(default=300, gt=0, le=WEEK)
    admin_token: SecretStr | None = None
    # The admin listener: the progress push, metrics and the API docs answer here only (404 on the public ones).
    # None: a Unix socket in the state directory (admin_address); TCP only when named.
    admin_listen: str | None = None
    cors_origins: list[str] = Field(default_factory=list)
    json_paths: list[str] = Field(default_factory=lambda: ["/api/"])
    health_paths: list[str] = Field(default_factory=list)
    message: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    bind_retry_seconds: float = Field(default=0, ge=0, le=600)
    # Fork the server from a parent that holds the sockets and forks a new one if it dies (app/supervise.py).
    supervise: bool = True
    # `x-should-retry: true` on a 503 while the ETA is at most this far away, else `false` (SDK retry loops).
    sdk_retry_max_seconds: int = Field(default=120, ge=0, le=YEAR)
    # The 503's reason phrase says when (`503 Service Unavailable: video back in about 45 minutes (15:30 UTC)`).
    reason_phrase: bool = True
    # Limits where the shim faces the internet (app/uvicorn_ext/protocol.py): nginx's 32 KiB of request head,
    # Apache's 100 header fields, a 10 s header timeout, and a cap on open connections per process.
    max_header_bytes: int = Field(default=32768, ge=1024, le=1048576)
    max_headers: int = Field(default=100, ge=16, le=10000)
    header_timeout: float = Field(default=10, gt=0, le=600)
    max_connections: int = Field(default=4096, ge=16, le=1000000)
    # Observability (docs/observability.md): request counters and /_maintenance/metrics, log lines,
    # a sampled access log, notifications through Apprise.
    metrics: bool = True
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False
    access_log_sample: float = Field(default=0.01, gt=0, le=1)
    notify_urls: list[str] = Field(default_factory=list)
    notify_language: str | None = None
    # The operator's brand (app/web/branding.py), checked at start: a logo file, accent colours, a template
    # override directory, the time zone of server-rendered times (default the system's).
    logo: Path | None = None
    logo_alt: str = ""
    accent_color: str | None = None
    accent_color_dark: str | None = None
    template_dir: Path | None = None
    timezone: str | None = None
    # MAINT_SERVICE_<tag>_DISPLAY_NAME[_<LANG>], gathered by load_settings: tag -> locale ('' any) -> name.
    display_names: dict[str, dict[str, str]] = Field(default_factory=dict, exclude=True)
    # MAINT_MESSAGE_<LANG>, gathered by load_settings (a pattern of names, not one field).
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

    # A source's field holds its untagged PATH; every NODE=PATH entry is in `source_paths(name)`.
    @field_validator(*registry(), mode="before")
    @classmethod
    def _check_sources(cls, value: Any) -> Any:
        if isinstance(value, str):
            untagged = [item.path for item in parse_source_paths(value) if item.node is None]
            return untagged[0] if untagged else None
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _gather_sources(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """Keep every NODE=PATH entry of the sources' settings (their field holds the untagged path only)."""
        sources: dict[str, tuple[SourcePath, ...]] = {}
        if isinstance(data, dict):
            for name in registry():
                value = data.get(name)
                if isinstance(value, str):
                    with suppress(ValueError):  # _check_sources reports it, named by its variable
                        sources[name] = tuple(parse_source_paths(value))
        settings = handler(data)
        for name in registry():
            if name not in sources:
                path = getattr(settings, name)
                sources[name] = (SourcePath(None, path),) if path is not None else ()
        settings._sources = {
            name: tuple(sorted(items, key=lambda item: (item.node is not None, item.node or "")))
            for name, items in sources.items()
        }
        if len(settings.source_nodes) > MAX_NODES:
            named = " and ".join(f"MAINT_{name.upper()}" for name, items in settings._sources.items() if items)
            raise ValueError(f"{named} name {len(settings.source_nodes)} nodes; at most {MAX_NODES} are tracked")
        return settings

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            return split_urls(value)
        return value

    @field_validator("notify_urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for index, url in enumerate(value, 1):
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S*", url):
                raise ValueError(f"entry {index} is not an Apprise URL like json://host/path or ntfy://topic")
        return value

    @field_validator("notify_language")
    @classmethod
    def _check_notify_language(cls, value: str | None) -> str | None:
        return _check_locale(value) if value else None

    @field_validator("languages")
    @classmethod
    def _check_languages(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one language is needed")
        locales = [_check_locale(item) for item in value]
        from ..i18n import available_catalogs

        missing = [locale for locale in locales if locale not in available_catalogs()]
        if missing:
            # Its page would be English text labelled as another language.
            raise ValueError(f"no catalog for {', '.join(missing)} (docs/translations.md adds one)")
        return locales

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

    @field_validator("admin_listen")
    @classmethod
    def _check_admin_listen(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_admin_listen(value)
        return value.strip()

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
        admin = self.admin_address
        if admin is not None and admin.path is None and admin.port in {item.port for item in self.listeners}:
            raise ValueError(
                f"MAINT_ADMIN_LISTEN: port {admin.port} is also a public listener in MAINT_LISTEN; "
                "give the admin listener a port of its own (or off)"
            )
        return self

    @property
    def listeners(self) -> list[Listener]:
        """The parsed MAINT_LISTEN entries."""
        return [parse_listener(item) for item in self.listen]

    @property
    def source_nodes(self) -> set[str]:
        """The nodes the configured progress sources' entries are tagged with."""
        return {item.node for items in self._sources.values() for item in items if item.node is not None}

    @property
    def admin_address(self) -> AdminAddress | None:
        """The parsed MAINT_ADMIN_LISTEN; None when it is off. Unset: `admin.sock` in the state directory
        (MAINT_STATE_DIR, else the scripts' default), so two shims with their own state dirs never collide
        and the directory's permissions are the access control."""
        if self.admin_listen is None:
            return AdminAddress(path=(self.state_dir or default_state_dir()) / ADMIN_SOCKET, default=True)
        return parse_admin_listen(self.admin_listen)

    def eta_deadline(self, started: datetime) -> datetime | None:
        """The static ETA as an absolute time, durations counted from `started`."""
        try:
            return parse_eta(self.eta, started) if self.eta else None
        except ValueError as error:  # an ISO time that has passed since the settings were checked
            raise SettingsError([f"MAINT_ETA: {error}"]) from None

    @property
    def notify_locale(self) -> str:
        """The notifications' language: MAINT_NOTIFY_LANGUAGE, else MAINT_DEFAULT_LANGUAGE."""
        return self.notify_language or self.default_language

    def message_for(self, locale: str) -> str | None:
        """The operator's message for `locale` (MAINT_MESSAGE_<LANG>), else MAINT_MESSAGE, else None."""
        return self.messages.get(locale.lower()) or self.message or None


def _check_locale(value: str) -> str:
    try:
        return str(Locale.parse(value.strip().replace("-", "_")))
    except (ValueError, UnknownLocaleError):
        raise ValueError(f"{value!r} is not a known locale (e.g. en, ja, zh_Hans)") from None


def load_settings(
    env_file: str | Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    values: dict[str, str] | None = None,
) -> Settings:
    """Environment, then the env file (`./maintenance.env` when present), then `overrides` win; `values`
    is what `read_environment` already returned, when the caller has read it (the file is read once).

    Raises SettingsError with one line per bad setting, named by its environment variable.
    """
    given = read_environment(env_file, environ) if values is None else values
    merged = {key.upper(): value for key, value in given.items()}
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
    # An empty value (`MAINT_X=`) is the default, as if it were not set.
    fields: dict[str, Any] = {k: v for k, v in raw_fields.items() if v != ""}
    fields.update(overrides or {})
    display_names: dict[str, dict[str, str]] = {}
    for key, value in given.items():
        match = _DISPLAY_NAME_RE.fullmatch(key)
        if match and value.strip():
            display_names.setdefault(match["tag"], {})[(match["lang"] or "").lower()] = value.strip()
    try:
        settings = Settings.model_validate({**fields, "messages": messages, "display_names": display_names})
    except ValidationError as error:
        raise SettingsError([describe_error(err) for err in error.errors()]) from None
    offered = {item.lower() for item in settings.languages}
    for lang in messages:
        if lang not in offered:
            raise SettingsError([f"MAINT_MESSAGE_{lang.upper()}: {lang!r} is not in MAINT_LANGUAGES"])
    for tag, names in display_names.items():
        for lang in names:
            if lang and lang not in offered and lang not in {item.split("_")[0] for item in offered}:
                raise SettingsError(
                    [f"MAINT_SERVICE_{tag}_DISPLAY_NAME_{lang.upper()}: {lang!r} is not in MAINT_LANGUAGES"]
                )
    return settings


_DISPLAY_NAME_RE = re.compile(
    r"MAINT_SERVICE_(?P<tag>[A-Za-z0-9_]+?)_DISPLAY_NAME(?:_(?P<lang>[A-Za-z]{2,3}(?:_[A-Za-z0-9]+)?))?", re.IGNORECASE
)


def split_urls(text: str) -> list[str]:
    """MAINT_NOTIFY_URLS: URLs separated by blanks, or by commas before the next `scheme://`."""
    parts = re.split(r"\s+|,(?=\s*[A-Za-z][A-Za-z0-9+.-]*://)", text)
    return [part.strip() for part in parts if part.strip()]
