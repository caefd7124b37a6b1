"""The interface every ledger backend implements: storage only, no rules.

The rules that use it live beside it: drawing identifiers (draw.py), export/import and its checks
(transfer.py), commitments (commitments.py), an identifier's test history (history.py). A backend stores
and returns records (records.py) and makes every write a transaction that joins an outer one, so a rule
spanning several writes (draw + set current owner; a tagged file's rename + its record) is all or
nothing. SQLite (sqlite.py) is the one backend today; a PostgreSQL one implements this same class and
registers its URL scheme in ghostsent/ledger/__init__.py (BACKENDS).
"""
from __future__ import annotations

import contextlib
import random
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Sequence

from ghostsent.ledger.records import DisclosureRecord, Identifier, Insertion, RunRecord, TestRecord
from ghostsent.passphrase import DEFAULT_WORDS
from ghostsent.wordlists import WordList

InsertionRow = tuple[str, str, str, str, int, str]  # identifier id, document, sha256 before/after, offset, strategy


class LedgerStore(ABC):
    """One ledger. Use as a context manager, or call close()."""

    path: Path        # where it lives (a file for SQLite); shown in messages
    created: bool     # whether this open created it (the CLI says so on stderr)

    def __enter__(self) -> "LedgerStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def transaction(self) -> ContextManager[None]:
        """All writes inside commit together or not at all; nested calls join the outer transaction."""

    def deferred_sync(self) -> ContextManager[None]:
        """Transactions committed inside may skip their own flush to stable storage, provided the caller
        commits a normal transaction afterwards (which then makes them durable too). A no-op by default."""
        return contextlib.nullcontext()

    @property
    @abstractmethod
    def schema_version(self) -> int: ...

    # -- identifiers ---------------------------------------------------------------------------------
    @abstractmethod
    def add_identifier(self, ident: Identifier) -> None:
        """Store (a fresh salt if it has none); LedgerError on an id or passphrase conflict."""

    @abstractmethod
    def find(self, identifier_id: str) -> Identifier | None:
        """The identifier with exactly this id, or None."""

    @abstractmethod
    def get(self, id_or_unique_prefix: str) -> Identifier:
        """By id or a prefix matching exactly one id; LedgerError naming it if unknown or ambiguous."""

    @abstractmethod
    def identifiers(self, owner: str | None = None) -> list[Identifier]:
        """All identifiers (of one owner), oldest first."""

    @abstractmethod
    def identifier_for_owner(self, owner: str) -> Identifier | None:
        """The owner's current identifier (the newest drawn or imported), or None."""

    @abstractmethod
    def set_current(self, owner: str, identifier_id: str) -> None: ...

    @abstractmethod
    def passphrase_owner(self, key: str) -> str | None:
        """The id of the identifier whose passphrase key (records.passphrase_key) is `key`, or None."""

    @abstractmethod
    def count_identifiers(self, n_words: int) -> int: ...

    def new_identifier(self, owner: str, wordlist: "WordList | str | Path", n_words: int = DEFAULT_WORDS,
                       template: str | None = None, seed: int | None = None,
                       rng: random.Random | None = None) -> Identifier:
        """Draw and store a new identifier (ghostsent.ledger.draw.new_identifier)."""
        from ghostsent.ledger.draw import new_identifier

        return new_identifier(self, owner, wordlist, n_words, template, seed, rng)

    def identifier_for_owner_or_new(self, owner: str, wordlist: "WordList | str | Path",
                                    n_words: int = DEFAULT_WORDS, template: str | None = None,
                                    seed: int | None = None) -> tuple[Identifier, bool]:
        """The owner's current identifier or a new one (ghostsent.ledger.draw)."""
        from ghostsent.ledger.draw import identifier_for_owner_or_new

        return identifier_for_owner_or_new(self, owner, wordlist, n_words, template, seed)

    # -- insertions ----------------------------------------------------------------------------------
    @abstractmethod
    def add_insertion(self, identifier_id: str, document: str, sha256_before: str, sha256_after: str,
                      offset: int, strategy: str, created_at: str | None = None) -> int:
        """Record that a ghost sentence went into a document; returns the insertion id."""

    @abstractmethod
    def add_insertions(self, rows: Iterable[InsertionRow]) -> int:
        """Record many insertions in one transaction (all share one created_at); returns how many."""

    @abstractmethod
    def insertions(self, identifier_id: str | None = None) -> list[Insertion]: ...

    @abstractmethod
    def has_insertion(self, identifier_id: str, document: str, sha256_after: str) -> bool: ...

    @abstractmethod
    def count_insertions(self, identifier_id: str) -> int: ...

    @abstractmethod
    def insertion_exists(self, row: InsertionRow, created_at: str) -> bool:
        """Whether an identical insertion record is stored (import skips it)."""

    # -- checkpoints of resumable jobs ----------------------------------------------------------------
    @abstractmethod
    def get_checkpoint(self, key: str) -> dict | None: ...

    @abstractmethod
    def set_checkpoint(self, key: str, state: dict) -> None: ...

    @abstractmethod
    def delete_checkpoint(self, key: str) -> None: ...

    # -- the ledger's own secrets (issue 12) -----------------------------------------------------------
    def secret(self, name: str, make: "Callable[[], bytes]") -> bytes:
        """The secret called `name` (table ledger_secrets), created with make() on first use in one
        transaction. A backend stores it; the SQLite one does (migration 5)."""
        raise NotImplementedError(f"{type(self).__name__} does not store ledger secrets yet")

    def secrets(self) -> "dict[str, tuple[bytes, str]]":
        """Every stored secret: name -> (value, created_at). Read only (export carries them)."""
        raise NotImplementedError(f"{type(self).__name__} does not store ledger secrets yet")

    # -- runs ------------------------------------------------------------------------------------------
    @abstractmethod
    def add_run(self, kind: str, model: dict, settings: dict, summary: dict, status: str = "complete",
                created_at: str | None = None) -> int: ...

    @abstractmethod
    def add_run_records(self, run_id: int, records: "Sequence[RunRecord | dict[str, Any]]") -> None:
        """Store a run's records (all or none); LedgerError on an unknown run or identifier, or a bad role."""

    @abstractmethod
    def runs(self, identifier_id: str | None = None) -> list[dict[str, Any]]:
        """Runs without records, oldest first; with identifier_id only runs that tested it."""

    @abstractmethod
    def run(self, run_id: int) -> dict[str, Any]:
        """One run with its "records"."""

    @abstractmethod
    def find_run(self, kind: str, created_at: str, status: str, model: dict, settings: dict,
                 summary: dict) -> int | None:
        """The id of an identical stored run (import skips it), or None."""

    # -- test history and disclosures (history.py) ------------------------------------------------------
    @abstractmethod
    def reserve_tests(self, entries: Sequence[tuple[str, str, str]], stored: bool,
                      disclosures: Sequence[tuple[str, str, str, list[int]]] = ()) -> list[tuple[int, int]]:
        """Take the next test number of each (identifier, kind, model) and log what the test will show,
        in one transaction, before the test runs. Returns (test id, number) per entry."""

    @abstractmethod
    def finish_test(self, test_id: int, p_value: float | None, p_history: float | None,
                    run_id: int | None) -> None: ...

    @abstractmethod
    def tests(self, identifier_id: str | None = None) -> list[TestRecord]: ...

    @abstractmethod
    def add_test(self, t: TestRecord) -> None:
        """Store a test as it is (import); its id is ignored."""

    @abstractmethod
    def add_disclosure(self, identifier_id: str, endpoint: str, via: str, words: Sequence[int],
                       test_id: int | None = None, created_at: str | None = None) -> None: ...

    @abstractmethod
    def disclosures(self, identifier_id: str | None = None) -> list[DisclosureRecord]: ...
