"""NVIDIA Triton Inference Server with `--model-control-mode=explicit`: the model unloaded and loaded
again from its repository (new weights there are picked up) through the repository API (docs/runtimes.md
has the source lines)."""

from __future__ import annotations

from urllib.parse import quote

from ._base import Runtime, Server, brief, wait_until


class Triton(Runtime):
    name = "triton"
    summary = "POST /v2/repository/models/NAME/unload and /load; ready: GET /v2/models/NAME/ready 200"
    needs_model = True
    sleep_timeout = 120.0
    wake_timeout = 600.0

    def sleep(self, server: Server) -> str:
        model = quote(server.options.model, safe="")
        seconds = self.timeout(server.options, self.sleep_timeout)
        server.expect("POST", f"/v2/repository/models/{model}/unload", {}, timeout=seconds)

        def gone() -> str | None:
            answer = server.call("GET", f"/v2/models/{model}/ready")
            return f"GET /v2/models/{model}/ready still answers 200" if answer.status == 200 else None

        took = wait_until(gone, seconds, f"{server.options.model} is not unloaded")
        return f"{server.options.model} unloaded ({took:.1f}s)"

    def wake(self, server: Server) -> str:
        model = quote(server.options.model, safe="")
        server.expect("POST", f"/v2/repository/models/{model}/load", {},
                      timeout=self.timeout(server.options, self.wake_timeout))
        return f"{server.options.model} loaded from the model repository"

    def ready(self, server: Server) -> str | None:
        model = quote(server.options.model, safe="")
        answer = server.call("GET", f"/v2/models/{model}/ready")
        if answer.status == 200:
            return None
        return f"GET /v2/models/{model}/ready answered {answer.status}: {brief(answer.text)}"


PRESET = Triton()
