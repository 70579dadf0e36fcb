"""SGLang's server with `--enable-memory-saver` (docs/runtimes.md has the source lines). Releasing the
memory throws the weights away, so waking loads them again from disk (/update_weights_from_disk)."""

from __future__ import annotations

from ._base import PresetError, Runtime, Server, brief


class SGLang(Runtime):
    name = "sglang"
    summary = "POST /release_memory_occupation, POST /resume_memory_occupation + /update_weights_from_disk"
    takes_weights = True
    sleep_timeout = 120.0
    wake_timeout = 600.0

    def sleep(self, server: Server) -> str:
        seconds = self.timeout(server.options, self.sleep_timeout)
        server.expect("POST", "/release_memory_occupation", {}, timeout=seconds)
        return "memory released (weights and KV cache)"

    def wake(self, server: Server) -> str:
        seconds = self.timeout(server.options, self.wake_timeout)
        server.expect("POST", "/resume_memory_occupation", {}, timeout=seconds)
        path = server.options.weights
        if not path:
            info = server.expect("GET", "/model_info").json()
            path = str(info.get("model_path") or "") if isinstance(info, dict) else ""
            if not path:
                raise PresetError(f"GET {server.options.url}/model_info named no model_path to reload from; "
                                  "set RUNTIME_WEIGHTS")
        answer = server.call("POST", "/update_weights_from_disk", {"model_path": path}, timeout=seconds)
        data = answer.json()
        if answer.status != 200 or not isinstance(data, dict) or data.get("success") is not True:
            raise PresetError(f"POST {server.options.url}/update_weights_from_disk ({path}) answered "
                              f"{answer.status}: {brief(answer.text)}")
        return f"memory resumed; weights loaded from {path}"

    def ready(self, server: Server) -> str | None:
        health = server.call("GET", "/health", timeout=10)
        if health.status != 200:
            return f"GET /health answered {health.status}: {brief(health.text)}"
        body = {"text": "Hi", "sampling_params": {"max_new_tokens": 1, "temperature": 0}}
        answer = server.call("POST", "/generate", body, timeout=60)
        if answer.status != 200 or not isinstance(answer.json(), dict):
            return f"POST /generate (1 token) answered {answer.status}: {brief(answer.text)}"
        return None


PRESET = SGLang()
