"""An identifier's history: every test it has had, and which of its words were shown to whom.

Two facts make this part of the evidence, not bookkeeping (docs/statistics.md, section 4):

* Each test of an identifier is one more chance of a false detection. Its j-th test (whatever command
  ran it, stored or not, whichever model) is held to alpha/(j(j+1)); these shares add up to alpha, so
  however often a user re-tests and whenever they stop, P(any false DETECTED) <= alpha. The test number
  is taken in the ledger BEFORE the test runs (ghostsent/detection/session.py), so a crash still counts.
* Testing shows a provider some or all of the passphrase (a probe shows all but the last k words; an
  API perplexity test every word; a card what its prompts show). A provider that trains on traffic can
  then "memorise" the identifier from the owner's own test, so every disclosure is logged, and `check`
  scores only words that no prompt has shown.

This module reads that history (for `show` and for `check`); the detection session writes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ghostsent.ledger.records import DisclosureRecord, TestRecord


@dataclass
class History:
    identifier_id: str
    n_words: int
    tests: list[TestRecord] = field(default_factory=list)
    disclosures: list[DisclosureRecord] = field(default_factory=list)

    @property
    def n_tests(self) -> int:
        return len(self.tests)

    @property
    def p_over_all(self) -> float:
        """min_j p_j * j(j+1): valid for "no model tested so far saw it" (union bound over the tests)."""
        return min((t.p_history for t in self.tests if t.p_history is not None), default=1.0)

    def shown(self, via: Sequence[str] = ("card", "probe")) -> int:
        """How many leading words prompts of these kinds have shown (0 if none is logged)."""
        return max((max(d.words) + 1 for d in self.disclosures if d.via in via and d.words), default=0)

    def card_ks(self) -> list[int]:
        """The k of every card prompt logged for the identifier (k = words held out)."""
        return sorted({self.n_words - len(d.words) for d in self.disclosures if d.via == "card"})

    def to_dict(self) -> dict[str, Any]:
        drop_t, drop_d = ("id", "identifier_id"), ("id", "identifier_id", "test_id")
        return {"n_tests": self.n_tests, "p_over_all": self.p_over_all,
                "tests": [{k: v for k, v in t.to_dict().items() if k not in drop_t} for t in self.tests],
                "disclosures": [{k: v for k, v in d.to_dict().items() if k not in drop_d} for d in self.disclosures]}


def history(ledger: Any, identifier_id: str) -> History:
    """The history of one identifier (id or unique prefix) in `ledger`."""
    ident = ledger.get(identifier_id)
    return History(ident.id, ident.n_words, ledger.tests(ident.id), ledger.disclosures(ident.id))
