"""CLI commands over the ledger: new, list, show, export, import, commit (real SQLite files)."""
from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from ghostsent.cli import main
from ghostsent.wordlists import load_wordlist

pytestmark = pytest.mark.core  # runs on the light install (no extras)


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("GHOSTSENT_LEDGER", str(tmp_path / "env.db"))
    monkeypatch.setenv("USER", "tester")
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke


def _json(result):
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def test_new_human_output(run, tmp_path):
    res = run("new", "--owner", "ann", "--template", "post")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("The ghost sentence of this post is ") and lines[0].endswith(".")
    assert "owner: ann" in lines[1] and "12 words from en" in lines[1]
    assert "entropy: 155.1 bits" in lines[1]
    assert (tmp_path / "env.db").exists()  # GHOSTSENT_LEDGER is honoured


def test_new_json_and_seed_warning(run, tmp_path):
    db = str(tmp_path / "x.db")
    data = _json(run("new", "--words", "4", "--seed", "3", "--template", "Mark: {words}!", "--ledger", db, "--json"))
    assert data["owner"] == "tester"  # $USER
    assert data["n_words"] == 4 and len(data["words"]) == 4
    assert data["text"] == "Mark: " + " ".join(data["words"]) + "!"
    assert data["drawn"] == "seed:3" and data["wordlist_size"] == 7776
    assert data["entropy_bits"] == pytest.approx(4 * 12.925, abs=0.01)
    res = run("new", "--seed", "3", "--ledger", db)
    assert "tests and studies only" in res.stderr


def test_new_with_user_wordlist(run, tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(load_wordlist("en").words[:2048]) + "\n", encoding="utf-8")
    data = _json(run("new", "--wordlist", str(path), "--words", "10", "--json"))
    assert data["entropy_bits"] == pytest.approx(110.0)
    assert data["wordlist_name"] == str(path.resolve())


def test_new_natural_template_draws_a_lead_in(run, tmp_path):
    from ghostsent.passphrase import natural_templates

    data = _json(run("new", "--template", "natural", "--ledger", str(tmp_path / "n.db"), "--json"))
    assert data["template"] in natural_templates()
    assert data["text"] == data["template"].replace("{words}", " ".join(data["words"]))


@pytest.mark.parametrize("args, code, message", [
    (("new", "--template", "no placeholder"), 3, "must contain {words}"),
    (("new", "--wordlist", "xx"), 3, "unknown word list 'xx'"),
    (("new", "--words", "0"), 2, "0"),
    (("show", "gs-nope"), 4, "unknown identifier 'gs-nope'"),
])
def test_errors_and_exit_codes(run, args, code, message):
    if args[0] == "show":
        assert run("new").exit_code == 0  # read commands need an existing ledger (issue 8)
    res = run(*args)
    assert res.exit_code == code
    assert message in res.stderr
    assert "Traceback" not in res.output


def test_list_and_show(run):
    a = _json(run("new", "--owner", "ann", "--json"))
    b = _json(run("new", "--owner", "bob", "--words", "6", "--json"))
    rows = _json(run("list", "--json"))
    assert [r["id"] for r in rows] == [a["id"], b["id"]]
    assert rows[1]["n_words"] == 6 and rows[0]["insertions"] == 0
    assert [r["owner"] for r in _json(run("list", "--owner", "bob", "--json"))] == ["bob"]
    table = run("list").stdout
    assert "INSERTIONS" in table and a["id"] in table and b["id"] in table
    shown = _json(run("show", a["id"][:8], "--json"))  # unique prefix
    assert shown["id"] == a["id"] and shown["text"] == a["text"] and shown["insertions"] == []
    assert "salt" not in shown and "reveal" not in shown
    human = run("show", a["id"]).stdout
    assert a["text"] in human and "salt" not in human


def test_show_reveal_lets_a_third_party_recompute(run):
    a = _json(run("new", "--json"))
    rv = _json(run("show", a["id"], "--reveal", "--json"))["reveal"]
    canonical = json.loads(rv["canonical_json"])
    assert canonical["ghost"] == a["text"] and canonical["id"] == a["id"]
    digest = hashlib.sha256(bytes.fromhex(rv["salt"]) + rv["canonical_json"].encode()).hexdigest()
    assert digest == rv["commitment"]
    commit = _json(run("commit", "--json"))
    assert commit["flat_root"] == hashlib.sha256(bytes.fromhex(digest)).hexdigest()  # one identifier
    assert commit["root"] == hashlib.sha256(b"\x00" + bytes.fromhex(digest)).hexdigest()  # a one-leaf Merkle tree
    human = run("show", a["id"], "--reveal").stdout
    assert rv["salt"] in human and rv["canonical_json"] in human


def test_export_import_round_trip(run, tmp_path):
    for owner in ("ann", "bob"):
        run("new", "--owner", owner)
    out = tmp_path / "export.jsonl"
    assert _json(run("export", "-o", str(out), "--json"))["records"] == 2
    stdout_export = run("export").stdout
    assert stdout_export == out.read_text(encoding="utf-8")
    other = str(tmp_path / "other.db")
    counts = _json(run("import", str(out), "--ledger", other, "--json"))
    assert counts["identifiers"] == {"added": 2, "skipped": 0}
    assert _json(run("commit", "--ledger", other, "--json")) == _json(run("commit", "--json"))
    again = run("import", "-", "--ledger", other, input=stdout_export)  # from stdin; all duplicates
    assert again.exit_code == 0 and "identifiers: 0 added, 2 identical already present" in again.stdout


def test_import_refuses_conflicts_and_bad_lines(run, tmp_path):
    run("new", "--owner", "ann")
    out = tmp_path / "e.jsonl"
    run("export", "-o", str(out))
    lines = out.read_text(encoding="utf-8").splitlines()
    ident = json.loads(lines[1])
    tampered = tmp_path / "t.jsonl"
    tampered.write_text("\n".join([lines[0], json.dumps({**ident, "owner": "mallory"})]) + "\n", encoding="utf-8")
    before = run("commit", "--json").stdout
    res = run("import", str(tampered))
    assert res.exit_code == 4 and f"t.jsonl:2: identifier {ident['id']} conflicts" in res.stderr
    broken = tmp_path / "b.jsonl"
    broken.write_text(lines[0] + "\n{oops\n", encoding="utf-8")
    fresh = str(tmp_path / "fresh.db")
    res = run("import", str(broken), "--ledger", fresh)
    assert res.exit_code == 3 and "b.jsonl:2: not valid JSON" in res.stderr
    assert _json(run("list", "--ledger", fresh, "--json")) == []
    assert run("commit", "--json").stdout == before
    res = run("import", str(tmp_path / "missing.jsonl"))
    assert res.exit_code == 3 and "missing.jsonl" in res.stderr


def test_commit_human(run):
    a = _json(run("new", "--json"))
    res = run("commit")
    assert res.stdout.startswith("root: ") and "(1 identifiers" in res.stdout and a["id"] in res.stdout


def test_default_ledger_is_in_the_user_data_folder_and_an_old_one_is_not_switched_silently(tmp_path, monkeypatch):
    """Without --ledger or $GHOSTSENT_LEDGER the ledger is ghostsent.db in the user data folder
    (`ghostsent ledger path` prints it); a 0.1 ledger in the current folder gets a note saying how to
    keep using it, and is left alone."""
    monkeypatch.delenv("GHOSTSENT_LEDGER", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["ledger", "path", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["path"] == str(tmp_path / "data/ghostsent/ghostsent.db")
    r = CliRunner().invoke(main, ["new", "--json"])
    assert r.exit_code == 0 and (tmp_path / "data/ghostsent/ghostsent.db").is_file()
    assert not (tmp_path / "ghostsent.db").exists()

    (tmp_path / "ghostsent.db").write_bytes(b"")  # stands for a 0.1 ledger here
    r = CliRunner().invoke(main, ["list"])
    assert r.exit_code == 0 and "--ledger ghostsent.db" in r.stderr
    assert (tmp_path / "ghostsent.db").read_bytes() == b""
    r = CliRunner().invoke(main, ["ledger", "path"])
    assert r.stdout.strip() == str(tmp_path / "data/ghostsent/ghostsent.db") and "Note:" in r.stderr


def test_every_option_can_come_from_the_environment(tmp_path, monkeypatch):
    """GHOSTSENT_<COMMAND>_<OPTION> (click's auto_envvar_prefix) and GHOSTSENT_LEDGER for every command."""
    led = tmp_path / "env.db"
    monkeypatch.setenv("GHOSTSENT_LEDGER", str(led))
    monkeypatch.setenv("GHOSTSENT_NEW_OWNER", "from-env")
    monkeypatch.setenv("GHOSTSENT_NEW_WORDS", "7")
    r = CliRunner().invoke(main, ["new", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["owner"] == "from-env" and d["n_words"] == 7 and led.is_file()
    monkeypatch.setenv("GHOSTSENT_LIST_OWNER", "nobody")
    r = CliRunner().invoke(main, ["list", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []
