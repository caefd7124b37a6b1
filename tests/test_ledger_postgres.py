"""Many writers on one ledger: 20 concurrent writer processes on both backends, and what is particular to
PostgreSQL (real server from tests/pgserver.py): the CLI by URL, no password in any message, refusals,
lock timeouts, a killed client."""
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

from ghostsent.errors import LedgerError
from ghostsent.ledger import SCHEMA_VERSION, PostgresLedger, open_ledger
from ghostsent.ledger.postgres import display_url, scrub
from ghostsent.wordlists import load_wordlist

HERE = Path(__file__).resolve().parent
EN = load_wordlist("en")
N_WRITERS, N_SHARED = 20, 8


def _env() -> dict:
    root = str(HERE.parent)
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_twenty_concurrent_writer_processes_lose_and_double_nothing(ledger_at, tmp_path):
    """20 processes meet the same 8 new owners in different orders, each records one insertion per owner
    and draws a private identifier: every shared owner gets exactly one identifier (the same in every
    process), every acknowledged insertion is there once, nothing else is."""
    location = ledger_at.location("w")
    ledger_at("w").close()  # create it first: the race under test is the writes, not the first open
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(HERE / "ledger_writer.py"), location, str(go), str(w),
                               str(N_SHARED)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for w in range(N_WRITERS)]
    time.sleep(1.0)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    with ledger_at("w") as led:
        idents = led.identifiers()
        shared = {i.owner: i.id for i in idents if i.owner.startswith("shared-")}
        assert len(idents) == N_SHARED + N_WRITERS and len(shared) == N_SHARED  # none doubled
        assert len({i.passphrase for i in idents}) == len(idents)
        for r in results:
            assert r["owners"] == shared  # every process was given the one identifier of each owner
            assert led.find(r["private"]) is not None
        stored = {(i.id, i.document) for i in led.insertions()}
        acked = [(n, doc) for r in results for n, doc in r["insertions"]]
        assert len(stored) == len(acked) == N_WRITERS * N_SHARED
        assert stored == set(acked)


# --- PostgreSQL only -------------------------------------------------------------------------------------

def test_cli_works_on_a_postgresql_url(pg_url, tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("GHOSTSENT_LEDGER", pg_url)
    made = runner.invoke(main_cli(), ["new", "--owner", "ann", "--words", "6", "--json"])
    assert made.exit_code == 0, made.output
    assert "created new ledger at postgresql://ghostsent_test:***@" in made.stderr
    ident = json.loads(made.stdout)
    where = json.loads(runner.invoke(main_cli(), ["ledger", "path", "--json"]).stdout)
    assert where["path"] == pg_url and where["exists"] is None  # a URL, not a file to look for
    listed = json.loads(runner.invoke(main_cli(), ["list", "--json"]).stdout)
    assert [i["id"] for i in listed] == [ident["id"]]
    out = tmp_path / "e.jsonl"
    assert runner.invoke(main_cli(), ["export", "-o", str(out)]).exit_code == 0
    other = str(tmp_path / "copy.db")  # PostgreSQL -> SQLite by export/import, same commitments
    assert runner.invoke(main_cli(), ["import", str(out), "--ledger", other]).exit_code == 0
    c1 = json.loads(runner.invoke(main_cli(), ["commit", "--json"]).stdout)
    c2 = json.loads(runner.invoke(main_cli(), ["commit", "--json", "--ledger", other]).stdout)
    assert c1 == c2 and c1["count"] == 1
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(json.dumps({"owner": o, "text": f"Post by {o}. It has two sentences."}) + "\n"
                             for o in ("ann", "bob", "bob")), encoding="utf-8")
    tagged = runner.invoke(main_cli(), ["tag-jsonl", str(posts), str(tmp_path / "out.jsonl"), "--words", "6"])
    assert tagged.exit_code == 0, tagged.output
    with open_ledger(pg_url) as led:  # ann kept her identifier; bob got one; three insertions
        assert led.identifier_for_owner("ann").id == ident["id"] and len(led.identifiers()) == 2
        assert len(led.insertions()) == 3
    missing = runner.invoke(main_cli(), ["show", "gs-0000000000"])
    assert missing.exit_code == 4 and "unknown identifier" in missing.stderr
    assert _password(pg_url) not in made.output + listed.__repr__() + missing.output


def main_cli():
    from ghostsent.cli import main

    return main


def _password(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


def test_no_password_in_any_message(pg_url, postgres_server):
    pw = _password(pg_url)
    assert display_url(pg_url) == pg_url.replace(pw, "***")
    assert scrub(f"failed for {pw} and more", pg_url) == "failed for *** and more"
    assert scrub("pw is p@ss:w/rd", "postgresql://u:p%40ss%3Aw%2Frd@h/db") == "pw is ***"  # percent-decoded too
    wrong = pg_url.replace(pw, "not-the-password-" + pw[:4])
    with pytest.raises(LedgerError) as e:
        PostgresLedger(wrong)
    assert "cannot connect" in str(e.value) and "not-the-password" not in str(e.value) and pw not in str(e.value)
    res = CliRunner().invoke(main_cli(), ["list", "--ledger", wrong])
    assert res.exit_code == 4 and "not-the-password" not in res.output and "Traceback" not in res.output
    with PostgresLedger(pg_url) as led:  # and errors on an open ledger
        with pytest.raises(LedgerError) as e:
            led.get("gs-ffffffffff")
        assert pw not in str(e.value) and "***" in str(e.value)


def test_foreign_database_refused_untouched_and_newer_schema_refused(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute("CREATE TABLE identifiers (x int)")
    with pytest.raises(LedgerError, match="not a ghostsent ledger"):
        PostgresLedger(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as raw:
        tables = {r[0] for r in raw.execute("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_schema = 'public'")}
        assert tables == {"identifiers"}
        raw.execute("DROP TABLE identifiers")
    PostgresLedger(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute("INSERT INTO schema_version VALUES (99, 'future', 'now')")
    with pytest.raises(LedgerError, match=f"schema version 99 is newer than this ghostsent understands \\({SCHEMA_VERSION}\\)"):
        PostgresLedger(pg_url)


def test_a_writer_waits_then_gives_a_one_line_error(pg_url):
    with PostgresLedger(pg_url) as a, PostgresLedger(pg_url, timeout=1) as b:
        with a.transaction():
            a.new_identifier("ann", EN)
            t0 = time.monotonic()
            with pytest.raises(LedgerError, match="locked by another writer"):
                b.new_identifier("bob", EN)
            assert time.monotonic() - t0 < 10
            assert b.identifiers() == []  # a reader does not wait, and sees nothing uncommitted
        assert [i.owner for i in b.identifiers()] == ["ann"]
        b.new_identifier("bob", EN)  # the failed transaction left the connection usable


_HOLD = """
import sys, time
from ghostsent.ledger import open_ledger
from ghostsent.wordlists import load_wordlist
with open_ledger(sys.argv[1]) as led:
    with led.transaction():
        led.new_identifier("victim", load_wordlist("en"), n_words=6)
        print("inside", flush=True)
        time.sleep(600)
"""


def test_a_client_killed_mid_transaction_leaves_nothing_and_releases_the_lock(pg_url):
    PostgresLedger(pg_url).close()
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, pg_url], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stdout.readline().strip() == "inside"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with open_ledger(pg_url, timeout=30) as led:
        led.new_identifier("next", EN)  # the lock went with the killed connection
        assert [i.owner for i in led.identifiers()] == ["next"]


def test_two_ledgers_in_one_database_by_search_path(pg_url):
    """Options in the URL are kept (the lock timeout is added to them): a schema per ledger works."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute("CREATE SCHEMA one")
        raw.execute("CREATE SCHEMA two")
    sep = "&" if "?" in pg_url else "?"
    one, two = (f"{pg_url}{sep}options=-csearch_path%3D{name}" for name in ("one", "two"))
    with PostgresLedger(one) as a, PostgresLedger(two) as b:
        a.new_identifier("ann", EN)
        assert [i.owner for i in a.identifiers()] == ["ann"] and b.identifiers() == []
    with psycopg.connect(pg_url, autocommit=True) as raw:
        assert raw.execute("SELECT count(*) FROM one.identifiers").fetchone()[0] == 1
