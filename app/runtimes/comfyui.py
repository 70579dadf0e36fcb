"""ComfyUI: POST /free only sets flags that its prompt worker acts on later, and the next prompt loads
the models again (docs/runtimes.md has the source lines). Nothing needs waking: the first prompt after
the switch back loads what it needs. Whether the memory was freed is for the GPU check to tell."""

from __future__ import annotations

from ._base import Runtime, Server, brief


class ComfyUI(Runtime):
    name = "comfyui"
    summary = "POST /free {unload_models, free_memory}; wake: nothing (the next prompt loads); ready: /system_stats"
    sleep_timeout = 30.0
    wake_timeout = 60.0

    def sleep(self, server: Server) -> str:
        server.expect("POST", "/free", {"unload_models": True, "free_memory": True},
                      timeout=self.timeout(server.options, self.sleep_timeout))
        return "asked to unload the models and free memory (ComfyUI's worker does it when it next runs)"

    def wake(self, server: Server) -> str:
        return "nothing to wake: the next prompt loads its models"

    def ready(self, server: Server) -> str | None:
        answer = server.call("GET", "/system_stats")
        data = answer.json()
        if answer.status != 200 or not isinstance(data, dict) or "devices" not in data:
            return f"GET /system_stats answered {answer.status}: {brief(answer.text)}"
        return None


PRESET = ComfyUI()
