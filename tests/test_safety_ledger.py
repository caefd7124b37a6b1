"""Ledger data-safety defects (issue 8): foreign files, owner names, import validation, commit output,
concurrent get-or-create. Real SQLite files and real child processes."""
from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from pathlib import Path

import pytest

from ghostsent.errors import InputError
from ghostsent.ledger import Ledger
from ghostsent.ledger.transfer import export_jsonl, import_jsonl
from ghostsent.wordlists import load_wordlist
from proc import gs, one_line_error, popen

pytestmark = pytest.mark.core  # runs on the light install (no extras)

EN = load_wordlist("en")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 16. foreign databases and typos -------------------------------------------------------------

def test_foreign_sqlite_file_is_refused_untouched(tmp_path):
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users VALUES (1, 'x')")
    con.commit()
    con.close()
    before = sha(db)
    for args in (["list"], ["new"], ["import", "-"]):
        res = gs(*args, "--ledger", db, input="")
        one_line_error(res, 4, "app.db", "not a ghostsent ledger")
    assert sha(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no -wal/-shm either
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


def test_read_commands_on_a_missing_ledger_fail_and_create_nothing(tmp_path):
    for args in (["list"], ["show", "gs-0000000000"], ["commit"], ["export"]):
        res = gs(*args, "--ledger", tmp_path / "typo.db")
        one_line_error(res, 4, "typo.db")
    assert list(tmp_path.iterdir()) == []


def test_writing_commands_say_when_they_create_a_ledger(tmp_path):
    res = gs("new", "--ledger", tmp_path / "l.db")
    assert res.returncode == 0 and f"created new ledger at {tmp_path / 'l.db'}".encode() in res.stderr
    res = gs("new", "--ledger", tmp_path / "l.db")
    assert res.returncode == 0 and b"created new ledger" not in res.stderr


def test_ledger_from_before_the_marker_still_opens(tmp_path):
    path = tmp_path / "old.db"
    with Ledger(path, _target_version=2) as old:
        ident = old.new_identifier("ann", EN, n_words=4)
    res = gs("list", "--json", "--ledger", path)
    assert res.returncode == 0, res.stderr
    assert [r["id"] for r in json.loads(res.stdout)] == [ident.id]


# --- 6. owner names are normalised once; printing never emits raw escapes -----------------------

def test_owner_lookup_is_normalised_like_storage(tmp_path):
    with Ledger(tmp_path / "l.db") as led:
        a = led.new_identifier("  bob\t", EN)
        assert a.owner == "bob"
        assert led.identifier_for_owner(" bob ") == a
        assert led.identifiers(" bob") == [a]
        with pytest.raises(InputError, match="control"):
            led.new_identifier("ev\x1bil", EN)


def test_list_show_commit_escape_terminal_sequences(tmp_path):
    led = tmp_path / "l.db"
    assert gs("new", "--owner", "ann", "--ledger", led).returncode == 0
    # An owner and a document written by an older ghostsent or another tool, straight into SQLite.
    con = sqlite3.connect(led)
    con.execute("UPDATE identifiers SET owner = ?", ("ann\x1b]0;pwned\x07\x1b[2J",))
    ident = con.execute("SELECT id FROM identifiers").fetchone()[0]
    con.execute('INSERT INTO insertions (identifier_id, document, sha256_before, sha256_after, "offset", '
                "strategy, created_at) VALUES (?, ?, ?, ?, 0, 'end', '2024-01-01T00:00:00.000000Z')",
                (ident, "doc\x1b[31m.txt\u202e", "0" * 64, "1" * 64))
    con.commit()
    con.close()
    for args in (["list"], ["show", ident], ["commit"], ["list", "--json"]):
        res = gs(*args, "--ledger", led)
        assert res.returncode == 0, res.stderr
        assert b"\x1b" not in res.stdout and b"\x07" not in res.stdout and "\u202e".encode() not in res.stdout
    assert b"\\x1b" in gs("show", ident, "--ledger", led).stdout


# --- 18. commit publishes only what the docs promise --------------------------------------------

def test_commit_list_reveals_no_owner_or_time(tmp_path):
    led = tmp_path / "l.db"
    assert gs("new", "--owner", "secret-owner-name", "--ledger", led).returncode == 0
    res = gs("commit", "--json", "--ledger", led)
    data = json.loads(res.stdout)
    assert set(data["identifiers"][0]) == {"id", "commitment"}
    human = gs("commit", "--ledger", led).stdout.decode()
    assert "secret-owner-name" not in human and "T" not in human.split("root:")[1].split("\n", 1)[1]


# --- 8. import validates every value ------------------------------------------------------------

def _export_lines(tmp_path) -> list[dict]:
    with Ledger(tmp_path / "src.db") as a:
        ident = a.new_identifier("ann", EN, n_words=4)
        a.add_insertion(ident.id, "d.md", "a" * 64, "b" * 64, 3, "end")
        buf = io.StringIO()
        export_jsonl(a, buf)
    return [json.loads(x) for x in buf.getvalue().splitlines()]


@pytest.mark.parametrize("kind,field,value,message", [
    ("identifier", "created_at", "not a date", "created_at"),
    ("identifier", "created_at", "2024-02-30T00:00:00.000000Z", "created_at"),
    ("identifier", "created_at", "9999-01-01T00:00:00.000000Z", "future"),
    ("identifier", "drawn", "magic", "drawn"),
    ("identifier", "drawn", "seed:x", "drawn"),
    ("identifier", "words", ["notaword", "zzzzqqq", "abc", "xyz"], "not in the word list"),
    ("identifier", "wordlist_name", "", "wordlist_name"),
    ("insertion", "offset", -1, "offset"),
    ("insertion", "sha256_before", "xyz", "sha256_before"),
    ("insertion", "sha256_after", "A" * 64, "sha256_after"),
    ("insertion", "created_at", "yesterday", "created_at"),
    ("insertion", "strategy", "everywhere", "strategy"),
    ("insertion", "document", "", "document"),
])
def test_import_refuses_invalid_values(tmp_path, kind, field, value, message):
    lines = _export_lines(tmp_path)
    for x in lines:
        if x["type"] == kind:
            x[field] = value
            if field == "words":
                x.pop("text")
    text = "".join(json.dumps(x) + "\n" for x in lines)
    with Ledger(tmp_path / "dst.db") as b:
        with pytest.raises(InputError, match=message):
            import_jsonl(b, io.StringIO(text), "x.jsonl")
        assert b.identifiers() == [] and b.insertions() == []


def test_import_warns_about_seeded_identifiers(tmp_path):
    with Ledger(tmp_path / "src.db") as a:
        a.new_identifier("ann", EN, n_words=4, seed=3)
        a.new_identifier("bob", EN, n_words=4)
    assert gs("export", "-o", tmp_path / "x.jsonl", "--ledger", tmp_path / "src.db").returncode == 0
    res = gs("import", tmp_path / "x.jsonl", "--ledger", tmp_path / "dst.db")
    assert res.returncode == 0, res.stderr
    warnings = [l for l in res.stderr.decode().splitlines() if l.startswith("Warning:")]
    assert len(warnings) == 1 and "seed" in warnings[0] and "predictable" in warnings[0]


# --- 7. concurrent get-or-create -----------------------------------------------------------------

def test_concurrent_tag_jsonl_runs_give_each_new_owner_one_identifier(tmp_path):
    led = tmp_path / "l.db"
    assert gs("new", "--owner", "seed-owner", "--ledger", led).returncode == 0  # the ledger exists first
    owners = [f"owner{i}" for i in range(12)]
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b"".join(json.dumps({"owner": o, "text": "One here. Two here."}).encode() + b"\n"
                             for _ in range(3) for o in owners))
    procs = [popen("tag-jsonl", inp, tmp_path / f"out{k}.jsonl", "--ledger", led, "--max-per-owner", "1",
                   "--words", "4", "--no-progress") for k in range(4)]
    for p in procs:
        p.wait(120)
        assert p.returncode == 0, p.stderr.read()
    with Ledger(led) as l:
        got = [i.owner for i in l.identifiers() if i.owner != "seed-owner"]
        assert sorted(got) == sorted(owners)  # each new owner exactly once
        by_owner = {i.owner: i for i in l.identifiers()}
        for k in range(4):
            text = (tmp_path / f"out{k}.jsonl").read_text()
            for o in owners:
                assert by_owner[o].text in text


# --- several processes opening a new ledger at once ----------------------------------------------

def _open_and_draw(path: str, owner: str, errors, barrier) -> None:
    try:
        barrier.wait(30)  # all open at the same moment
        with Ledger(path) as led:
            led.new_identifier(owner, "en", n_words=4)
    except Exception as e:  # reported to the parent, which fails the test
        errors.put(f"{type(e).__name__}: {e}")


def test_processes_opening_a_new_ledger_at_once_all_succeed(tmp_path):
    """SQLite answers the switch to WAL with "database is locked" at once, without its busy timeout,
    when another connection is opening the same new file: it used to fail about 1 open in 100."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    errors = ctx.Queue()
    for round_ in range(40):
        path = str(tmp_path / f"l{round_}.db")
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_and_draw, args=(path, f"o{k}", errors, barrier)) for k in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert errors.empty(), errors.get()
        with Ledger(path) as led:
            assert len(led.identifiers()) == 4
