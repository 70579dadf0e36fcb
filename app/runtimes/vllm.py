"""vLLM's OpenAI server with `--enable-sleep-mode` and VLLM_SERVER_DEV_MODE=1 (docs/runtimes.md has the
source lines). Asleep, vLLM still answers /health and /v1/models with 200 and holds a completion until it
is woken: the shim answers the users meanwhile."""

from __future__ import annotations

from ._base import PresetError, Runtime, Server, brief, wait_until


def _sleeping(server: Server) -> bool:
    answer = server.expect("GET", "/is_sleeping")
    data = answer.json()
    if not isinstance(data, dict) or not isinstance(data.get("is_sleeping"), bool):
        raise PresetError(f"GET {server.options.url}/is_sleeping answered {brief(answer.text)}, "
                          "not {\"is_sleeping\": true|false}")
    return bool(data["is_sleeping"])


def _model(server: Server) -> str:
    if server.options.model:
        return server.options.model
    answer = server.expect("GET", "/v1/models")
    data = answer.json()
    try:
        return str(data["data"][0]["id"])
    except (TypeError, KeyError, IndexError):
        raise PresetError(f"GET {server.options.url}/v1/models listed no model: {brief(answer.text)}") from None


class VLLM(Runtime):
    name = "vllm"
    summary = "POST /sleep?level=N, POST /wake_up (+ reload_weights at level 2); ready: not sleeping, a completion"
    levels = (1, 2)
    takes_weights = False
    sleep_timeout = 120.0
    wake_timeout = 300.0

    def level(self, server: Server) -> int:
        return server.options.level or 1

    def sleep(self, server: Server) -> str:
        level = self.level(server)
        seconds = self.timeout(server.options, self.sleep_timeout)
        server.expect("POST", f"/sleep?level={level}", timeout=seconds)
        took = wait_until(lambda: None if _sleeping(server) else "GET /is_sleeping still says false",
                          seconds, "vLLM is not asleep")
        return f"asleep (level {level}; /is_sleeping true {took:.1f}s after /sleep answered)"

    def wake(self, server: Server) -> str:
        seconds = self.timeout(server.options, self.wake_timeout)
        server.expect("POST", "/wake_up", timeout=seconds)
        if self.level(server) == 2:
            # Level 2 threw the weights away: load them again from the model's path (the checkpoint the
            # training wrote there, if it did).
            server.expect("POST", "/collective_rpc", {"method": "reload_weights"}, timeout=seconds)
            return "woken; weights reloaded from the model's path (collective_rpc reload_weights)"
        return "woken"

    def ready(self, server: Server) -> str | None:
        if _sleeping(server):
            return "GET /is_sleeping says true"
        model = _model(server)
        body = {"model": model, "prompt": "Hi", "max_tokens": 1, "temperature": 0}
        answer = server.call("POST", "/v1/completions", body, timeout=60)
        data = answer.json()
        if answer.status != 200 or not isinstance(data, dict) or not data.get("choices"):
            return f"POST /v1/completions (model {model!r}, 1 token) answered {answer.status}: {brief(answer.text)}"
        return None


PRESET = VLLM()
