"""What every runtime preset shares: the service's RUNTIME_* settings (validated with pydantic), a small
HTTP client (the standard library's urllib: no new dependency) whose errors name the server's answer, and
the Runtime base class a preset module subclasses."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PresetError(Exception):
    """A preset's call failed: the message names the request and the server's answer."""


class RuntimeOptions(BaseModel):
    """MAINT_SERVICE_<name>_RUNTIME_* of one service (checked by app/settings/scripts.py, with the preset's own
    requirements from Runtime.problems)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="the server's base URL, e.g. http://127.0.0.1:8000")
    model: str = Field("", description="the model the preset unloads, loads and asks (llama.cpp, Ollama, Triton)")
    level: int | None = Field(None, ge=0, description="vLLM's sleep level (1: weights offloaded, 2: discarded)")
    weights: str = Field("", description="where to load the new weights from on wake (SGLang, vLLM level 2)")
    timeout: float | None = Field(None, gt=0, le=3600, description="seconds for sleep, and for wake until ready")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")


@dataclass(frozen=True)
class Answer:
    status: int
    text: str

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None


class Server:
    """One inference server at `options.url`: requests with a bound on each, answers as they came."""

    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options

    def call(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Answer:
        """`method path` with a JSON body; every HTTP answer is returned (4xx and 5xx too); no answer at
        all raises PresetError naming the URL and why."""
        url = self.options.url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - operator's URL
                return Answer(response.status, response.read().decode(errors="replace"))
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read().decode(errors="replace"))
        except TimeoutError:
            raise PresetError(f"{method} {url}: no answer within {timeout:g}s") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise PresetError(f"{method} {url}: {reason}") from None

    def expect(self, method: str, path: str, body: Any = None, timeout: float = 10.0,
               ok: tuple[int, ...] = (200,)) -> Answer:
        """Like call, but an answer whose status is not in `ok` raises PresetError quoting it."""
        answer = self.call(method, path, body, timeout)
        if answer.status not in ok:
            raise PresetError(f"{method} {self.options.url}{path} answered {answer.status}: {brief(answer.text)}")
        return answer


def brief(text: str, limit: int = 200) -> str:
    """A server's answer for a one-line message."""
    text = " ".join(text.split())
    return (text[: limit - 3] + "...") if len(text) > limit else (text or "(empty body)")


def wait_until(check: Callable[[], str | None], seconds: float, what: str, every: float = 0.25) -> float:
    """Call `check` until it returns None (done) or `seconds` pass; returns the seconds it took. On the
    deadline raises PresetError: `what` and the last reason `check` gave. A PresetError raised by `check`
    (the server not answering yet) counts as a reason, not as the end."""
    start = time.monotonic()
    deadline = start + seconds
    while True:
        try:
            why = check()
        except PresetError as error:
            why = str(error)
        if why is None:
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise PresetError(f"{what} after {seconds:g}s: {why}")
        time.sleep(every)


class Runtime(ABC):
    """One kind of inference server that frees the GPU without exiting. A preset module in this package
    defines one subclass and `PRESET = TheSubclass()`; the registry (runtimes/__init__.py) finds it."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for messages and docs
    needs_model: ClassVar[bool] = False  # RUNTIME_MODEL required
    levels: ClassVar[tuple[int, ...]] = ()  # RUNTIME_LEVEL values it takes (none: the setting is refused)
    takes_weights: ClassVar[bool] = False  # RUNTIME_WEIGHTS means something to it
    sleep_timeout: ClassVar[float] = 60.0
    wake_timeout: ClassVar[float] = 300.0

    def problems(self, options: RuntimeOptions) -> list[str]:
        """What is wrong with these settings for this preset, as `KEY: why` (KEY without the prefix)."""
        out = []
        if self.needs_model and not options.model:
            out.append(f"RUNTIME_MODEL: the {self.name} preset needs the model's name")
        if options.level is not None and options.level not in self.levels:
            allowed = ", ".join(map(str, self.levels)) or "none (the setting means nothing to it)"
            out.append(f"RUNTIME_LEVEL: {options.level} is not a level of the {self.name} preset ({allowed})")
        if options.weights and not self.takes_weights:
            out.append(f"RUNTIME_WEIGHTS: the {self.name} preset cannot load weights from a path")
        return out

    def timeout(self, options: RuntimeOptions, default: float) -> float:
        return options.timeout if options.timeout is not None else default

    @abstractmethod
    def sleep(self, server: Server) -> str:
        """Free the GPU and return once the server says it has (or can say nothing more); what happened."""

    @abstractmethod
    def wake(self, server: Server) -> str:
        """Bring the model back (new weights where the server can load them); what happened. Readiness is
        checked afterwards with `ready`."""

    @abstractmethod
    def ready(self, server: Server) -> str | None:
        """None when the service answers its users again, else why not (the server's answer)."""
