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


# ------------------------------------------------------------------------------------------ user folders
@pytest.fixture(autouse=True)
def _private_user_data(tmp_path_factory, monkeypatch):
    """The default ledger lives in the user data folder (platformdirs honours XDG_DATA_HOME): point it
    into the test's temporary tree, so no test ever writes the real user's ledger."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.getbasetemp() / "xdg-data"))


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


TEST_KEY_ENV = "GHOSTSENT_TEST_API_KEY"


@pytest.fixture(scope="session")
def llama_server(reference_server):
    """base_url (…/v1) of a loopback OpenAI-compatible server with correct prompt log-probabilities.

    Its API key is in $GHOSTSENT_TEST_API_KEY for the session: use
    `load_target("openai:smollm2", base_url=llama_server, api_key_env="GHOSTSENT_TEST_API_KEY")`.
    """
    old = os.environ.get(TEST_KEY_ENV)
    os.environ[TEST_KEY_ENV] = reference_server.key
    yield reference_server.base_url
    if old is None:
        os.environ.pop(TEST_KEY_ENV, None)
    else:
        os.environ[TEST_KEY_ENV] = old


@pytest.fixture(scope="session")
def upstream_llama_server(default_gguf, server_logs):
    """The upstream `python -m llama_cpp.server` (ServerProcess). Its echo log-probabilities are
    shifted by one token, so it is only for tests that expect the capability check to reject it."""
    _need_llama_cpp()
    import servers

    sp = servers.start_llama_cpp_server(default_gguf, server_logs)
    yield sp
    sp.stop()


@pytest.fixture()
def api_key_env(monkeypatch):
    """Returns set(key) -> env var name: puts a server's key in a test-only environment variable."""
    name = TEST_KEY_ENV

    def put(key: str) -> str:
        monkeypatch.setenv(name, key)
        return name

    return put
