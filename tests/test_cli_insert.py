"""The `insert` and `tag-jsonl` commands, including a real SIGKILL mid-run and --resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ghostsent.cli import main
from ghostsent.ledger import Ledger

pytestmark = pytest.mark.core  # runs on the light install (no extras)


def run(args, ledger, **kw):
    return CliRunner().invoke(main, [*args, "--ledger", str(ledger)], catch_exceptions=False, **kw)


def new_id(ledger: Path, owner="me") -> str:
    r = run(["new", "--owner", owner, "--words", "6", "--json"], ledger)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["id"]  # stderr may say "created new ledger at ..."


def test_insert_out_dry_run_and_rerun(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    led = tmp_path / "l.db"
    ident = new_id(led)
    Path("a.md").write_text("---\nt: X. Y.\n---\n\nHello there. Second one.\n\n| a. B |\n|---|\n")
    r = run(["insert", ident, "a.md", "--dry-run", "--position", "end"], led)
    assert r.exit_code == 0 and "would insert at a.md:5:25" in r.output and not Path("tagged").exists()
    r = run(["insert", ident, "a.md", "--json"], led)
    data = json.loads(r.output)
    assert r.exit_code == 0 and data["counts"] == {"tagged": 1}
    assert Path("tagged/a.md").read_text().count(data["files"][0]["snippet"].split("[[")[1].split("]]")[0]) == 1
    r = run(["insert", ident, "tagged/a.md", "--in-place"], led)
    assert "already-tagged" in r.output and not Path("tagged/a.md.bak").exists()
    with Ledger(led) as l:
        assert l.count_insertions(ident) == 1


def test_insert_errors_and_exit_codes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    led = tmp_path / "l.db"
    ident = new_id(led)
    Path("bad.txt").write_bytes(b"Caf\xe9. Yes.\n")
    r = CliRunner().invoke(main, ["insert", ident, "bad.txt", "--ledger", str(led)])
    assert r.exit_code == 3 and "bad.txt: not valid utf-8 at byte offset 3" in r.output
    r = CliRunner().invoke(main, ["insert", ident, "bad.txt", "--in-place", "--out", "x", "--ledger", str(led)])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["insert", "gs-nope", "bad.txt", "--ledger", str(led)])
    assert r.exit_code == 4


def test_tag_jsonl_stdin_stdout(tmp_path):
    led = tmp_path / "l.db"
    data = "".join(json.dumps({"owner": f"o{i % 2}", "text": f"Line {i}. End."}) + "\n" for i in range(6))
    r = CliRunner().invoke(main, ["tag-jsonl", "-", "-", "--max-per-owner", "1", "--ledger", str(led)], input=data)
    assert r.exit_code == 0
    out_lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    changed = [i for i, (a, b) in enumerate(zip(out_lines, data.splitlines())) if a != b]
    # one record per owner (o0: even lines, o1: odd), chosen by the ledger's keyed hash; stdin is read twice
    assert len(out_lines) == 6 and len(changed) == 2 and {i % 2 for i in changed} == {0, 1}
    r = CliRunner().invoke(main, ["tag-jsonl", "-", "-", "--ledger", str(led)], input=data + "oops\n")
    assert r.exit_code == 3 and "line 7" in r.output and '"owner"' not in r.stdout


def test_tag_jsonl_sigkill_then_resume(tmp_path):
    """Kill -9 a real run after its second checkpoint; --resume must give the uninterrupted output."""
    inp = tmp_path / "in.jsonl"
    with open(inp, "w") as f:
        for i in range(3000):
            f.write(json.dumps({"owner": f"o{i % 7}", "text": f"Sentence {i} here. Another one. Last."}) + "\n")
    args = ["tag-jsonl", str(inp), "OUT", "--max-per-owner", "100", "--seed", "3", "--checkpoint-every", "200",
            "--position", "random", "--no-progress"]
    ref = run([a if a != "OUT" else str(tmp_path / "ref.jsonl") for a in args], tmp_path / "ref.db")
    assert ref.exit_code == 0, ref.output

    out = tmp_path / "out.jsonl"
    led = tmp_path / "l.db"
    # A child that stops itself right after its 2nd checkpoint, so the kill lands at a known point.
    code = (
        "import os, signal, sys\n"
        "from ghostsent import tagging\n"
        "orig = tagging.tag_jsonl\n"
        "def hooked(*a, **k):\n"
        "    k['after_checkpoint'] = lambda n: os.kill(os.getpid(), signal.SIGSTOP) if n == 2 else None\n"
        "    return orig(*a, **k)\n"
        "tagging.tag_jsonl = hooked\n"
        "from ghostsent.cli import main\n"
        "main()\n"
    )
    cmd = [sys.executable, "-c", code, *[a if a != "OUT" else str(out) for a in args], "--ledger", str(led)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        with open(f"/proc/{p.pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "T":
                break
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not out.exists() and Path(str(out) + ".partial").exists()
    with Ledger(led) as l:
        n_before = len(l.insertions())
    with Ledger(tmp_path / "ref.db") as rl:  # the keyed hash spreads the 700 chosen records over the file
        in_first_400 = sum(int(i.document.rsplit(" ", 1)[1]) <= 400 for i in rl.insertions())
    assert n_before == in_first_400 and 0 < n_before < 700  # exactly those of the 400 checkpointed lines
    r = run([a if a != "OUT" else str(out) for a in args] + ["--resume", "--json"], led)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["resumed_from_line"] == 400
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    with Ledger(led) as l, Ledger(tmp_path / "ref.db") as rl:
        got = sorted((i.document, i.offset, i.sha256_after) for i in l.insertions())
        want = sorted((i.document, i.offset, i.sha256_after) for i in rl.insertions())
    assert got == want and len(got) == 700


def test_insert_walks_folders_like_black_and_ruff(tmp_path, monkeypatch):
    """A folder argument: its text files (default patterns, or --glob), sorted; hidden names skipped;
    the output keeps the folder structure; an explicitly named file always counts."""
    monkeypatch.chdir(tmp_path)
    led = tmp_path / "l.db"
    ident = json.loads(CliRunner().invoke(main, ["new", "--ledger", str(led), "--json"]).stdout)["id"]
    prose = "First sentence here. Second one follows. A third closes it.\n"
    for rel in ("docs/a.txt", "docs/sub/b.md", "docs/.hidden/c.txt", "docs/.d.txt", "docs/e.py", "docs/f.rst"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(prose)
    r = CliRunner().invoke(main, ["insert", ident, "docs", "--out", "out", "--ledger", str(led), "--json"])
    assert r.exit_code == 0, r.output
    got = sorted(f["path"] for f in json.loads(r.stdout)["files"])
    assert got == ["docs/a.txt", "docs/f.rst", "docs/sub/b.md"]
    assert (tmp_path / "out/docs/sub/b.md").read_text() != prose and not (tmp_path / "out/docs/e.py").exists()

    r = CliRunner().invoke(main, ["insert", ident, "docs", "--glob", "*.py", "--out", "out2", "--ledger", str(led),
                                  "--json"])
    assert r.exit_code == 0, r.output
    assert [f["path"] for f in json.loads(r.stdout)["files"]] == ["docs/e.py"]

    r = CliRunner().invoke(main, ["insert", ident, "docs", "--glob", "*.nothing", "--ledger", str(led)])
    assert r.exit_code == 3 and "no files to tag" in r.output and "--glob" in r.output
