"""Shared fixtures. Expensive real parts (the embedded model, loopback servers) are session-scoped.

Sections: models, servers. Keep each fixture documented and each section together.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import servers`


# ------------------------------------------------------------------------------------------ models
@pytest.fixture(scope="session")
def default_target():
    """The embedded SmolLM2-135M-Instruct (HFTarget, fp32 on CPU), loaded once per session.

    Shared by many tests: do not modify its weights (fine-tune a copy: copy.deepcopy(t.model)).
    """
    from ghostsent.targets import load_target

    return load_target(None)


@pytest.fixture(scope="session")
def default_gguf() -> Path:
    from ghostsent.targets.default import default_gguf_path

    return default_gguf_path()


# ------------------------------------------------------------------------------------------ servers
def _need_llama_cpp() -> None:
    """Without llama-cpp-python the server tests cannot run: an error in CI, a skip elsewhere."""
    if importlib.util.find_spec("llama_cpp") is None:
        msg = "llama-cpp-python is not installed (pip install 'llama-cpp-python[server]')"
        if os.environ.get("CI"):
            pytest.fail(msg + "; required when CI is set")
        pytest.skip(msg)


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def reference_server(default_gguf, server_logs):
    """OpenAI-compatible server with correct echo log-probabilities (tests/servers.py, real llama.cpp).

    Yields a servers.ServerProcess (base_url ends in /v1; .key is its random API key).
    """
    _need_llama_cpp()
    import servers

    sp = servers.start_reference_server(default_gguf, server_logs)
    yield sp
    sp.stop()


@pytest.fixture(scope="session")
def llama_server(default_gguf, server_logs):
    """The upstream `python -m llama_cpp.server` on 127.0.0.1 (its echo log-probabilities are shifted)."""
    _need_llama_cpp()
    import servers

    sp = servers.start_llama_cpp_server(default_gguf, server_logs)
    yield sp
    sp.stop()


@pytest.fixture()
def api_key_env(monkeypatch):
    """Returns set(key) -> env var name: puts a server's key in a test-only environment variable."""
    name = "GHOSTSENT_TEST_API_KEY"

    def put(key: str) -> str:
        monkeypatch.setenv(name, key)
        return name

    return put
