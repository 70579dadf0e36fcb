"""llama.cpp's llama-server in router mode (`--models-dir` or presets): one model unloaded and loaded
again through /models/unload and /models/load (docs/runtimes.md has the source lines)."""

from __future__ import annotations

from ._base import PresetError, Runtime, Server, brief, wait_until


def _status(server: Server) -> str:
    """The model's status.value in GET /models: loaded, loading, unloaded, sleeping, ..."""
    answer = server.expect("GET", "/models")
    data = answer.json()
    name = server.options.model
    for item in (data.get("data") if isinstance(data, dict) else None) or []:
        if isinstance(item, dict) and (item.get("id") == name or name in (item.get("aliases") or [])):
            status = item.get("status")
            return str(status.get("value") if isinstance(status, dict) else status)
    raise PresetError(f"GET {server.options.url}/models does not list {name!r}: {brief(answer.text)}")


class LlamaCpp(Runtime):
    name = "llamacpp"
    summary = "POST /models/unload, POST /models/load; ready: GET /models says loaded and a completion"
    needs_model = True
    sleep_timeout = 60.0
    wake_timeout = 300.0

    def sleep(self, server: Server) -> str:
        model = server.options.model
        answer = server.call("POST", "/models/unload", {"model": model})
        if answer.status != 200 and "not running" not in answer.text:
            raise PresetError(f"POST {server.options.url}/models/unload ({model}) answered {answer.status}: "
                              f"{brief(answer.text)}")

        def unloaded() -> str | None:
            status = _status(server)
            return None if status == "unloaded" else f"GET /models says {model} is {status}"

        took = wait_until(unloaded, self.timeout(server.options, self.sleep_timeout), f"{model} is not unloaded")
        return f"{model} unloaded ({took:.1f}s)"

    def wake(self, server: Server) -> str:
        model = server.options.model
        answer = server.call("POST", "/models/load", {"model": model})
        if answer.status != 200 and "already running" not in answer.text:
            raise PresetError(f"POST {server.options.url}/models/load ({model}) answered {answer.status}: "
                              f"{brief(answer.text)}")
        return f"{model} loading"

    def ready(self, server: Server) -> str | None:
        model = server.options.model
        status = _status(server)
        if status != "loaded":
            return f"GET /models says {model} is {status}"
        body = {"model": model, "prompt": "Hi", "max_tokens": 1, "temperature": 0}
        answer = server.call("POST", "/v1/completions", body, timeout=60)
        if answer.status != 200:
            return f"POST /v1/completions ({model}, 1 token) answered {answer.status}: {brief(answer.text)}"
        return None


PRESET = LlamaCpp()
