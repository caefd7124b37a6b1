"""Drawing identifiers into a ledger: fresh passphrases, never one already issued, one current per owner.

Storage (any LedgerStore) answers "is this passphrase taken?" and stores; the rules live here: draw with
`secrets` (or a seeded generator, recorded as such), redraw on a collision, and make the newest
identifier the owner's current one, all in one transaction.
"""
from __future__ import annotations

import random
import secrets
from pathlib import Path
from typing import Any

from ghostsent.errors import InputError, LedgerError
from ghostsent.ledger.records import Identifier, passphrase_key, utcnow
from ghostsent.names import normalise_owner
from ghostsent.passphrase import DEFAULT_WORDS, Ghost, draw_words, resolve_template
from ghostsent.wordlists import WordList, builtin_names, load_wordlist

MAX_DRAWS = 100_000  # redraws before giving up on finding an unused passphrase


def _wordlist(wordlist: "WordList | str | Path") -> tuple[WordList, str]:
    """The list and the name to record: a shipped list by name, a user's file by absolute path (so
    audits can reload it later)."""
    if isinstance(wordlist, WordList):
        return wordlist, wordlist.name
    wl = load_wordlist(wordlist)
    return wl, str(wordlist) if str(wordlist) in builtin_names() else str(Path(wordlist).resolve())


def new_identifier(ledger: Any, owner: str, wordlist: "WordList | str | Path", n_words: int = DEFAULT_WORDS,
                   template: str | None = None, seed: int | None = None,
                   rng: random.Random | None = None) -> Identifier:
    """Draw a fresh identifier and store it; redraw (from the same generator) on a passphrase collision."""
    if seed is not None and rng is not None:
        raise InputError("pass either seed or rng, not both")
    wl, wl_name = _wordlist(wordlist)
    if seed is not None:
        rng, drawn = random.Random(seed), f"seed:{seed}"
    else:
        drawn = "secrets" if rng is None else "rng"
    tmpl = resolve_template(template, rng)  # `natural` draws the lead-in here, before the words
    owner = normalise_owner(owner)
    with ledger.transaction():
        if n_words >= 1 and ledger.count_identifiers(n_words) >= wl.size ** n_words:
            raise LedgerError(f"all {wl.size}^{n_words} passphrases of {n_words} word(s) are taken; use more words")
        for _ in range(MAX_DRAWS):
            words = draw_words(wl, n_words, rng)
            if ledger.passphrase_owner(passphrase_key(words)) is None:
                break
        else:
            raise LedgerError(f"no unused passphrase found in {MAX_DRAWS} draws; use more words")
        ident = Identifier(_fresh_id(ledger), owner, Ghost(words, tmpl), wl_name, wl.sha256, utcnow(), drawn,
                           secrets.token_hex(16))
        ledger.add_identifier(ident)
        ledger.set_current(owner, ident.id)  # the newest identifier is the owner's current one
    return ident


def identifier_for_owner_or_new(ledger: Any, owner: str, wordlist: "WordList | str | Path",
                                n_words: int = DEFAULT_WORDS, template: str | None = None,
                                seed: int | None = None) -> tuple[Identifier, bool]:
    """The owner's current identifier, or a new one (then True): looked up and created in ONE
    transaction, so concurrent runs that meet the same new owner give it exactly one identifier."""
    owner = normalise_owner(owner)
    with ledger.transaction():
        got = ledger.identifier_for_owner(owner)
        if got is not None:
            return got, False
        return new_identifier(ledger, owner, wordlist, n_words=n_words, template=template, seed=seed), True


def _fresh_id(ledger: Any) -> str:
    while True:
        candidate = "gs-" + secrets.token_hex(5)
        if ledger.find(candidate) is None:
            return candidate
