"""`ghostsent serve` as a real uvicorn server on loopback, for the tests and scripts/bench_serve.py.

The token travels to the server through the environment (never argv); its log goes to a file the
tests read (nothing secret may be in it).
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    proc: subprocess.Popen
    url: str
    token: str
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, **{"timeout": 60, **kw})

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def start_service(ledger: str, log_path: Path, *args: str, token: str | None = None,
                  timeout: float = 60) -> Service:
    token = token or "tok-" + secrets.token_hex(16)
    port = free_port()
    env = {**os.environ, "GHOSTSENT_SERVE_TOKEN": token,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "ghostsent", "serve", "--ledger", ledger, "--port", str(port),
                             *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(log_path.parent))
    log.close()
    svc = Service(proc, f"http://127.0.0.1:{port}", token, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ghostsent serve exited {proc.returncode}: {svc.log()[-2000:]}")
        try:
            if httpx.get(svc.url + "/identifiers/_ready", headers=svc.headers, timeout=2).status_code == 200:
                return svc
        except httpx.HTTPError:
            time.sleep(0.1)
    svc.stop()
    raise RuntimeError(f"ghostsent serve did not answer within {timeout} s: {svc.log()[-2000:]}")
