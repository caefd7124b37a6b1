"""Legacy word lists: identifiers drawn from the 0.1 lists still test; nothing new is drawn from them.

The 0.2 screen (issue 11) changed every shipped list, so its SHA-256 changed, and an identifier drawn
from a 0.1 list used to be refused ("pass --wordlist with the original list"). The 0.1 lists ship as
legacy data and an identifier's list is found by its recorded SHA-256.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ghostsent.detection.subjects import subjects_from_ledger
from ghostsent.errors import InputError
from ghostsent.ledger import Ledger
from ghostsent.wordlists import builtin_names, find_wordlist, legacy_names, load_wordlist, parse_wordlist
from proc import gs

pytestmark = pytest.mark.core

LEGACY = Path(__file__).resolve().parent.parent / "wordlists" / "legacy"
# The SHA-256 every 0.1 list recorded in its identifiers (git show 258aac5:wordlists/<lang>.txt).
V01 = {
    "de": "811ca2698124224d188dc0aa191da4ec62ef413fe98118c7b0309f2bc04fee33",
    "en": "f0eb4cd47896bc918d240386ff2f32ddfddb266226a31b22512b744ad11821a4",
    "es": "fa38bb5a027b7a0955863ab1c797bc04e9f649111c15854cfe7956540634e891",
    "fr": "76891fd0303db9416454987f0cc33863af28619387997fc42b8eb4c29510fb1a",
    "it": "f99916feb20e94df39b36d3aae4ab2dd1fbb70a4cc0d101d8dcecedaaf385044",
    "nl": "1f0f1c0e899a6d3113718fa6643e73ed5f7e8c482a33317aaec5bd46942bb112",
    "pt": "0a17a652fa6a459e2963a2da355546f021fddb9e848effd900b8790a17586f6a",
}


def old_en() -> "object":
    """The 0.1 `en` list as 0.1 loaded it: named "en" (what its identifiers recorded)."""
    return parse_wordlist((LEGACY / "en-0.1.txt").read_text(encoding="utf-8"), "en.txt", name="en")


def test_every_legacy_list_is_the_01_list_and_differs_from_the_shipped_one():
    assert legacy_names() == sorted(f"{lang}-0.1" for lang in V01)
    for lang, sha in V01.items():
        wl = find_wordlist(sha)
        assert wl.sha256 == sha and wl.size == 7776 and wl.name == f"{lang}-0.1"
        assert load_wordlist(lang).sha256 != sha


def test_a_01_identifier_is_tested_without_wordlist(tmp_path):
    led_path = tmp_path / "l.db"
    with Ledger(led_path) as led:
        ident = led.new_identifier("ana", old_en(), 12, "post")
    assert ident.wordlist_name == "en" and ident.wordlist_sha256 == V01["en"]
    with Ledger(led_path) as led:
        [subject] = subjects_from_ledger([led.get(ident.id)])
    assert subject.wordlist.sha256 == V01["en"] and subject.wordlist.name == "en-0.1"
    reply = tmp_path / "reply.txt"
    reply.write_text("I do not know how it continues.\n")
    res = gs("check", ident.id, "--reply", reply, "--json", "--ledger", led_path)
    assert res.returncode == 0, res.stderr.decode()
    out = json.loads(res.stdout)
    assert out["vocab_size"] == 7776 and out["test_number"] == 1 and not out["detected"]


def test_new_never_draws_from_a_legacy_list(tmp_path):
    assert not set(legacy_names()) & set(builtin_names())
    with pytest.raises(InputError, match="unknown word list"):
        load_wordlist("en-0.1")
    res = gs("new", "--wordlist", "en-0.1", "--ledger", tmp_path / "l.db")
    assert res.returncode == 3 and b"unknown word list" in res.stderr
    res = gs("new", "--owner", "ana", "--json", "--ledger", tmp_path / "l.db")
    assert json.loads(res.stdout)["wordlist_sha256"] == load_wordlist("en").sha256
