"""A real PostgreSQL server on loopback for the tests (the distribution's packages, nothing downloaded).

initdb into a fresh temporary folder, then pg_ctl start on a free 127.0.0.1 port, TCP only (no Unix
socket), password authentication (scram-sha-256) so ledger URLs carry a password the tests can look for
in messages. PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the
unprivileged user `nobody` (runuser), and its folder is handed to that user.
"""
from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from servers import free_port

USER = "ghostsent_test"


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/N/bin), or pg_ctl on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


@dataclass
class PgServer:
    bindir: Path
    root: Path
    port: int
    password: str
    as_user: list[str]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), *args],
                              capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        self.ctl("-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(bindir: Path, durable: bool = False) -> PgServer:
    """Start a server; `durable` keeps fsync on (benchmarks), the tests turn it off (speed; a killed
    client, not a power cut, is what they test)."""
    root = Path(tempfile.mkdtemp(prefix="ghostsent-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "nobody", "--"]
        shutil.chown(root, "nobody")
    password = "pw-" + secrets.token_hex(12)
    pwfile = root / "pw"
    pwfile.write_text(password)
    if as_user:
        shutil.chown(pwfile, "nobody")
    init = subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(root / "data"), "-U", USER, "-E", "UTF8",
                           "--locale=C", "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"],
                          capture_output=True, text=True, timeout=120, cwd=root)
    pwfile.unlink()
    if init.returncode:
        raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
    port = free_port()
    server = PgServer(bindir, root, port, password, as_user)
    opts = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
            f"-c fsync={'on' if durable else 'off'} -c max_connections=100 -c shared_buffers=16MB")
    res = server.ctl("-l", str(root / "server.log"), "-o", opts, "-w", "-t", "60", "start")
    if res.returncode:
        log = (root / "server.log").read_text(errors="replace")[-2000:] if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed: {res.stderr[-1000:]} {log}")
    return server


def create_database(server: PgServer, name: str) -> str:
    """A fresh empty database on `server`; returns its URL."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)
