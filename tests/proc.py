"""Run the real `ghostsent` command in a child process (real exit codes, real stderr, real signals).

The child gets this checkout first on PYTHONPATH, so it runs the code under test even where the
editable install points elsewhere.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("GHOSTSENT_LEDGER", "ghostsent.db")
    env.update(extra)
    return env


def gs(*args: str | os.PathLike, cwd: Path | str | None = None, input: bytes | str | None = None,
       env: dict[str, str] | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """`python -m ghostsent ARGS` to completion; stdout/stderr as bytes (`kw`: e.g. preexec_fn)."""
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run([sys.executable, "-m", "ghostsent", *map(_arg, args)], cwd=cwd, input=input,
                          capture_output=True, env=env or child_env(), timeout=timeout, **kw)


def popen(*args: str | os.PathLike, cwd: Path | str | None = None, env: dict[str, str] | None = None,
          code: str | None = None, **kw) -> subprocess.Popen:
    """Start `python -m ghostsent ARGS` (or `python -c CODE ARGS`) without waiting."""
    head = ["-c", code] if code else ["-m", "ghostsent"]
    return subprocess.Popen([sys.executable, *head, *map(_arg, args)], cwd=cwd, env=env or child_env(),
                            stdout=kw.pop("stdout", subprocess.PIPE), stderr=kw.pop("stderr", subprocess.PIPE), **kw)


def _arg(a: str | os.PathLike | bytes) -> str | bytes:
    return a if isinstance(a, bytes) else os.fspath(a)


def one_line_error(res: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Assert the documented failure shape: exit `code`, no traceback, exactly one `Error:` line on
    stderr that contains every needle; returns that line."""
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == code, f"exit {res.returncode}, wanted {code}; stderr:\n{err}"
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, err
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]
