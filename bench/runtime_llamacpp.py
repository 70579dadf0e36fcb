"""The llamacpp runtime preset against a real llama.cpp `llama-server` in router mode (a bench-style run,
not CI: the server is built from source first, about 20 minutes on 2 cores).

Build llama-server from the llama.cpp vendored in the `llama-cpp-python` source package:

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 && tar xzf llama_cpp_python-0.3.36.tar.gz
    L=llama_cpp_python-0.3.36/vendor/llama.cpp
    cmake -S $L -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF \
          -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON
    cmake --build build --target llama-server -j2

then, with a Python that has numpy (gguf-py comes with the source package):

    python bench/runtime_llamacpp.py --server build/bin/llama-server --gguf-py $L/gguf-py \\
        --shim .venv/bin/maintenance-shim

It writes a tiny random Llama as GGUF (an SPM vocabulary with byte tokens; nothing downloaded), starts
llama-server with --models-dir on it, and runs `maintenance-shim runtime ready|sleep|ready|wake|ready`
with MAINT_SERVICE_chat_RUNTIME=llamacpp, printing each step's exit, output and time as JSON.
Run to the end on 2026-12-06 (docs/runtimes.md has its figures).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def tiny_gguf(path: Path, gguf_py: Path) -> None:
    sys.path.insert(0, str(gguf_py))
    import gguf
    import numpy as np

    words = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + ["▁Hi", "▁hello", "▁w", "▁a"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    types += [gguf.TokenType.NORMAL] * 4
    n_vocab, n_embd, n_ff, n_head, n_layer = len(words), 128, 256, 2, 2
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(256)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(words)
    writer.add_token_scores([0.0] * 3 + [-1000.0] * 256 + [-1.0] * 4)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    rng = np.random.default_rng(0)

    def weights(*shape: int) -> object:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer.add_tensor("token_embd.weight", weights(n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", weights(n_vocab, n_embd))
    for i in range(n_layer):
        for name, shape in (("attn_q", (n_embd, n_embd)), ("attn_k", (n_embd, n_embd)), ("attn_v", (n_embd, n_embd)),
                            ("attn_output", (n_embd, n_embd)), ("ffn_gate", (n_ff, n_embd)),
                            ("ffn_up", (n_ff, n_embd)), ("ffn_down", (n_embd, n_ff))):
            writer.add_tensor(f"blk.{i}.{name}.weight", weights(*shape))
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True, help="the llama-server binary")
    parser.add_argument("--gguf-py", required=True, type=Path, help="llama.cpp's gguf-py directory")
    parser.add_argument("--shim", required=True, help="the maintenance-shim command")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runtime-llamacpp-"))
    (work / "models").mkdir()
    tiny_gguf(work / "models" / "tiny.gguf", args.gguf_py)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = (work / "server.log").open("wb")
    server = subprocess.Popen([args.server, "--models-dir", str(work / "models"), "--host", "127.0.0.1",
                               "--port", str(port), "-c", "256", "--no-models-autoload"],
                              stdout=log, stderr=log, start_new_session=True)
    env_file = work / "maintenance.env"
    env_file.write_text(f"MAINT_SERVICES=chat\nMAINT_SERVICE_chat_RUNTIME=llamacpp\n"
                        f"MAINT_SERVICE_chat_RUNTIME_URL={url}\nMAINT_SERVICE_chat_RUNTIME_MODEL=tiny\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
    steps = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/models", timeout=3) as answer:
                    models = json.load(answer)
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print((work / "server.log").read_text()[-3000:], file=sys.stderr)
                    return 1
                time.sleep(0.5)
        steps.append({"GET /models at start": models})
        for action in ("wake", "ready", "sleep", "ready", "wake", "ready"):
            start = time.monotonic()
            done = subprocess.run([args.shim, "runtime", action, "--service", "chat", "--env-file", str(env_file)],
                                  capture_output=True, text=True, timeout=600, env=env)
            steps.append({"action": action, "exit": done.returncode, "seconds": round(time.monotonic() - start, 2),
                          "out": (done.stdout + done.stderr).strip()})
        with urllib.request.urlopen(url + "/models", timeout=3) as answer:
            steps.append({"GET /models at the end": json.load(answer)})
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
    print(json.dumps(steps, indent=2))
    return 0 if all(step.get("exit", 0) == (1 if i == 3 else 0) for i, step in
                    enumerate(s for s in steps if "action" in s)) else 1


if __name__ == "__main__":
    sys.exit(main())
