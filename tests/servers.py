"""Real OpenAI-compatible servers on loopback for the tests.

Four pieces, all real HTTP over 127.0.0.1 and real llama.cpp inference on the embedded GGUF:

* `start_llama_cpp_server`: the upstream `python -m llama_cpp.server`. Its echo log-probabilities are
  shifted by one token (llama_cpp/llama.py reads token i's log-probability from the logits row that
  predicts token i+1; upstream issue abetlen/llama-cpp-python#1983), so it is our real-world
  example of a server the capability check must reject.
* `start_reference_server` (`python tests/servers.py reference ...`): a minimal OpenAI-compatible
  server over `llama_cpp.Llama` whose echo log-probabilities are computed correctly (row i-1 for token
  i). Chat and plain completions go straight to llama_cpp's own implementations.
* `start_llama_server`: llama.cpp's own C++ `llama-server` (built by scripts/build_llama_server.sh), the
  server that continues a final assistant message (prefill) for the word-rank test's prefill mode.
* `LogprobProxy`: a proxy in front of either that breaks responses the ways servers do in the wild:
  `strip` (only generated-token log-probabilities), `shift` (each value attached to the next token),
  `429` (the first N requests get 429 + Retry-After), `leak` (the first N get a 503 whose message
  quotes the Authorization header, to prove the client scrubs the key).

The API key travels to the subprocess through an environment variable, never argv.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY_ENV = "GHOSTSENT_TEST_SERVER_KEY"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_key() -> str:
    return "gs-test-" + secrets.token_hex(16)


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    base_url: str  # ends in /v1
    key: str
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _wait_ready(sp: ServerProcess, timeout: float) -> None:
    deadline = time.time() + timeout
    req = urllib.request.Request(sp.base_url + "/models", headers={"Authorization": f"Bearer {sp.key}"})
    while time.time() < deadline:
        if sp.proc.poll() is not None:
            raise RuntimeError(f"server exited with {sp.proc.returncode}; log: {sp.log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            pass
        time.sleep(0.3)
    sp.stop()
    raise RuntimeError(f"server not ready after {timeout}s; log: {sp.log_path.read_text()[-2000:]}")


def _spawn(args: list[str], key: str, log_dir: Path, name: str, port: int, timeout: float) -> ServerProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    env = dict(os.environ, **{KEY_ENV: key})
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    sp = ServerProcess(proc, f"http://127.0.0.1:{port}/v1", key, log_path)
    _wait_ready(sp, timeout)
    return sp


def start_llama_cpp_server(gguf: Path, log_dir: Path, timeout: float = 120) -> ServerProcess:
    """The upstream llama-cpp-python server (logits_all is what makes echo log-probabilities possible)."""
    port = free_port()
    key = new_key()
    # llama_cpp.server reads settings from the environment too (pydantic-settings): API_KEY keeps the
    # key out of the process list.
    args = [sys.executable, "-c",
            "import os, sys; os.environ['API_KEY'] = os.environ[%r]; "
            "from llama_cpp.server.__main__ import main; sys.argv[0] = 'llama_cpp.server'; main()" % KEY_ENV,
            "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512",
            "--logits_all", "true", "--verbose", "false", "--n_threads", "1", "--n_threads_batch", "1"]
    return _spawn(args, key, log_dir, "llama_cpp_server", port, timeout)


def llama_server_binary() -> str | None:
    """llama.cpp's own C++ server (`llama-server`): $GHOSTSENT_LLAMA_SERVER, else on PATH.
    `bash scripts/build_llama_server.sh` builds it from the llama.cpp sources llama-cpp-python vendors."""
    import shutil

    return os.environ.get("GHOSTSENT_LLAMA_SERVER") or shutil.which("llama-server")


def start_llama_server(binary: str, gguf: Path, log_dir: Path, timeout: float = 120) -> ServerProcess:
    """llama.cpp's C++ `llama-server`: continues a final assistant message (prefill), which the Python
    server does not. The key goes in through LLAMA_API_KEY (its documented environment variable)."""
    port = free_port()
    key = new_key()
    args = ["/bin/sh", "-c", f'LLAMA_API_KEY="${KEY_ENV}" exec "$0" "$@"', binary, "-m", str(gguf),
            "--host", "127.0.0.1", "--port", str(port), "-c", "1024", "-np", "1", "-t", "1", "--no-webui"]
    return _spawn(args, key, log_dir, "llama_server_cpp", port, timeout)


def start_reference_server(gguf: Path, log_dir: Path, timeout: float = 120) -> ServerProcess:
    port = free_port()
    key = new_key()
    args = [sys.executable, str(Path(__file__).resolve()), "reference", "--model", str(gguf), "--port", str(port)]
    return _spawn(args, key, log_dir, "reference_server", port, timeout)


# ------------------------------------------------------------------------------------ reference server
def _serve_reference(model: str, port: int) -> None:
    import numpy as np
    from llama_cpp import Llama

    key = os.environ.get(KEY_ENV, "")
    # one thread: llama.cpp's spinning workers collapse when the 2 CI cores are shared (10x slower)
    llm = Llama(model_path=model, n_ctx=2048, logits_all=True, verbose=False, n_threads=1, n_threads_batch=1, seed=0)
    lock = threading.Lock()
    name = Path(model).name

    def echo_logprobs(prompt: str, generated: str, k: int) -> dict[str, Any]:
        text = prompt + generated
        toks = llm.tokenize(text.encode("utf-8"), special=True)
        llm.reset()
        llm.eval(toks)
        rows = np.asarray(llm.scores[: len(toks)], dtype=np.float64)
        rows = rows - rows.max(-1, keepdims=True)
        lp = rows - np.log(np.exp(rows).sum(-1, keepdims=True))
        tokens, offsets, vals, tops = [], [], [], []
        for i, t in enumerate(toks):
            if t == llm.token_bos():
                continue
            s = llm.detokenize([t], prev_tokens=toks[:i]).decode("utf-8", errors="ignore")
            tokens.append(s)
            offsets.append(len(llm.detokenize(toks[:i]).decode("utf-8", errors="ignore")))
            if i == 0:
                vals.append(None)
                tops.append(None)
                continue
            row = lp[i - 1]  # the logits after token i-1 predict token i
            vals.append(float(row[t]))
            top = {llm.detokenize([int(j)], prev_tokens=toks[:i]).decode("utf-8", errors="ignore"): float(row[j])
                   for j in np.argsort(-row)[: max(k, 0)]}
            top[s] = float(row[t])
            tops.append(top)
        return {"tokens": tokens, "text_offset": offsets, "token_logprobs": vals, "top_logprobs": tops}

    def complete(prompt: str, req: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
        """One prompt's completion (a list of prompts gets one choice each, index = position)."""
        out = llm.create_completion(prompt=prompt, **common)
        if req.get("echo"):
            gen = out["choices"][0]["text"]
            if req.get("logprobs") is not None:
                out["choices"][0]["logprobs"] = echo_logprobs(prompt, gen, int(req["logprobs"]))
            out["choices"][0]["text"] = prompt + gen
        return out

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def _send(self, code: int, obj: Any) -> None:
            b = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def _authorised(self) -> bool:
            if key and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, {"error": {"message": "invalid API key", "type": "invalid_request_error"}})
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": name, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            except ValueError:
                self._send(400, {"error": {"message": "invalid JSON body"}})
                return
            common = {"max_tokens": int(req.get("max_tokens") or 16), "temperature": float(req.get("temperature", 0.8)),
                      "seed": req.get("seed")}
            with lock:
                if self.path == "/v1/chat/completions":
                    out = llm.create_chat_completion(messages=req["messages"], **common)
                elif self.path == "/v1/completions":
                    prompt = req.get("prompt", "")
                    prompts = prompt if isinstance(prompt, list) else [prompt]
                    if not prompts or not all(isinstance(p, str) for p in prompts):
                        self._send(400, {"error": {"message": "prompt must be a string or a list of strings"}})
                        return
                    outs = [complete(p, req, common) for p in prompts]
                    out = outs[0]
                    out["choices"] = [dict(o["choices"][0], index=i) for i, o in enumerate(outs)]
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
            self._send(200, out)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    srv.serve_forever()


# ------------------------------------------------------------------------------------ broken proxy
@dataclass
class LogprobProxy:
    """A loopback HTTP proxy to `upstream` (…/v1) that can break log-probability responses.

    mode: "pass", "strip" (drop prompt-token log-probabilities, keep generated ones), "shift" (attach
    each token's value to the next token), "429" (answer the first `fail_first` requests with 429),
    "leak" (the first `fail_first` get a 503 quoting the Authorization header), "single" (refuse a list
    of prompts with a 500, as llama.cpp's own server does). `prompts_seen` counts prompts forwarded.
    """

    upstream: str
    mode: str = "pass"
    fail_first: int = 2
    retry_after: str = "0"
    requests: int = 0
    prompts_seen: int = 0
    seen_auth: list[str] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)  # client address of each request

    def __post_init__(self) -> None:
        proxy = self
        self._lock = threading.Lock()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _reply(self, code: int, body: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, method: str) -> None:
                with proxy._lock:
                    proxy.requests += 1
                    n = proxy.requests
                    proxy.peers.append(self.client_address)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))) if method == "POST" else None
                if proxy.mode == "leak" and n <= proxy.fail_first:  # a server echoing the credential back
                    msg = f"upstream hiccup for {self.headers.get('Authorization')}"
                    self._reply(503, json.dumps({"error": {"message": msg}}).encode(), {"Retry-After": "0"})
                    return
                if proxy.mode == "429" and n <= proxy.fail_first:
                    self._reply(429, b'{"error": {"message": "rate limited, slow down"}}',
                                {"Retry-After": proxy.retry_after})
                    return
                path = self.path[len("/v1"):] if self.path.startswith("/v1") else self.path
                prompt = json.loads(body or b"{}").get("prompt") if method == "POST" else None
                if isinstance(prompt, list) and proxy.mode == "single" and len(prompt) > 1:
                    self._reply(500, b'{"error": {"message": "AssertionError"}}')
                    return
                with proxy._lock:
                    proxy.prompts_seen += len(prompt) if isinstance(prompt, list) else int(prompt is not None)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                req = urllib.request.Request(proxy.upstream + path, data=body, headers=headers, method=method)
                try:
                    with urllib.request.urlopen(req, timeout=120) as r:
                        code, raw = r.status, r.read()
                except urllib.error.HTTPError as e:
                    code, raw = e.code, e.read()
                if code == 200 and method == "POST" and path == "/completions" and proxy.mode in ("strip", "shift"):
                    raw = json.dumps(proxy._break(json.loads(body or b"{}"), json.loads(raw))).encode()
                self._reply(code, raw)

            def do_GET(self) -> None:  # noqa: N802
                self._forward("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._forward("POST")

        self._srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.base_url = f"http://127.0.0.1:{self._srv.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)
        self._thread.start()

    def _break(self, req: dict[str, Any], resp: dict[str, Any]) -> dict[str, Any]:
        prompts = req.get("prompt", "")
        prompts = prompts if isinstance(prompts, list) else [prompts]
        for ch in resp["choices"]:
            lp = ch.get("logprobs")
            if not lp or not req.get("echo"):
                continue
            n = len(prompts[ch.get("index", 0)])
            if self.mode == "strip":  # what servers without echo support return: generated tokens only
                keep = [i for i, o in enumerate(lp["text_offset"]) if o >= n]
                for k in ("tokens", "text_offset", "token_logprobs", "top_logprobs"):
                    lp[k] = [lp[k][i] for i in keep]
            elif self.mode == "shift":  # off-by-one: token i carries token i-1's value
                for k in ("token_logprobs", "top_logprobs"):
                    lp[k] = [None] + lp[k][:-1]
        return resp

    def close(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reference", help="serve a GGUF with correct echo log-probabilities")
    r.add_argument("--model", required=True)
    r.add_argument("--port", type=int, required=True)
    a = ap.parse_args(argv)
    if a.cmd == "reference":
        _serve_reference(a.model, a.port)


if __name__ == "__main__":
    main()
