"""What a detection run tests: ledger identifiers (members) and fresh, never-published controls.

A member is tested with the exact word list it was drawn from (its p-values are only valid for that
list); controls are drawn exactly like the members, one set per stratum (same list, length, template).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

from ghostsent.errors import LedgerError
from ghostsent.passphrase import Ghost, draw_words
from ghostsent.wordlists import WordList, find_wordlist, load_wordlist

MEMBER, CONTROL = "member", "control"


@dataclass
class Subject:
    """One thing under test: a ledger identifier (role member) or a fresh control passphrase."""

    key: str
    role: str            # "member" or "control"
    ghost: Ghost
    wordlist: WordList
    owner: str | None = None
    lead: str = ""       # text shown before the ghost in a context probe (detection/context.py)

    @property
    def stratum(self) -> str:
        """Members and nulls are exchangeable only within a stratum: same list, length and template."""
        return f"{self.wordlist.sha256[:12]}|{len(self.ghost.words)}|{self.ghost.template}"

    def fresh(self, rng: random.Random | None) -> Ghost:
        """A passphrase drawn exactly like this subject's (a null or a control)."""
        return self.ghost.with_words(draw_words(self.wordlist, len(self.ghost.words), rng))


def wordlist_for(ident: Any, override: str | None = None) -> WordList:
    """The identifier's exact word list; p-values are only valid for the list it was drawn from. Found by
    the recorded SHA-256 among the shipped and legacy lists (so identifiers drawn from an older version
    of a shipped list still test), else by the recorded name or path, or `override`."""
    wl = load_wordlist(override) if override else find_wordlist(ident.wordlist_sha256, ident.wordlist_name)
    if wl.sha256 != ident.wordlist_sha256:
        raise LedgerError(
            f"identifier {ident.id}: word list {wl.name!r} has sha256 {wl.sha256[:12]}…, but the identifier "
            f"was drawn from {ident.wordlist_sha256[:12]}…; the original list is needed", hint="wordlist")
    return wl


def subjects_from_ledger(idents: Sequence[Any], wordlist_override: str | None = None) -> list[Subject]:
    return [Subject(i.id, MEMBER, i.ghost, wordlist_for(i, wordlist_override), i.owner) for i in idents]


def make_controls(subjects: Sequence[Subject], n: int, rng: random.Random | None) -> list[Subject]:
    """n fresh passphrases per stratum of the members, drawn exactly like them and never published."""
    out: list[Subject] = []
    first: dict[str, Subject] = {}
    for s in subjects:
        first.setdefault(s.stratum, s)
    for s in first.values():
        for _ in range(n):
            # the same lead as the stratum's first member: controls are probed exactly like the members
            out.append(Subject(f"control-{len(out) + 1}", CONTROL, s.fresh(rng), s.wordlist, lead=s.lead))
    return out
