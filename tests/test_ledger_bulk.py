"""Ledger.add_insertions (tag-jsonl's checkpoint chunks) on a real SQLite file: same rows as
add_insertion, in order, all or nothing, joining an outer transaction."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ghostsent.errors import LedgerError
from ghostsent.ledger import Ledger

pytestmark = pytest.mark.core  # runs on the light install (no extras)


def _sha(x: str) -> str:
    return hashlib.sha256(x.encode()).hexdigest()


@pytest.fixture
def led(tmp_path):
    with Ledger(tmp_path / "l.db") as ledger:
        yield ledger


def test_rows_match_add_insertion_and_keep_order(led):
    a, b = led.new_identifier("ann", "en", n_words=6), led.new_identifier("bob", "en", n_words=6)
    first = led.add_insertion(a.id, "x.md", _sha("0"), _sha("1"), 3, "start")
    rows = [(a.id if i % 2 else b.id, Path(f"in.jsonl:line {i}"), _sha(f"b{i}"), _sha(f"a{i}"), i, "latter-half")
            for i in range(7)]
    assert led.add_insertions(iter(rows)) == 7
    assert led.add_insertions([]) == 0
    got = led.insertions()
    assert got[0].id == first and [g.id for g in got[1:]] == list(range(first + 1, first + 8))
    assert [(g.identifier_id, g.document, g.sha256_before, g.sha256_after, g.offset, g.strategy) for g in got[1:]] == \
        [(r[0], str(r[1]), r[2], r[3], r[4], r[5]) for r in rows]
    assert len({g.created_at for g in got[1:]}) == 1 and got[1].created_at >= got[0].created_at
    assert led.count_insertions(a.id) == 1 + 3


def test_unknown_identifier_records_nothing(led):
    a = led.new_identifier("ann", "en", n_words=6)
    rows = [(a.id, "d1", _sha("a"), _sha("b"), 0, "end"), ("gs-0000000000", "d2", _sha("a"), _sha("b"), 0, "end")]
    with pytest.raises(LedgerError, match="unknown identifier 'gs-0000000000'"):
        led.add_insertions(rows)
    assert led.insertions() == []


def test_joins_the_outer_transaction(led, tmp_path):
    a = led.new_identifier("ann", "en", n_words=6)
    with pytest.raises(RuntimeError):
        with led.transaction():
            led.add_insertions([(a.id, "d", _sha("a"), _sha("b"), 1, "end")])
            led.set_checkpoint("k", {"n": 1})
            raise RuntimeError("crash before commit")
    assert led.insertions() == [] and led.get_checkpoint("k") is None
    with led.transaction():
        led.add_insertions([(a.id, "d", _sha("a"), _sha("b"), 1, "end")])
        led.set_checkpoint("k", {"n": 1})
    with Ledger(tmp_path / "l.db") as other:  # committed, visible to a second connection
        assert len(other.insertions()) == 1 and other.get_checkpoint("k") == {"n": 1}
