"""The ledger's schema: the ordered migrations every backend applies.

The schema is versioned from day one (`PRAGMA user_version` plus a `schema_version` table in SQLite)
and upgraded by MIGRATIONS in order, so an old ledger opens in a newer ghostsent without losing
anything. MIGRATIONS[i] upgrades a ledger from version i to i+1: append, never edit (docs/ledger.md).
"""
from __future__ import annotations

import json
import re
import sqlite3
from typing import Callable

# PRAGMA application_id of a ghostsent ledger ("gsnt"): how a file is recognised as one without guessing
# from table names. Ledgers from before migration 4 are recognised by their tables (V1_TABLES).
APPLICATION_ID = int.from_bytes(b"gsnt", "big")
V1_TABLES = {"schema_version", "identifiers", "insertions", "checkpoints"}

_V1 = """
CREATE TABLE identifiers (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    template TEXT NOT NULL,
    words TEXT NOT NULL,                -- JSON array of the drawn words
    passphrase_norm TEXT NOT NULL,      -- words NFKC+casefolded, space-joined
    wordlist_name TEXT NOT NULL,
    wordlist_sha256 TEXT NOT NULL,
    n_words INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    drawn TEXT NOT NULL,
    salt TEXT NOT NULL
);
CREATE UNIQUE INDEX identifiers_passphrase ON identifiers(passphrase_norm);
CREATE INDEX identifiers_owner ON identifiers(owner);
CREATE TABLE insertions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier_id TEXT NOT NULL REFERENCES identifiers(id),
    document TEXT NOT NULL,
    sha256_before TEXT NOT NULL,
    sha256_after TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    strategy TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX insertions_identifier ON insertions(identifier_id);
CREATE TABLE checkpoints (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""

_V2 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    settings TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE run_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    identifier_id TEXT REFERENCES identifiers(id),
    role TEXT NOT NULL CHECK (role IN ('member', 'control')),
    test TEXT NOT NULL,
    prompt TEXT,
    reply TEXT,
    score REAL,
    p_value REAL,
    details TEXT NOT NULL
);
CREATE INDEX run_records_run ON run_records(run_id);
CREATE INDEX run_records_identifier ON run_records(identifier_id);
"""


# Each owner's current identifier: the one tag-jsonl uses. One row per owner (PRIMARY KEY), so no owner
# can ever have two; get-or-create runs in one BEGIN IMMEDIATE transaction, so of two processes that
# meet a new owner the second finds the first one's identifier. Filled with each owner's newest
# identifier, which is what the lookup returned before.
_V4 = f"""
CREATE TABLE owner_identifiers (
    owner TEXT PRIMARY KEY,
    identifier_id TEXT NOT NULL UNIQUE REFERENCES identifiers(id),
    updated_at TEXT NOT NULL
);
INSERT INTO owner_identifiers (owner, identifier_id, updated_at)
    SELECT i.owner, i.id, i.created_at FROM identifiers AS i
    WHERE i.rowid = (SELECT j.rowid FROM identifiers AS j WHERE j.owner = i.owner
                     ORDER BY j.created_at DESC, j.rowid DESC LIMIT 1);
PRAGMA application_id = {APPLICATION_ID}
"""


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        # executescript would COMMIT our transaction; run the statements one by one instead.
        for stmt in sql.split(";"):
            body = "\n".join(line.split("--")[0] for line in stmt.splitlines()).strip()
            if body:
                conn.execute(body)
    return apply


# Test history and disclosure log (issue: evidence). `tests` has one row per test of an identifier, taken
# BEFORE the test runs (so a crash or Ctrl-C still counts it); `number` fixes the share of alpha the test
# may spend. `disclosures` records which passphrase words (0-based indices) were shown to which endpoint.
_V3 = """
CREATE TABLE tests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier_id TEXT NOT NULL REFERENCES identifiers(id),
    number INTEGER NOT NULL,            -- this is the identifier's number-th test (1-based)
    kind TEXT NOT NULL,                 -- probe, ppl-test, audit, check, or 'run' (from before the history)
    model TEXT NOT NULL,                -- model spec, or the chat window for check
    started_at TEXT NOT NULL,
    finished_at TEXT,
    stored INTEGER NOT NULL,            -- 0: run with --no-store (this row is all that is kept)
    run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    p_value REAL,                       -- the test's own p, NULL if it never finished (counts as 1)
    p_history REAL                      -- min(1, p_value * number * (number + 1))
);
CREATE INDEX tests_identifier ON tests(identifier_id);
CREATE TABLE disclosures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier_id TEXT NOT NULL REFERENCES identifiers(id),
    test_id INTEGER REFERENCES tests(id),
    endpoint TEXT NOT NULL,             -- who saw the words: model spec + base URL (no credentials), or the card
    via TEXT NOT NULL,                  -- probe, ppl or card
    words TEXT NOT NULL,                -- JSON array of the 0-based indices of the words shown
    created_at TEXT NOT NULL
);
CREATE INDEX disclosures_identifier ON disclosures(identifier_id)
"""


def _v3(conn: sqlite3.Connection) -> None:
    """Create the history tables and count every stored run of an identifier as one of its tests."""
    _script(_V3)(conn)
    rows = conn.execute(
        "SELECT DISTINCT r.id, r.kind, r.model, r.created_at, rr.identifier_id FROM runs r "
        "JOIN run_records rr ON rr.run_id = r.id WHERE rr.identifier_id IS NOT NULL ORDER BY r.id").fetchall()
    counts: dict[str, int] = {}
    for run_id, kind, model, created, ident in rows:
        counts[ident] = counts.get(ident, 0) + 1
        spec = json.loads(model).get("spec", "?") if model.startswith("{") else model
        conn.execute("INSERT INTO tests (identifier_id, number, kind, model, started_at, finished_at, stored, run_id) "
                     "VALUES (?,?,?,?,?,?,1,?)", (ident, counts[ident], kind, str(spec), created, created, run_id))


# -- one schema, two dialects ------------------------------------------------------------------------
# The migrations (and the SQL in sqlite.py) are written once, in SQLite's dialect. PostgreSQL
# (postgres.py) runs the same statements through to_postgres(): the few differences are spelled out here
# rather than kept as a second copy of the schema.
_PG_RULES = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),       # SQLite integers are 64-bit
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),  # SQLite REAL is a double
    (re.compile(r"\browid\b"), "ctid"),                   # insertion order of rows never updated
]
# Tables whose INSERTs report the new row's id (sqlite3's cursor.lastrowid; RETURNING id in PostgreSQL).
SERIAL_TABLES = ("insertions", "runs", "run_records", "tests", "disclosures")
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.I)


def to_postgres(sql: str, with_args: bool) -> str | None:
    """A statement of the SQLite dialect as PostgreSQL runs it, or None for one with no PostgreSQL
    counterpart (PRAGMA: the application id and user_version live in schema_version there). `?`
    placeholders become %s (and a literal % is doubled) when the statement is run with arguments."""
    if sql.lstrip().upper().startswith("PRAGMA"):
        return None
    for pattern, repl in _PG_RULES:
        sql = pattern.sub(repl, sql)
    if with_args:
        sql = sql.replace("%", "%%").replace("?", "%s")
    m = _INSERT_INTO.match(sql)
    if m and m.group(1).lower() in SERIAL_TABLES and "RETURNING" not in sql.upper():
        sql += " RETURNING id"
    return sql
# Platform-scale tagging (issue 12): `ledger_secrets` holds secrets a ledger keeps for itself, today the
# selection secret (the key of the keyed hash that picks which records get a ghost, tagging/selection.py),
# created once on first use; its value never leaves the ledger except in a full export. The index makes
# `ledger merge` (ledger/manifest.py) find an already-merged insertion without scanning an identifier's
# insertions.
_V_SCALE = """
CREATE TABLE ledger_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,                -- hex
    created_at TEXT NOT NULL
);
CREATE INDEX insertions_document ON insertions(identifier_id, document, sha256_after)
"""

# Tagging speed (issue 12): every insertion updated two indexes that start with identifier_id; the
# single-column one is redundant (insertions_document's first column answers the same lookups: by
# identifier, counts) and cost ~0.9 us of the ~4.3 us an insertion row takes in SQLite. Rows unchanged.
_V_DROP_INSERTIONS_IDENTIFIER = """
DROP INDEX IF EXISTS insertions_identifier
"""


# Ordered; MIGRATIONS[i] upgrades a ledger from schema version i to i+1. Append, never edit.
MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("identifiers, insertions, checkpoints", _script(_V1)),
    ("runs and run records", _script(_V2)),
    ("test history and disclosure log (earlier runs counted as tests)", _v3),
    ("owner_identifiers (one current identifier per owner, unique); application_id marks the file",
     _script(_V4)),
    ("ledger_secrets (the selection secret) and an index for merging insertion manifests", _script(_V_SCALE)),
    ("drop the index insertions_identifier (insertions_document, which starts with identifier_id, serves its "
     "lookups; one index fewer per inserted row)", _script(_V_DROP_INSERTIONS_IDENTIFIER)),
]
SCHEMA_VERSION = len(MIGRATIONS)

