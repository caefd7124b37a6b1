"""Context probes (issue 10, section 2): the text before a ghost in one of its recorded documents,
shown before the ghost's revealed words. Chosen from the ledger's records (earliest copy), read back
from the document, refused in one line when no document can give it."""
from __future__ import annotations

import json

import pytest

from ghostsent.detection import probe
from ghostsent.detection.context import document_context
from ghostsent.errors import InputError
from ghostsent.ledger import Ledger

from proc import gs

STORY = ("The lighthouse keeper climbed the stairs every evening. He counted the steps aloud. "
         "The sea was calm that night. Nobody came to the island for weeks. "
         "In spring the supply boat finally arrived with letters and oil.\n")


@pytest.fixture()
def tagged(tmp_path):
    db = tmp_path / "l.db"
    doc = tmp_path / "story.txt"
    doc.write_text(STORY)
    ident = json.loads(gs("new", "--owner", "o", "--words", "6", "--json", "--ledger", db).stdout)["id"]
    out = gs("insert", ident, doc, "--in-place", "--seed", "1", "--ledger", db)
    assert out.returncode == 0, out.stderr
    return db, doc, ident


def test_context_is_the_text_before_the_ghost(tagged):
    db, doc, ident = tagged
    with Ledger(db) as led:
        lead, where = document_context(led, ident)
        ghost = led.get(ident).ghost
    text = doc.read_text()
    assert where == str(doc.resolve()) and lead and ghost.passphrase not in lead
    assert text[:text.index(ghost.text)].split()[-len(lead.split()):] == lead.split()
    [(_, prompt)] = probe.probe_prompts(ghost, 2, ("raw",), lead)
    assert prompt.startswith(lead) and prompt.endswith(ghost.context_for(2))


def test_a_document_that_changed_is_refused_in_one_line(tagged):
    db, doc, ident = tagged
    doc.write_text(STORY)   # the ghost is gone
    with Ledger(db) as led, pytest.raises(InputError) as e:
        document_context(led, ident)
    assert "no document context" in str(e.value) and "\n" not in str(e.value)
    r = gs("probe", ident, "--context", "--ledger", db)
    assert r.returncode == 3 and r.stderr.decode().count("\n") == 1


@pytest.mark.slow
def test_probe_context_cli_runs_on_the_real_model(tagged, tmp_path):
    db, doc, ident = tagged
    r = gs("probe", ident, "--context", "--k", "2", "--controls", "1", "--json", "--ledger", db,
           "--report", tmp_path / "rep", timeout=600)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    member = [s for s in d["subjects"] if s["role"] == "member"][0]
    prompts = [rec["prompt"] for rec in member["probe"]["records"]]
    assert prompts and all("lighthouse keeper" in (p if isinstance(p, str) else p[0]["content"]) for p in prompts)
    assert member["probe"]["p_value"] > 1e-3   # the untouched model never saw this ghost
