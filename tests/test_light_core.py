"""The light core (`pip install ghostsent`, no extras): the core commands run without torch,
transformers, scipy or matplotlib, and a command that needs an extra names it in one line.

Marked `core`: .ci/run runs these in a venv with the bare install, where the heavy packages are absent.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.core

HEAVY = ("torch", "transformers", "scipy", "matplotlib")

# Every core command through the real CLI in one process; then which heavy modules got imported.
CORE_SESSION = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from ghostsent.cli import main

    tmp, led = Path(sys.argv[1]), sys.argv[1] + "/l.db"
    def run(*args):
        try:
            main([str(a) for a in args], standalone_mode=False)
        except SystemExit as e:
            assert not e.code, (args, e.code)

    run("new", "--owner", "ana", "--words", "8", "--ledger", led, "--json")
    from ghostsent.ledger import Ledger
    with Ledger(led) as l:
        ident = l.identifiers()[0]
    (tmp / "docs").mkdir()
    (tmp / "docs" / "a.txt").write_text("First sentence here. Second one follows. A third closes it.\\n")
    run("insert", ident.id, tmp / "docs" / "a.txt", "--out", tmp / "tagged", "--ledger", led)
    (tmp / "in.jsonl").write_text(json.dumps({"owner": "bo", "text": "One. Two. Three."}) + "\\n")
    run("tag-jsonl", tmp / "in.jsonl", tmp / "out.jsonl", "--ledger", led)
    run("list", "--ledger", led)
    run("show", ident.id, "--ledger", led)
    run("card", ident.id, "--ledger", led)
    (tmp / "reply.txt").write_text("no idea")
    run("check", ident.id, "--reply", tmp / "reply.txt", "--ledger", led)
    run("export", "-o", tmp / "x.jsonl", "--ledger", led)
    run("import", tmp / "x.jsonl", "--ledger", tmp / "l2.db")
    run("commit", "--ledger", led)
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
""" % (HEAVY,))


def test_core_commands_never_import_the_heavy_packages(tmp_path):
    r = subprocess.run([sys.executable, "-c", CORE_SESSION, str(tmp_path)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_a_missing_extra_is_one_line_naming_it(tmp_path):
    """With the models' packages hidden (as on a bare install), probe fails with exit 5 and one line
    naming `pip install 'ghostsent[detect]'`; nothing is counted."""
    code = textwrap.dedent("""
        import sys
        for name in %r:
            sys.modules[name] = None  # import fails, as when the package is not installed
        from ghostsent.cli import main
        main(sys.argv[1:])
    """ % (HEAVY,))
    led = tmp_path / "l.db"
    new = subprocess.run([sys.executable, "-m", "ghostsent", "new", "--ledger", str(led), "--json"],
                         capture_output=True, text=True, timeout=120)
    ident = json.loads(new.stdout)["id"]
    r = subprocess.run([sys.executable, "-c", code, "probe", ident, "--ledger", str(led)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 5, r.stderr
    assert "pip install 'ghostsent[detect]'" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
