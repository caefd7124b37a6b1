"""The ledger: every identifier, where it was inserted, every test of it and what each test showed.

    records.py      Identifier, Insertion, RunRecord, TestRecord, DisclosureRecord (what is stored)
    schema.py       the ordered migrations
    store.py        LedgerStore: the interface a backend implements (storage only)
    sqlite.py       SQLiteLedger, the default backend (one local file)
    postgres.py     PostgresLedger: many writers on one PostgreSQL database (the same SQL, rendered)
    draw.py         drawing new identifiers (never one already issued; one current per owner)
    transfer.py     export / import as JSON lines, all or nothing
    commitments.py  publishable commitments to the identifiers (merkle.py: the tree and its proofs)
    history.py      an identifier's tests and disclosures

`open_ledger(location)` picks the backend from the location: a file path (or sqlite:///path) is SQLite,
postgresql://… (or postgres://…) is PostgreSQL. A new backend implements LedgerStore and adds its URL
scheme to BACKENDS.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ghostsent.errors import LedgerError
from ghostsent.ledger.postgres import PostgresLedger
from ghostsent.ledger.records import Identifier, Insertion, RunRecord
from ghostsent.ledger.schema import SCHEMA_VERSION
from ghostsent.ledger.sqlite import DEFAULT_TIMEOUT, SQLiteLedger
from ghostsent.ledger.store import LedgerStore

Ledger = SQLiteLedger  # the default backend under its familiar name

# URL scheme -> backend class; anything without "scheme://" is a SQLite file path.
BACKENDS: dict[str, Callable[..., LedgerStore]] = {"sqlite": SQLiteLedger, "postgresql": PostgresLedger,
                                                   "postgres": PostgresLedger}

__all__ = ["Ledger", "LedgerStore", "SQLiteLedger", "PostgresLedger", "Identifier", "Insertion", "RunRecord", "SCHEMA_VERSION",
           "DEFAULT_TIMEOUT", "BACKENDS", "open_ledger"]


def open_ledger(location: "str | Path", *, create: bool = False, timeout: float = DEFAULT_TIMEOUT) -> LedgerStore:
    """The ledger at `location`: `sqlite:///path` or a plain path (SQLite), or another backend's URL
    (passed whole: it may carry the user, host and options)."""
    text = str(location)
    scheme, sep, rest = text.partition("://")
    if not sep or "/" in scheme or "\\" in scheme:
        return SQLiteLedger(Path(text), create=create, timeout=timeout)
    backend = BACKENDS.get(scheme.lower())
    if backend is None:
        raise LedgerError(f"{text}: no ledger backend for {scheme}:// (available: "
                          f"{', '.join(s + '://' for s in BACKENDS)} or a file path)")
    return backend(Path(rest) if scheme.lower() == "sqlite" else text, create=create, timeout=timeout)
