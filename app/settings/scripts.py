"""The switching scripts' settings: validated here, in the same schema and from the same reading of the
environment and the env file as the shim's (app/settings/shim.py), and handed to bash by `maintenance-shim env
--shell` as resolved, quoted assignments. No setting is parsed or validated in scripts/.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import runtimes
from ..statedir import default_state_dir
from .env import SettingsError, describe_error, read_environment
from .proxies import ProxySettings, registry
from .shim import ServiceKind, Settings, parse_listener
from .sources import SourcePath
from .sources import registry as source_registry
from .urls import check_http_url

OWN_SWITCHES = ("none", "port")  # besides the registered proxies (settings/proxies/)
COMMON_SERVICE_KEYS: dict[str, str] = {  # MAINT_SERVICE_<name>_<KEY>: what each key is (each proxy adds its own)
    "START": "command that starts the service",
    "STOP": "command that stops it",
    "DRAIN": "command that returns when no generation is in flight",
    "HEALTH_URL": "answers 2xx when the service is ready (default: a TCP connect to LISTEN)",
    "LISTEN": "HOST:PORT the service listens on (port mode: what the shim takes over)",
    "INCLUDE": "a proxy switched by an include file (nginx, Caddy, Traefik): the file holding the service's upstream",
    "PROXY_URL": "the service's URL through the proxy, to confirm each switch",
    "RUNTIME": "how the service frees the GPU: `command` (its STOP and START hooks, the default) or a preset that "
    "puts the running server to sleep and wakes it: " + ", ".join(f"`{name}`" for name in runtimes.names())
    + " (docs/runtimes.md; not with MAINT_SWITCH=port)",
    "RUNTIME_URL": "a preset's server, e.g. `http://127.0.0.1:8000` (required with a preset)",
    "RUNTIME_MODEL": "the model a preset unloads, loads and asks (required by llamacpp, ollama, triton; vllm: "
    "default the first of /v1/models)",
    "RUNTIME_LEVEL": "vllm: the sleep level, `1` (weights offloaded to CPU, the default) or `2` (discarded, "
    "reloaded from the model's path on wake)",
    "RUNTIME_WEIGHTS": "sglang: the path to load the weights from on wake (default its /model_info model_path)",
    "RUNTIME_TIMEOUT": "seconds for a preset's sleep, and for its wake until ready (default the preset's own)",
}
SERVICE_KEYS: dict[str, str] = {
    **COMMON_SERVICE_KEYS,
    **{key: meaning for proxy in registry().values() for key, meaning in proxy.service_keys.items()},
}
RUNTIME_OPTION_KEYS = ("RUNTIME_URL", "RUNTIME_MODEL", "RUNTIME_LEVEL", "RUNTIME_WEIGHTS", "RUNTIME_TIMEOUT")


def switches() -> tuple[str, ...]:
    """Every value MAINT_SWITCH accepts."""
    return (*OWN_SWITCHES, *registry())


_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DISPLAY_KEY_RE = re.compile(r"DISPLAY_NAME(?:_[A-Z]{2,3}(?:_[A-Z0-9]+)?)?")
_KINDS: dict[str, ServiceKind] = {"page": "page", "api": "api", "openai": "openai"}


@dataclass(frozen=True)
class ServiceSpec:
    """One replaced service: `studio` or `video:api` in MAINT_SERVICES, and its MAINT_SERVICE_<name>_* keys."""

    name: str
    kind: ServiceKind
    tag: str  # as written: name or name:kind, what the shim's --listen gets after `=`
    keys: dict[str, str]


def parse_services(text: str) -> list[tuple[str, ServiceKind, str]]:
    """`studio video:api` (blanks or commas) -> [(name, kind, tag)]; raises ValueError naming the bad one."""
    out: list[tuple[str, ServiceKind, str]] = []
    for item in (word for word in re.split(r"[\s,]+", text.strip()) if word):
        name, _, kind = item.partition(":")
        if not _NAME_RE.match(name):
            raise ValueError(f"{name!r} must be letters, digits and '_' (it names MAINT_SERVICE_{name}_* settings)")
        if kind and kind not in _KINDS:
            raise ValueError(f"{item!r}: the kind after ':' must be page, api or openai")
        if any(seen == name for seen, _, _ in out):
            raise ValueError(f"{name!r} is listed twice")
        out.append((name, _KINDS[kind or "page"], item))
    return out


def _is_root() -> bool:
    return os.geteuid() == 0


class ScriptSettings(BaseModel):
    """Every setting of the switching scripts; see docs/settings.md (generated from these fields)."""

    model_config = ConfigDict(extra="ignore")

    switch: str = Field(
        "none", description="how traffic reaches the shim: a proxy (" + ", ".join(f"`{name}`" for name in registry())
        + "), `port` takeover, or `none`"
    )
    services: str = Field("", description="the replaced services, e.g. `studio video:api images:openai`")
    shim_cmd: str | None = Field(
        None,
        description="the shim command (split on blanks); unset: the scripts' own, found as for reading the "
        "settings (the `.venv/` beside scripts/, then `maintenance-shim` on PATH)",
    )
    shim_managed: Literal["script", "external"] = Field(
        "script", description="`script` (the scripts run the shim) or `external` (systemd does; not with port mode)"
    )
    shim_start_timeout: int = Field(20, ge=0, description="seconds for the shim to pass its checks")
    shim_stop_timeout: int = Field(10, ge=0, description="seconds from SIGTERM to SIGKILL")
    shim_nice: int | None = Field(
        None, ge=-20, le=19, description="the script-run shim's `nice` level next to the training job's data loaders"
    )
    bind_retry_seconds: int | None = Field(
        None, ge=0, le=600, description="port mode: seconds to wait for a service's port to be free"
    )
    verify_path: str = Field("/", description="the sample request that must get 503 with Retry-After before a switch")
    lock_timeout: int = Field(10, ge=0, description="seconds to wait for another start or stop")
    drain_timeout: int = Field(600, ge=0, description="seconds a DRAIN hook may take (then: warn, go on)")
    stop_timeout: int = Field(120, ge=0, description="seconds a STOP hook may take (then: fail, roll back)")
    start_timeout: int = Field(120, ge=0, description="seconds a START hook may take")
    health_timeout: int = Field(300, ge=0, description="seconds for every service to pass its health check on stop")
    settle_seconds: float = Field(
        1,
        ge=0,
        le=600,
        description="pause after a proxy shows the new side, before the side it left is stopped, for the "
        'requests it took in before the switch (docs/switching.md, "The pause after a switch")',
    )
    switch_timeout: int = Field(10, ge=0, description="seconds for a PROXY_URL to show the switch")
    state_dir: Path | None = Field(
        None,
        description="lock, state, saved includes, shim log, run events and history (exported to the shim)",
    )
    shim_log: Path | None = Field(None, description="the shim's output")
    gpu_free_timeout: int = Field(
        60, ge=0, le=3600, description="with_maintenance.sh: seconds to wait, after the services stopped or went to "
        "sleep, for the GPUs' memory in use to drop below MAINT_GPU_FREE_MIB (nvidia-smi); then it warns, naming "
        "what holds memory, and runs CMD anyway. `0`: no check"
    )
    gpu_free_mib: int = Field(1024, ge=0, description="MiB in use per GPU that still counts as free")
    # MAINT_SERVICE_<name>_<KEY>, gathered by load_script_settings.
    service_keys: dict[str, dict[str, str]] = Field(default_factory=dict, exclude=True)
    # Each registered proxy's own settings, validated by load_script_settings (defaults when built directly).
    proxy_settings: dict[str, ProxySettings] = Field(default_factory=dict, exclude=True)

    @field_validator("switch")
    @classmethod
    def _check_switch(cls, value: str) -> str:
        value = value.strip()
        if value not in switches():
            raise ValueError(f"{value!r} is not one of {', '.join(switches())}")
        return value

    @field_validator("services")
    @classmethod
    def _check_services(cls, value: str) -> str:
        parse_services(value)
        return value.strip()

    @field_validator("shim_cmd")
    @classmethod
    def _check_shim_cmd(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("verify_path")
    @classmethod
    def _check_verify_path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} must be a path starting with '/', without blanks")
        return value

    @model_validator(mode="after")
    def _check_together(self) -> ScriptSettings:
        if self.switch == "port" and self.shim_managed == "external":
            raise ValueError(
                "MAINT_SHIM_MANAGED=external does not work with MAINT_SWITCH=port "
                "(the shim must bind the services' ports)"
            )
        if self.switch != "none" and not self.service_specs:
            raise ValueError(f"MAINT_SERVICES is empty; MAINT_SWITCH={self.switch} needs the services to switch")
        problems = [line for spec in self.service_specs for line in self._check_service(spec)]
        listed = {spec.name for spec in self.service_specs}
        problems += [
            f"MAINT_SERVICE_{name}_{key}: {name!r} is not a service in MAINT_SERVICES "
            f"({', '.join(sorted(listed)) or 'none listed'}); a misspelled name?"
            for name, keys in sorted(self.service_keys.items())
            if name not in listed
            for key in sorted(keys)
            if not _DISPLAY_KEY_RE.fullmatch(key)  # the shim's own key, for any listener's tag
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _check_service(self, spec: ServiceSpec) -> list[str]:
        prefix = f"MAINT_SERVICE_{spec.name}_"
        keys = spec.keys
        problems = []
        for key in ("HEALTH_URL", "PROXY_URL"):
            if keys.get(key):
                try:
                    check_http_url(keys[key])
                except ValueError as error:
                    problems.append(f"{prefix}{key}: {error}")
        if keys.get("LISTEN"):
            try:
                listener = parse_listener(keys["LISTEN"])
                if listener.service:
                    raise ValueError(f"{keys['LISTEN']!r} is HOST:PORT, without a tag")
            except ValueError as error:
                problems.append(f"{prefix}LISTEN: {error}")
        elif self.switch == "port":
            problems.append(f"{prefix}LISTEN is not set (needed by MAINT_SWITCH=port)")
        proxy = registry().get(self.switch)
        if proxy is not None and proxy.include and not keys.get("INCLUDE"):
            problems.append(f"{prefix}INCLUDE is not set (needed by MAINT_SWITCH={self.switch})")
        for each in registry().values():
            problems += each.check_service(prefix, keys, self.switch)
        problems += self._check_runtime(spec)
        unknown = sorted(
            key
            for key in set(self.service_keys.get(spec.name, {})) - set(SERVICE_KEYS)
            if not _DISPLAY_KEY_RE.fullmatch(key)  # the shim's: the name people see, per language
        )
        problems += [f"{prefix}{key}: not a service setting (one of {', '.join(SERVICE_KEYS)})" for key in unknown]
        return problems

    def _check_runtime(self, spec: ServiceSpec) -> list[str]:
        prefix = f"MAINT_SERVICE_{spec.name}_"
        keys = spec.keys
        runtime = keys["RUNTIME"]
        if runtime == runtimes.COMMAND:
            return [f"{prefix}{key}: needs {prefix}RUNTIME set to a preset ({', '.join(runtimes.names())})"
                    for key in RUNTIME_OPTION_KEYS if keys.get(key)]
        if runtime not in runtimes.names():
            return [f"{prefix}RUNTIME: {runtime!r} is not one of {runtimes.COMMAND}, {', '.join(runtimes.names())}"]
        problems = []
        if self.switch == "port":
            problems.append(f"{prefix}RUNTIME: a sleeping {runtime} server keeps its port, so MAINT_SWITCH=port "
                            f"cannot hand it to the shim; use a proxy ({', '.join(registry())})")
        problems += [f"{prefix}{hook}: not used with RUNTIME={runtime} (the preset sleeps and wakes the server); "
                     "remove it" for hook in ("STOP", "START") if keys.get(hook)]
        try:
            options = runtime_options(keys)
        except ValidationError as error:
            for err in error.errors():
                key = f"RUNTIME_{str(err['loc'][0]).upper()}" if err.get("loc") else "RUNTIME"
                if err.get("type") == "missing":
                    problems.append(f"{prefix}{key} is not set (needed by RUNTIME={runtime})")
                else:
                    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
                    problems.append(f"{prefix}{key}: {message} (got {err.get('input')!r})")
            return problems
        return problems + [prefix + line for line in runtimes.get(runtime).problems(options)]

    @property
    def service_specs(self) -> list[ServiceSpec]:
        """The services with every MAINT_SERVICE_<name>_<KEY> resolved (defaults filled in, "" when unset)."""
        specs = []
        for name, kind, tag in parse_services(self.services):
            given = self.service_keys.get(name, {})
            keys = {key: given.get(key, "") for key in SERVICE_KEYS}
            for proxy in registry().values():
                keys.update(proxy.service_defaults(name, keys))
            keys["RUNTIME"] = keys["RUNTIME"].strip() or runtimes.COMMAND
            specs.append(ServiceSpec(name, kind, tag, keys))
        return specs

    def resolved(self, environ: dict[str, str]) -> dict[str, str]:
        """Every script setting as the scripts see it: MAINT_NAME -> value, defaults that depend on others
        (or on the user, or on XDG_RUNTIME_DIR in `environ`) filled in."""
        root = _is_root()
        state_dir = self.state_dir if self.state_dir is not None else default_state_dir(environ)
        values: dict[str, Any] = {
            **self.model_dump(exclude={"service_keys"}),
            "shim_nice": self.shim_nice if self.shim_nice is not None else (-5 if root else 0),
            "bind_retry_seconds": self.bind_retry_seconds if self.bind_retry_seconds is not None else 10,
            "state_dir": state_dir,
            "shim_log": self.shim_log or state_dir / "shim.log",
        }
        for name, proxy in registry().items():
            values.update(proxy.resolved(self.proxy_settings.get(name) or proxy.settings()))
        out = {f"MAINT_{name.upper()}": _text(value) for name, value in values.items()}
        for spec in self.service_specs:
            out.update({f"MAINT_SERVICE_{spec.name}_{key}": value for key, value in spec.keys.items()})
        return out


def runtime_options(keys: dict[str, str]) -> runtimes.RuntimeOptions:
    """A service's RUNTIME_* keys as the preset's options (pydantic ValidationError when one is bad); an
    empty value is unset."""
    given = {key.removeprefix("RUNTIME_").lower(): keys[key].strip() for key in RUNTIME_OPTION_KEYS if keys.get(key)}
    return runtimes.RuntimeOptions.model_validate(given)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_script_settings(
    env_file: str | Path | None = None, environ: dict[str, str] | None = None
) -> tuple[Settings, ScriptSettings, dict[str, str]]:
    """The shim's and the scripts' settings from one reading; plus the scripts' resolved values.

    Raises SettingsError with one line per bad setting (the shim's and the scripts'), each named.
    """
    from .shim import load_settings

    merged = read_environment(env_file, environ)
    errors: list[str] = []
    shim: Settings | None = None
    try:
        shim = load_settings(env_file, environ, values=merged)
    except SettingsError as error:
        errors += error.lines
    upper = {key.upper(): value for key, value in merged.items()}
    service_keys: dict[str, dict[str, str]] = {}
    for key, value in merged.items():
        if key.upper().startswith("MAINT_SERVICE_"):
            name, item = _split_service_key(key[len("MAINT_SERVICE_") :], upper.get("MAINT_SERVICES", ""))
            service_keys.setdefault(name, {})[item] = value
    internal = {"service_keys", "proxy_settings"}
    known = (set(ScriptSettings.model_fields) - internal).union(
        *(proxy.settings.model_fields for proxy in registry().values())
    )
    fields = {key[len("MAINT_") :].lower(): value for key, value in upper.items() if key.startswith("MAINT_")}
    values = {k: v for k, v in fields.items() if v != "" and k in known}  # an empty value is the default
    proxy_settings: dict[str, ProxySettings] = {}
    for name, proxy in registry().items():
        try:
            proxy_settings[name] = proxy.settings.model_validate(values)
        except ValidationError as error:
            for err in error.errors():
                errors += describe_error(err).split("\n")
    scripts: ScriptSettings | None = None
    try:
        scripts = ScriptSettings.model_validate(
            {**values, "service_keys": service_keys, "proxy_settings": proxy_settings}
        )
    except ValidationError as error:
        for err in error.errors():
            errors += describe_error(err).split("\n")
    if errors or shim is None or scripts is None:
        raise SettingsError(errors)
    env = dict(os.environ if environ is None else environ)
    return shim, scripts, scripts.resolved(env)


def _split_service_key(rest: str, services: str) -> tuple[str, str]:
    """`video_api_HEALTH_URL` -> (`video_api`, `HEALTH_URL`): the longest listed service name that fits,
    else (a service not listed, whose keys are ignored) the longest known key that ends it."""
    try:
        names = sorted((name for name, _, _ in parse_services(services)), key=len, reverse=True)
    except ValueError:
        names = []
    for name in names:
        if rest.startswith(name + "_") and rest[len(name) + 1 :].upper() in SERVICE_KEYS:
            return name, rest[len(name) + 1 :].upper()
    for name in names:  # a listed service with a key that does not exist: reported, not ignored
        if rest.startswith(name + "_"):
            return name, rest[len(name) + 1 :].upper()
    display = re.search(r"_(DISPLAY_NAME(?:_[A-Za-z]{2,3}(?:_[A-Za-z0-9]+)?)?)$", rest, re.IGNORECASE)
    if display:  # the shim's own key, for a listener's tag: MAINT_SERVICE_<tag>_DISPLAY_NAME[_<LANG>]
        return rest[: display.start()], display[1].upper()
    for key in sorted(SERVICE_KEYS, key=len, reverse=True):
        if rest.upper().endswith("_" + key):
            return rest[: -len(key) - 1], key
    name, _, key = rest.rpartition("_")
    return name, key.upper()


def shell_assignments(settings: Settings, scripts: ScriptSettings, resolved: dict[str, str]) -> str:
    """Bash for `eval`: every script setting exported, the shim's settings the scripts read, and the
    services as the arrays SERVICES and SERVICE_TAG."""
    shared = {
        "MAINT_LISTEN": ",".join(settings.listen),
        "MAINT_CORS_ORIGINS": ",".join(settings.cors_origins),
        # say() in scripts/lib/log.sh logs JSON lines with it; notify() calls `maintenance-shim notify` when it is set.
        "MAINT_LOG_FORMAT": settings.log_format,
        "MAINT_NOTIFY_URLS": " ".join(settings.notify_urls),
        # Every progress source's setting (NODE=PATH entries kept as written): with_maintenance.sh tees the
        # command's output to the train log the shim follows, and gives the command the progress file.
        **{f"MAINT_{name.upper()}": _sources_text(settings.source_paths(name)) for name in source_registry()},
    }
    lines = [f"export {name}={shlex.quote(value)}" for name, value in sorted({**resolved, **shared}.items())]
    specs = scripts.service_specs
    # The untagged path of each (the one this machine's trainer writes), for with_maintenance.sh.
    lines.append(f"TRAIN_LOG={shlex.quote(_untagged(settings.source_paths('train_log')))}")
    lines.append(f"PROGRESS_FILE={shlex.quote(_untagged(settings.source_paths('progress_file')))}")
    lines.append("SERVICES=(" + " ".join(shlex.quote(spec.name) for spec in specs) + ")")
    lines.append("SERVICE_TAG=(" + " ".join(f"[{spec.name}]={shlex.quote(spec.tag)}" for spec in specs) + ")")
    lines += _address_assignments(settings, scripts)
    return "\n".join(lines) + "\n"


def _sources_text(items: tuple[SourcePath, ...]) -> str:
    return ",".join(f"{item.node}={item.path}" if item.node else str(item.path) for item in items)


def _untagged(items: tuple[SourcePath, ...]) -> str:
    return next((str(item.path) for item in items if item.node is None), "")


def probe_address(host: str, port: int) -> str:
    """Where to connect to a listener bound to `host`: a wildcard address becomes loopback."""
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address_assignments(settings: Settings, scripts: ScriptSettings) -> list[str]:
    """The addresses the scripts use, parsed here once: SHIM_SPECS (the shim's --listen values) with
    SHIM_PROBES (where to reach each), SHIM_ADDR[name] (the shim listener answering for a proxied service:
    tagged =name, else the first untagged, else the first), SERVICE_PROBE[name] and SERVICE_PORT[name] (a
    service's own LISTEN), FLEET (every node of MAINT_SERVICE_<name>_NODES, in order of first mention) and
    SERVICE_NODES[name] (" n1 n2 ", for a match on " NODE ")."""
    specs: list[str] = []
    probes: list[str] = []
    service_probe: dict[str, str] = {}
    service_port: dict[str, str] = {}
    for spec in scripts.service_specs:
        if spec.keys.get("LISTEN"):
            own = parse_listener(spec.keys["LISTEN"])
            service_probe[spec.name] = probe_address(own.host, own.port)
            service_port[spec.name] = str(own.port)
            if scripts.switch == "port":
                host = f"[{own.host}]" if ":" in own.host else own.host
                specs.append(f"{host}:{own.port}={spec.tag}")
                probes.append(service_probe[spec.name])
    shim_addr: dict[str, str] = {}
    if scripts.switch != "port":
        listeners = [(text, parse_listener(text)) for text in settings.listen]
        specs = [text for text, _ in listeners]
        probes = [probe_address(item.host, item.port) for _, item in listeners]
        untagged = next((probe for probe, (_, item) in zip(probes, listeners, strict=True) if not item.service), "")
        for spec in scripts.service_specs:
            tagged = [probe for probe, (_, item) in zip(probes, listeners, strict=True) if item.service == spec.name]
            shim_addr[spec.name] = (tagged or [untagged or (probes[0] if probes else "")])[0]

    def array(name: str, values: list[str]) -> str:
        return f"{name}=(" + " ".join(shlex.quote(value) for value in values) + ")"

    def table(name: str, values: dict[str, str]) -> str:
        return f"{name}=(" + " ".join(f"[{key}]={shlex.quote(value)}" for key, value in values.items()) + ")"

    nodes = {spec.name: [node for node in re.split(r"[\s,]+", spec.keys.get("NODES", "").strip()) if node]
             for spec in scripts.service_specs}
    fleet = list(dict.fromkeys(node for names in nodes.values() for node in names))
    return [
        array("FLEET", fleet),
        table("SERVICE_NODES", {name: f" {' '.join(names)} " for name, names in nodes.items() if names}),
        array("SHIM_SPECS", specs),
        array("SHIM_PROBES", probes),
        table("SHIM_ADDR", shim_addr),
        table("SERVICE_PROBE", service_probe),
        table("SERVICE_PORT", service_port),
    ]


def listen_warnings(settings: Settings, scripts: ScriptSettings) -> list[str]:
    """Settings that work but probably not as meant: a proxied service without a shim listener of its own."""
    if scripts.switch in ("none", "port"):
        return []
    tagged = {listener.service for listener in settings.listeners}
    return [
        f"MAINT_LISTEN has no listener tagged ={spec.name}; its users get the shim's generic answer "
        f"(add HOST:PORT={spec.tag})"
        for spec in scripts.service_specs
        if spec.name not in tagged
    ]
