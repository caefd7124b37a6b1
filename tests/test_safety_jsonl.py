"""tag-jsonl data-safety defects (issue 8), each through the real command in a child process."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from ghostsent.ledger import Ledger
from ghostsent.sentences import Boundary
from proc import child_env, gs, one_line_error, popen


def rec(owner: str, text: str, **extra) -> bytes:
    return json.dumps({"owner": owner, "text": text, **extra}).encode() + b"\n"


def corpus(n: int, owners: int = 3, pad: int = 0) -> bytes:
    return b"".join(rec(f"o{i % owners}", f"Record {i} begins. It goes on{' and on' * pad}. The end.", id=f"r{i}")
                    for i in range(n))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 1. an input named like the output's temp file -----------------------------------------------

def test_input_named_like_the_partial_file_is_refused(tmp_path):
    inp = tmp_path / "corpus.jsonl.partial"
    inp.write_bytes(corpus(5))
    before = sha(inp)
    res = gs("tag-jsonl", inp, tmp_path / "corpus.jsonl", "--ledger", tmp_path / "l.db", cwd=tmp_path)
    one_line_error(res, 3, "corpus.jsonl.partial")
    assert sha(inp) == before and not (tmp_path / "corpus.jsonl").exists()


def test_input_that_is_the_lock_file_or_a_link_to_the_output_temp_is_refused(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(corpus(5))
    before = sha(inp)
    (tmp_path / "out.jsonl.partial").symlink_to(inp)
    res = gs("tag-jsonl", inp, tmp_path / "out.jsonl", "--ledger", tmp_path / "l.db", cwd=tmp_path)
    one_line_error(res, 3, "in.jsonl")
    assert sha(inp) == before
    (tmp_path / "out.jsonl.partial").unlink()
    os.link(inp, tmp_path / "out.jsonl.lock")
    res = gs("tag-jsonl", inp, tmp_path / "out.jsonl", "--ledger", tmp_path / "l.db", cwd=tmp_path)
    one_line_error(res, 3, "in.jsonl")
    assert sha(inp) == before and inp.exists()


# --- 3. two runs writing the same OUT ------------------------------------------------------------

STOP_AT_CHECKPOINT = (
    "import os, signal, sys\n"
    "from ghostsent import tagging\n"
    "orig = tagging.tag_jsonl\n"
    "def hooked(*a, **k):\n"
    "    k['after_checkpoint'] = lambda n: os.kill(os.getpid(), signal.SIGSTOP) if n == 1 else None\n"
    "    return orig(*a, **k)\n"
    "tagging.tag_jsonl = hooked\n"
    "from ghostsent.cli import main\n"
    "main()\n"
)


def wait_stopped(pid: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "T":
                return
        time.sleep(0.02)
    raise AssertionError("child never stopped")


def test_second_run_on_the_same_out_is_refused_while_the_first_runs(tmp_path):
    inp, out, led = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "l.db"
    inp.write_bytes(corpus(400))
    args = ["tag-jsonl", inp, out, "--checkpoint-every", "50", "--seed", "1", "--max-per-owner", "30",
            "--no-progress", "--ledger", led]
    ref = gs(*args[:2], tmp_path / "ref.jsonl", *args[3:-1], tmp_path / "ref.db")
    assert ref.returncode == 0, ref.stderr
    first = popen(*args, code=STOP_AT_CHECKPOINT)
    try:
        wait_stopped(first.pid)
        partial = Path(str(out) + ".partial")
        snap = partial.read_bytes()
        for extra in ([], ["--resume"]):
            res = gs(*args, *extra)
            one_line_error(res, 3, "out.jsonl", "another")
            assert partial.read_bytes() == snap and not out.exists()
    finally:
        os.kill(first.pid, signal.SIGCONT)
        first.wait(60)
    assert first.returncode == 0, first.stderr.read()
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    with Ledger(led) as a, Ledger(tmp_path / "ref.db") as b:
        assert len(a.insertions()) == len(b.insertions()) == 90
        assert len(a.identifiers()) == 3


# --- 4. lone surrogate escapes -------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    '{"owner": "a", "text": "Caf\u00e9 one. \\ud800 two. Three."}',   # non-ASCII line
    '{"owner": "\\udc80", "text": "One. Two. Three."}',              # in the owner
    '{"owner": "a", "id": "\\ud800", "text": "One. Two. Three."}',   # in the id field
])
def test_lone_surrogate_is_a_bad_record(tmp_path, line):
    inp, out, led = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "l.db"
    bad = line.encode("utf-8") + b"\n"
    inp.write_bytes(corpus(4) + bad + corpus(4))
    res = gs("tag-jsonl", inp, out, "--id-field", "id", "--ledger", led, "--checkpoint-every", "2")
    one_line_error(res, 3, "line 5", "surrogate")
    res = gs("tag-jsonl", inp, out, "--id-field", "id", "--ledger", led, "--checkpoint-every", "2",
             "--resume", "--skip-bad", "--json")
    assert res.returncode == 0, res.stderr
    assert [b["line"] for b in json.loads(res.stdout)["bad_lines"]] == [5]
    assert out.read_bytes().splitlines(keepends=True)[4] == bad


# --- 6. owner names ------------------------------------------------------------------------------

def test_owner_with_spaces_gets_one_identifier_and_resume_keeps_it(tmp_path):
    led = tmp_path / "l.db"
    (tmp_path / "a.jsonl").write_bytes(rec(" bob ", "Hello there. More text. End."))
    for out in ("o1.jsonl", "o2.jsonl"):
        assert gs("tag-jsonl", tmp_path / "a.jsonl", tmp_path / out, "--ledger", led).returncode == 0
    with Ledger(led) as l:
        assert [i.owner for i in l.identifiers()] == ["bob"]
    with Ledger(led) as l:
        text = l.identifiers()[0].text
    assert text in json.loads((tmp_path / "o1.jsonl").read_bytes())["text"]
    assert text in json.loads((tmp_path / "o2.jsonl").read_bytes())["text"]


@pytest.mark.parametrize("owner,why", [("", "empty"), ("  ", "empty"), ("a\nb", "line"),
                                       ("ev\x1b[31mil", "control")])
def test_bad_owner_names_the_line_and_skip_bad_skips_it(tmp_path, owner, why):
    inp, led = tmp_path / "in.jsonl", tmp_path / "l.db"
    inp.write_bytes(corpus(2) + rec(owner, "Some text. More.") + corpus(2))
    res = gs("tag-jsonl", inp, tmp_path / "o.jsonl", "--ledger", led)
    line = one_line_error(res, 3, "line 3", "owner")
    assert why in line and "\x1b" not in line
    res = gs("tag-jsonl", inp, tmp_path / "o.jsonl", "--ledger", led, "--skip-bad", "--json")
    assert res.returncode == 0, res.stderr
    assert [b["line"] for b in json.loads(res.stdout)["bad_lines"]] == [3]


# --- 10. --resume hashes the whole consumed prefix -----------------------------------------------

def test_resume_refuses_an_input_changed_before_the_last_4_kib(tmp_path):
    inp, out, led = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "l.db"
    inp.write_bytes(corpus(300, pad=20))
    first = popen("tag-jsonl", inp, out, "--checkpoint-every", "100", "--ledger", led, "--no-progress",
                  code=STOP_AT_CHECKPOINT.replace("n == 1", "n == 2"))
    wait_stopped(first.pid)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    data = bytearray(inp.read_bytes())
    i = data.index(b"Record 3 ")
    data[i:i + 9] = b"Record X "  # same length, far before the resume point
    inp.write_bytes(bytes(data))
    res = gs("tag-jsonl", inp, out, "--checkpoint-every", "100", "--ledger", led, "--resume")
    one_line_error(res, 3, "changed")


# --- 11. only the text field changes -------------------------------------------------------------

@pytest.mark.parametrize("line", [
    b'{"owner": "a", "text": "One here. Two here. Three here.", "n": 1e400, "m": 1E5, "k": -0.0}',
    b'{"text": "shadowed", "owner": "a", "text": "One here. Two here. Three here."}',
    b'\xef\xbb\xbf{"owner":"a","text":"One here. Two here. Three here."}',
    b'{ "owner" :"a" ,\t"text":  "One \\u00e9 here.\\nTwo \\/ here. Three here." , "z":[1,2.50,{"y":null}] }',
    '{"owner": "a", "text": "Caf\u00e9 one. Two here. Three \U0001F600 here.", "u": "\\u00e9"}'.encode(),
])
def test_tagged_record_changes_only_by_the_inserted_span(tmp_path, line):
    inp, out, led = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "l.db"
    # the second record has no sentence boundary, so the owner's one eligible record is the first
    inp.write_bytes(line + b"\r\n" + rec("a", ""))
    res = gs("tag-jsonl", inp, out, "--ledger", led, "--max-per-owner", "1", "--seed", "2")
    assert res.returncode == 0, res.stderr
    got = out.read_bytes().split(b"\r\n")
    with Ledger(led) as l:
        ghost = l.identifiers()[0].text
    span = Boundary(0, "after").inserted(ghost)   # " " + ghost, with a full stop when it has none
    span_ascii = json.dumps(span)[1:-1].encode()
    span_raw = span.encode()
    assert got[1] == rec("a", "")
    new = got[0]
    assert new.replace(span_ascii if line.isascii() else span_raw, b"", 1) == line
    assert json.loads(new.decode("utf-8-sig"))["text"].count(ghost) == 1


# --- 19. options are validated before any input is read ------------------------------------------

@pytest.mark.parametrize("opt", [["--template", "no placeholder"], ["--wordlist", "nonexistent-list"]])
def test_bad_template_or_wordlist_is_refused_even_when_every_owner_is_known(tmp_path, opt):
    led = tmp_path / "l.db"
    assert gs("new", "--owner", "o0", "--ledger", led).returncode == 0
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(rec("o0", "One. Two."))
    res = gs("tag-jsonl", inp, tmp_path / "o.jsonl", *opt, "--ledger", led)
    one_line_error(res, 3)
    assert not (tmp_path / "o.jsonl").exists()


# --- 9. broken pipe, locked ledger ---------------------------------------------------------------

def test_broken_pipe_on_stdout_exits_quietly_after_the_ledger_is_consistent(tmp_path):
    led = tmp_path / "l.db"
    data = corpus(3000, owners=5)
    p = popen("tag-jsonl", "-", "-", "--ledger", led, "--max-per-owner", "100", "--no-progress",
              stdin=subprocess.PIPE)
    p.stdin.write(data)
    p.stdin.close()
    p.stdout.read(100)
    p.stdout.close()  # like `| head -c 100`
    err = p.stderr.read().decode()
    p.wait(60)
    assert p.returncode == 141 and "Traceback" not in err, err
    assert len([l for l in err.splitlines() if l.strip() and not l.startswith("created new ledger")]) <= 1
    with Ledger(led) as l:
        assert len(l.insertions()) == 500


def test_locked_ledger_is_a_one_line_error(tmp_path):
    led = tmp_path / "l.db"
    assert gs("new", "--ledger", led).returncode == 0
    hold = sqlite3.connect(led, isolation_level=None)
    hold.execute("BEGIN IMMEDIATE")
    try:
        res = gs("new", "--ledger", led, env=child_env(GHOSTSENT_LEDGER_TIMEOUT="1"))
        one_line_error(res, 4, "locked")
    finally:
        hold.execute("ROLLBACK")
        hold.close()


# --- OUT.partial belongs to a run only if a checkpoint says so -----------------------------------

def test_a_stray_partial_file_is_refused_never_truncated(tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(corpus(5))
    Path(str(out) + ".partial").write_bytes(b"someone's data\n")
    res = gs("tag-jsonl", inp, out, "--ledger", tmp_path / "l.db")
    one_line_error(res, 3, "out.jsonl.partial", "no interrupted run")
    assert Path(str(out) + ".partial").read_bytes() == b"someone's data\n"


KILL_BEFORE_FIRST_LINE = (
    "import os, signal\n"
    "from ghostsent.tagging.jsonl import JsonlTagger\n"
    "JsonlTagger._loop = lambda self: os.kill(os.getpid(), signal.SIGKILL)\n"
    "from ghostsent.cli import main\n"
    "main()\n"
)


def test_a_run_killed_before_its_first_checkpoint_starts_over_without_resume(tmp_path):
    inp, out, led = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "l.db"
    inp.write_bytes(corpus(30))
    p = popen("tag-jsonl", inp, out, "--ledger", led, code=KILL_BEFORE_FIRST_LINE)
    p.wait(60)
    assert p.returncode == -9 and Path(str(out) + ".partial").exists()
    res = gs("tag-jsonl", inp, out, "--ledger", led, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["inserted"] == 30 and not Path(str(out) + ".partial").exists()
    with Ledger(led) as l:
        assert len(l.insertions()) == 30


INTERRUPT_AFTER_CREATING_PARTIAL = (
    "import os\n"
    "from ghostsent.tagging import jsonl\n"
    "real = jsonl.create_exclusive\n"
    "def create(path, *a, **k):\n"
    "    real(path, *a, **k)\n"
    "    raise KeyboardInterrupt  # Ctrl-C between creating OUT.partial and noting that this run did\n"
    "jsonl.create_exclusive = create\n"
    "from ghostsent.cli import main\n"
    "main()\n"
)


def test_an_interrupt_right_after_creating_the_partial_does_not_block_the_next_run(tmp_path):
    """The fault suite's seed 134902790: a SIGINT landed between creating OUT.partial and marking it as
    this run's; the cleanup then dropped the checkpoint but kept the file, and every later run was
    refused ("exists, but the ledger has no interrupted run that wrote it")."""
    inp, out, led = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "l.db"
    inp.write_bytes(corpus(30))
    p = popen("tag-jsonl", inp, out, "--ledger", led, code=INTERRUPT_AFTER_CREATING_PARTIAL)
    p.wait(60)
    assert p.returncode == 130 and Path(str(out) + ".partial").exists()
    res = gs("tag-jsonl", inp, out, "--ledger", led, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["inserted"] == 30 and not Path(str(out) + ".partial").exists()


KILL_AFTER_RENAME = (
    "import os, signal\n"
    "real = os.replace\n"
    "def replace(src, dst, *a, **k):\n"
    "    real(src, dst, *a, **k)\n"
    "    if str(src).endswith('.partial'):\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "os.replace = replace\n"
    "from ghostsent.cli import main\n"
    "main()\n"
)


def test_a_stale_finished_checkpoint_never_reports_success_without_output(tmp_path):
    """Killed between the final rename and the checkpoint's deletion; OUT then moved away. A rerun
    must write OUT again, not report the old run's success with nothing written."""
    inp, out, led = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "l.db"
    inp.write_bytes(corpus(20))
    p = popen("tag-jsonl", inp, out, "--ledger", led, "--max-per-owner", "1", code=KILL_AFTER_RENAME)
    p.wait(60)
    assert p.returncode == -9 and out.exists()
    out.rename(tmp_path / "moved.jsonl")
    res = gs("tag-jsonl", inp, out, "--ledger", led, "--max-per-owner", "1", "--json")
    assert res.returncode == 0, res.stderr
    assert out.exists() and "note" not in json.loads(res.stdout)
