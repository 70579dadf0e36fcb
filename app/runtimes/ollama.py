"""Ollama: a model unloaded with `keep_alive: 0` and loaded again by a request without a prompt; /api/ps
lists what is loaded (docs/runtimes.md has the source lines)."""

from __future__ import annotations

from ._base import PresetError, Runtime, Server, brief, wait_until


def _loaded(server: Server) -> bool:
    answer = server.expect("GET", "/api/ps")
    data = answer.json()
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise PresetError(f"GET {server.options.url}/api/ps answered {brief(answer.text)}, not {{\"models\": [...]}}")
    want = {server.options.model, server.options.model.removesuffix(":latest")}
    return any(isinstance(item, dict) and {item.get("name"), item.get("model")} & want for item in data["models"])


class Ollama(Runtime):
    name = "ollama"
    summary = "POST /api/generate keep_alive 0 (unload), POST /api/generate without a prompt (load); ready: /api/ps"
    needs_model = True
    sleep_timeout = 60.0
    wake_timeout = 300.0

    def sleep(self, server: Server) -> str:
        model = server.options.model
        seconds = self.timeout(server.options, self.sleep_timeout)
        server.expect("POST", "/api/generate", {"model": model, "keep_alive": 0}, timeout=seconds)
        took = wait_until(lambda: f"GET /api/ps still lists {model}" if _loaded(server) else None, seconds,
                          f"{model} is not unloaded")
        return f"{model} unloaded ({took:.1f}s)"

    def wake(self, server: Server) -> str:
        model = server.options.model
        seconds = self.timeout(server.options, self.wake_timeout)
        server.expect("POST", "/api/generate", {"model": model}, timeout=seconds)
        return f"{model} loaded"

    def ready(self, server: Server) -> str | None:
        return None if _loaded(server) else f"GET /api/ps does not list {server.options.model}"


PRESET = Ollama()
