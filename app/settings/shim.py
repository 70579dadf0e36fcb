"""Settings: environment (prefix MAINT_) or an env file -> one validated Settings object."""

from __future__ import annotations

import ipaddress
import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from babel import Locale, UnknownLocaleError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ..nodes import MAX_NODES, is_node_name
from .env import SettingsError, describe_error, read_environment

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


@dataclass(frozen=True)
class AdminAddress:
    """Where the admin listener (writes, metrics, API docs) listens: TCP `host`/`port`, or a Unix socket `path`."""

    host: str = ""
    port: int = 0
    path: Path | None = None

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


DEFAULT_ADMIN_LISTEN = "127.0.0.1:8099"


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


@dataclass(frozen=True)
class SourcePath:
    """One progress file or trainer log to follow, tagged with the GPU node it reports (None: untagged)."""

    node: str | None
    path: Path


def _tagged(entry: str) -> bool:
    """`NODE=PATH`: an `=` before any `/` (an absolute path's own `=` comes after its first `/`)."""
    head, sep, _ = entry.partition("=")
    return bool(sep) and "/" not in head


def parse_source_paths(text: str) -> list[SourcePath]:
    """`PATH` (one untagged source, commas and all, as ever), or comma-separated `NODE=PATH` entries among
    which one plain `PATH` may stand; raises ValueError with a readable reason."""
    value = text.strip()
    if not value:
        return []
    entries = [item.strip() for item in value.split(",")]
    if not any(_tagged(item) for item in entries):
        return [SourcePath(None, Path(value))]
    out: list[SourcePath] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, 1):
        if not entry:
            continue
        if not _tagged(entry):
            if any(item.node is None for item in out):
                raise ValueError(f"entry {index} ({entry!r}) is a second path without a node; tag it NODE=PATH")
            out.append(SourcePath(None, Path(entry)))
            continue
        node, _, path = (part.strip() for part in entry.partition("="))
        if not is_node_name(node):
            raise ValueError(
                f"entry {index}: {node!r} is not a node name (1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit)"
            )
        if not path:
            raise ValueError(f"entry {index} ({entry!r}) has no path after {node}=")
        if node in seen:
            raise ValueError(f"entry {index}: node {node!r} is given twice")
        seen.add(node)
        out.append(SourcePath(node, Path(path)))
    if len(seen) > MAX_NODES:
        raise ValueError(f"{len(seen)} nodes; at most {MAX_NODES} are tracked")
    return out


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseModel):
    """Every setting of the shim, validated; see the README's settings table.

    Built by `load_settings`, which merges the environment and the env file itself (so that the
    environment wins, `MAINT_MESSAGE_<LANG>` is gathered, and every error names its variable).
    """

    # A plain model: `load_settings` is the one place that reads the environment and the env file, so an
    # explicit `environ` is all there is (nothing from os.environ leaks in).
    model_config = ConfigDict(extra="ignore")

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
    # The untagged PATH; NODE=PATH entries are in `progress_files` / `train_logs` (all of them).
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
    # The admin listener: the progress push, metrics and the API docs answer here only (404 on the public ones).
    admin_listen: str = DEFAULT_ADMIN_LISTEN
    cors_origins: list[str] = Field(default_factory=list)
    json_paths: list[str] = Field(default_factory=lambda: ["/api/"])
    health_paths: list[str] = Field(default_factory=list)
    message: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    bind_retry_seconds: float = Field(default=0, ge=0, le=600)
    # Fork the server from a parent that holds the sockets and forks a new one if it dies (app/supervise.py).
    supervise: bool = True
    # `x-should-retry: true` on a 503 while the ETA is at most this far away, else `false` (SDK retry loops).
    sdk_retry_max_seconds: int = Field(default=120, ge=0)
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
    # MAINT_PROGRESS_FILE / MAINT_TRAIN_LOG as parsed: every entry, the untagged one first.
    _sources: dict[str, tuple[SourcePath, ...]] = PrivateAttr(default_factory=dict)

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

    @field_validator("progress_file", "train_log", mode="before")
    @classmethod
    def _check_sources(cls, value: Any) -> Any:
        if isinstance(value, str):
            untagged = [item.path for item in parse_source_paths(value) if item.node is None]
            return untagged[0] if untagged else None
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _gather_sources(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """Keep every NODE=PATH entry of the two source settings (their field holds the untagged path only)."""
        sources: dict[str, tuple[SourcePath, ...]] = {}
        if isinstance(data, dict):
            for name in ("progress_file", "train_log"):
                value = data.get(name)
                if isinstance(value, str):
                    with suppress(ValueError):  # _check_sources reports it, named by its variable
                        sources[name] = tuple(parse_source_paths(value))
        settings = handler(data)
        for name in ("progress_file", "train_log"):
            if name not in sources:
                path = getattr(settings, name)
                sources[name] = (SourcePath(None, path),) if path is not None else ()
        settings._sources = {
            name: tuple(sorted(items, key=lambda item: (item.node is not None, item.node or "")))
            for name, items in sources.items()
        }
        if len(settings.source_nodes) > MAX_NODES:
            raise ValueError(
                f"MAINT_PROGRESS_FILE and MAINT_TRAIN_LOG name {len(settings.source_nodes)} nodes; "
                f"at most {MAX_NODES} are tracked"
            )
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

    @field_validator("admin_listen")
    @classmethod
    def _check_admin_listen(cls, value: str) -> str:
        if not value.strip():
            return DEFAULT_ADMIN_LISTEN
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
    def progress_files(self) -> tuple[SourcePath, ...]:
        """Every MAINT_PROGRESS_FILE entry: the untagged PATH first, then the NODE=PATH ones by node."""
        return self._sources.get("progress_file", ())

    @property
    def train_logs(self) -> tuple[SourcePath, ...]:
        """Every MAINT_TRAIN_LOG entry: the untagged PATH first, then the NODE=PATH ones by node."""
        return self._sources.get("train_log", ())

    @property
    def source_nodes(self) -> set[str]:
        """The nodes the configured progress files and logs are tagged with."""
        return {item.node for item in (*self.progress_files, *self.train_logs) if item.node is not None}

    @property
    def admin_address(self) -> AdminAddress | None:
        """The parsed MAINT_ADMIN_LISTEN; None when it is off."""
        return parse_admin_listen(self.admin_listen)

    def eta_deadline(self, started: datetime) -> datetime | None:
        """The static ETA as an absolute time, durations counted from `started`."""
        return parse_eta(self.eta, started) if self.eta else None

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
