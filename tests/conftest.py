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


@pytest.fixture(scope="session")
def cpp_llama_server(default_gguf, server_logs):
    """llama.cpp's C++ `llama-server` (ServerProcess) on the embedded GGUF: the server that continues a
    final assistant message. Built by scripts/build_llama_server.sh (CI does); an error in CI without
    it, a skip elsewhere."""
    import servers

    binary = servers.llama_server_binary()
    if binary is None:
        msg = "llama.cpp's llama-server is not built (bash scripts/build_llama_server.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; required when CI is set")
        pytest.skip(msg)
    sp = servers.start_llama_server(binary, default_gguf, server_logs)
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


# ------------------------------------------------------------------------------------------ PostgreSQL
def _need_postgres():
    """The PostgreSQL tests need the server binaries and psycopg: an error in CI, a skip elsewhere."""
    import pgserver

    bindir = pgserver.find_bindir()
    missing = None if bindir else "PostgreSQL is not installed (apt-get install postgresql)"
    if importlib.util.find_spec("psycopg") is None:
        missing = "psycopg is not installed (pip install 'ghostsent[postgres]')"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing + "; required when CI is set")
        pytest.skip(missing)
    return bindir


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on 127.0.0.1 (tests/pgserver.py), for the whole session."""
    bindir = _need_postgres()
    import pgserver

    server = pgserver.start_postgres(bindir)
    yield server
    server.stop()


@pytest.fixture()
def pg_url(postgres_server, request):
    """The URL (with its password) of a fresh, empty database on the test server: one per test."""
    import secrets

    import pgserver

    return pgserver.create_database(postgres_server, "t_" + secrets.token_hex(6))


class LedgerFactory:
    """Ledgers named NAME on one backend: a SQLite file in tmp_path, or a database on the test server."""

    def __init__(self, backend: str, tmp_path: Path, server=None) -> None:
        self.backend, self.tmp_path, self.server = backend, tmp_path, server
        self._urls: dict[str, str] = {}

    def location(self, name: str = "l") -> str:
        """What --ledger / GHOSTSENT_LEDGER take for ledger NAME (its database is created empty once)."""
        if self.backend == "sqlite":
            return str(self.tmp_path / f"{name}.db")
        if name not in self._urls:
            import secrets

            import pgserver

            self._urls[name] = pgserver.create_database(self.server, f"t_{secrets.token_hex(5)}_{name}")
        return self._urls[name]

    def __call__(self, name: str = "l", **kw):
        from ghostsent.ledger import PostgresLedger, SQLiteLedger

        cls = SQLiteLedger if self.backend == "sqlite" else PostgresLedger
        return cls(self.location(name), **kw)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_at(request, tmp_path) -> LedgerFactory:
    """Open ledgers by name on each backend in turn (the ledger tests run against both)."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    return LedgerFactory(request.param, tmp_path, server)
