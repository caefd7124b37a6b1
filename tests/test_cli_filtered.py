"""`new`, `insert` and `tag-jsonl` refuse word lists, templates and ghosts that pretraining filters would
drop (exit 3, one line, nothing written), unless --allow-filtered."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ghostsent.cli import main
from ghostsent.ledger import Ledger
from ghostsent.wordlists import load_wordlist

pytestmark = pytest.mark.core  # runs on the light install (no extras)

JS_TEMPLATE = "Please enable javascript for {words}."


def run(args, ledger):
    return CliRunner().invoke(main, [*args, "--ledger", str(ledger)])


def _one_error_line(r) -> str:
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert "Traceback" not in r.output
    return lines[0]


def test_new_refuses_a_filtered_template_and_records_nothing(tmp_path):
    led = tmp_path / "l.db"
    for template in ("Lorem ipsum {words}.", "{words} {sic}.", JS_TEMPLATE, "A ghost that trails {words}..."):
        r = run(["new", "--template", template], led)
        assert r.exit_code == 3, (template, r.output)
        assert "--allow-filtered" in _one_error_line(r)
    with Ledger(led) as l:
        assert l.identifiers() == []
    r = run(["new", "--template", JS_TEMPLATE, "--allow-filtered", "--json"], led)
    assert r.exit_code == 0, r.output


def test_new_refuses_a_user_wordlist_with_bad_words(tmp_path):
    led = tmp_path / "l.db"
    words = list(load_wordlist("en").words[:1500])
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(words[:700] + ["panties"] + words[700:]) + "\n", encoding="utf-8")
    r = run(["new", "--wordlist", str(path)], led)
    assert r.exit_code == 3
    line = _one_error_line(r)
    assert "'panties'" in line and "c4-badwords/en" in line
    # two harmless words that form an LDNOOBW phrase are caught too (a new file name: load_wordlist
    # caches lists by path)
    path = tmp_path / "mine2.txt"
    path.write_text("\n".join(words[:700] + ["jail", "bait"] + words[700:]) + "\n", encoding="utf-8")
    r = run(["new", "--wordlist", str(path)], led)
    assert r.exit_code == 3 and "jail bait" in _one_error_line(r)
    assert run(["new", "--wordlist", str(path), "--allow-filtered"], led).exit_code == 0


def _filtered_identifier(led: Path) -> str:
    r = run(["new", "--owner", "ann", "--words", "6", "--template", JS_TEMPLATE, "--allow-filtered", "--json"], led)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["id"]


def test_insert_refuses_a_filtered_ghost_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    led = tmp_path / "l.db"
    ident = _filtered_identifier(led)
    Path("a.txt").write_text("One sentence here. Another one follows. And a third.\n")
    r = run(["insert", ident, "a.txt"], led)
    assert r.exit_code == 3 and "c4-javascript" in _one_error_line(r)
    assert not Path("tagged").exists()
    with Ledger(led) as l:
        assert l.count_insertions(ident) == 0
    r = run(["insert", ident, "a.txt", "--allow-filtered"], led)
    assert r.exit_code == 0 and Path("tagged/a.txt").exists()


def test_tag_jsonl_refuses_an_owner_with_a_filtered_ghost(tmp_path):
    led = tmp_path / "l.db"
    _filtered_identifier(led)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"owner": o, "text": "First one. Second one. Third."}) + "\n"
                           for o in ("bob", "ann")))
    out = tmp_path / "out.jsonl"
    r = run(["tag-jsonl", str(src), str(out)], led)
    assert r.exit_code == 3 and "c4-javascript" in _one_error_line(r)
    assert not out.exists() and not Path(str(out) + ".partial").exists()
    with Ledger(led) as l:
        assert l.insertions() == []
    r = run(["tag-jsonl", str(src), str(out), "--template", "Lorem ipsum {words}."], led)
    assert r.exit_code == 3 and "c4-lorem-ipsum" in _one_error_line(r)
    r = run(["tag-jsonl", str(src), str(out), "--allow-filtered"], led)
    assert r.exit_code == 0 and out.exists()
