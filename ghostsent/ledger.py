"""The ledger: a local SQLite file that remembers every identifier, where it was inserted, and every test run.

Why SQLite with WAL and one transaction per write: an identifier is only useful if it is never lost and
never issued twice, so a crash or Ctrl-C mid-write must leave the file as it was (BEGIN IMMEDIATE …
COMMIT), and a reader (an audit) must not block a writer (WAL). The schema is versioned from day one
(`PRAGMA user_version` plus a `schema_version` table) and upgraded by the ordered MIGRATIONS list, so an
old ledger opens in a newer ghostsent without losing anything.

Commitments (see docs/ledger.md): each identifier has a random salt. Its commitment is
sha256(salt || canonical JSON of id, owner, ghost text, word-list sha256, created_at), and the root is
sha256 over the sorted per-identifier commitments. Publishing the root proves later, by revealing one
identifier and its salt, that it existed then, without disclosing the others.

No secrets (API keys, tokens) are ever stored here.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from ghostsent.errors import InputError, LedgerError
from ghostsent.names import normalise_owner
from ghostsent.passphrase import DEFAULT_WORDS, Ghost, draw_words, resolve_template
from ghostsent.wordlists import WordList, builtin_names, load_wordlist, normalise

COMMIT_SCHEME = "ghostsent-commit-v1"
EXPORT_FORMAT = "ghostsent-ledger"
EXPORT_VERSION = 2  # 2: test history and disclosure lines
ID_RE = re.compile(r"^gs-[0-9a-f]{10}$")
SALT_RE = re.compile(r"^[0-9a-f]{32}$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
DRAWN_RE = re.compile(r"^(?:secrets|rng|seed:-?\d+)$")
# ghostsent.insert.POSITIONS, plus "recovered": a record rebuilt for a file a killed run had already
# written (see tagging._FileTagger._recovery). A test checks the list against POSITIONS.
_STRATEGIES = ("latter-half", "start", "end", "random", "recovered")
MAX_DRAWS = 100_000  # redraws before giving up on finding an unused passphrase
# PRAGMA application_id of a ghostsent ledger ("gsnt"): how a file is recognised as one without guessing
# from table names. Ledgers from before migration 3 are recognised by their tables (see _check_file).
APPLICATION_ID = int.from_bytes(b"gsnt", "big")
_V1_TABLES = {"schema_version", "identifiers", "insertions", "checkpoints"}
DEFAULT_TIMEOUT = 30.0  # seconds a write waits for another process's transaction


def utcnow() -> str:
    """ISO-8601 UTC with a Z, to the microsecond so the creation order is kept."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def passphrase_key(words: "tuple[str, ...] | list[str]") -> str:
    """The form passphrases are compared in for uniqueness (each word NFKC+casefolded)."""
    return " ".join(normalise(w) for w in words)


@dataclass(frozen=True)
class Identifier:
    id: str
    owner: str
    ghost: Ghost
    wordlist_name: str
    wordlist_sha256: str
    created_at: str
    drawn: str
    # The commitment salt (hex). Not part of equality: two records of the same draw are the same identifier.
    salt: str = field(default="", repr=False, compare=False)

    @property
    def text(self) -> str:
        return self.ghost.text

    @property
    def words(self) -> tuple[str, ...]:
        return self.ghost.words

    @property
    def n_words(self) -> int:
        return len(self.ghost.words)

    @property
    def passphrase(self) -> str:
        return self.ghost.passphrase

    def to_dict(self, reveal: bool = False) -> dict[str, Any]:
        d = {
            "id": self.id, "owner": self.owner, "text": self.text, "words": list(self.words),
            "template": self.ghost.template, "wordlist_name": self.wordlist_name,
            "wordlist_sha256": self.wordlist_sha256, "n_words": self.n_words,
            "created_at": self.created_at, "drawn": self.drawn,
        }
        if reveal:
            d["salt"] = self.salt
        return d


@dataclass(frozen=True)
class Insertion:
    id: int
    identifier_id: str
    document: str
    sha256_before: str
    sha256_after: str
    offset: int
    strategy: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- commitments ----------------------------------------------------------------------------------------

def canonical_json(ident: Identifier) -> str:
    """The exact bytes (UTF-8) a commitment covers: sorted keys, no spaces, non-ASCII kept."""
    obj = {"created_at": ident.created_at, "ghost": ident.text, "id": ident.id, "owner": ident.owner,
           "wordlist_sha256": ident.wordlist_sha256}
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def identifier_commitment(ident: Identifier) -> str:
    """sha256(salt bytes || canonical JSON bytes), hex."""
    if not SALT_RE.match(ident.salt):
        raise LedgerError(f"identifier {ident.id}: no valid commitment salt")
    return hashlib.sha256(bytes.fromhex(ident.salt) + canonical_json(ident).encode("utf-8")).hexdigest()


def commitment_root(commitments: "list[str]") -> str:
    """sha256 over the per-identifier commitments (32 raw bytes each) in sorted hex order."""
    return hashlib.sha256(b"".join(bytes.fromhex(c) for c in sorted(commitments))).hexdigest()


def reveal(ident: Identifier) -> dict[str, Any]:
    """What a third party needs to recompute one identifier's commitment (and check it is in a root)."""
    return {"scheme": COMMIT_SCHEME, "id": ident.id, "salt": ident.salt,
            "canonical_json": canonical_json(ident), "commitment": identifier_commitment(ident)}


# --- schema and migrations ------------------------------------------------------------------------------

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


# Ordered; MIGRATIONS[i] upgrades a ledger from schema version i to i+1. Append, never edit.
MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("identifiers, insertions, checkpoints", _script(_V1)),
    ("runs and run records", _script(_V2)),
    ("test history and disclosure log (earlier runs counted as tests)", _v3),
    ("owner_identifiers (one current identifier per owner, unique); application_id marks the file",
     _script(_V4)),
]
SCHEMA_VERSION = len(MIGRATIONS)


class Ledger:
    """One ledger file. Use as a context manager, or call close().

    `create=False` refuses a path where no ledger exists yet (read-only commands: a typo in --ledger
    must not silently start an empty ledger); `created` says whether this open made the file, which is
    then private (0600, and SQLite gives its -wal/-shm files the same mode). A file that is not a
    ghostsent ledger is refused before anything is written to it. SQLite failures (locked, read-only,
    disk full) become LedgerError with a one-line reason."""

    def __init__(self, path: "str | Path", _target_version: int | None = None, *, create: bool = True,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.created = False
        self._depth = 0
        self._owner_table: bool | None = None
        self._prepare_file(create)
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise LedgerError(f"{self.path}: cannot open ledger: {e}") from None
        try:
            self._check_file(create)
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._enable_wal()
            self._migrate(SCHEMA_VERSION if _target_version is None else _target_version)
        except sqlite3.Error as e:
            self._conn.close()
            raise self._error(e) from None
        except BaseException:
            self._conn.close()
            raise

    def _prepare_file(self, create: bool) -> None:
        """Refuse a missing ledger (create=False) or create an empty private file for SQLite to fill."""
        if self.path.is_dir():
            raise LedgerError(f"{self.path}: is a folder, not a ledger file")
        if self.path.exists():
            return
        if not create:
            raise LedgerError(f"{self.path}: no ledger here (check --ledger or $GHOSTSENT_LEDGER; "
                              f"`ghostsent new` starts a ledger)")
        if not self.path.parent.exists():
            raise LedgerError(f"{self.path}: folder {self.path.parent} does not exist")
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            self.created = True
        except FileExistsError:
            pass  # another process created it a moment ago: open that one
        except OSError as e:
            raise LedgerError(f"{self.path}: cannot create the ledger ({e.strerror})") from None

    def _check_file(self, create: bool) -> None:
        """Is this a ghostsent ledger? Decided from what is there, before any write: the application_id
        set by migration 3, else the tables of an older ghostsent ledger, else an empty database (a new
        ledger; with create=False refused too)."""
        try:
            app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"{self.path}: not a ghostsent ledger ({e}); left untouched") from None
        if app_id == APPLICATION_ID or (app_id == 0 and _V1_TABLES <= tables):
            return
        if app_id == 0 and not tables:
            if create or self.created:
                return
            raise LedgerError(f"{self.path}: empty file, not a ledger (`ghostsent new` starts a ledger)")
        shown = ", ".join(sorted(t for t in tables if not t.startswith("sqlite_"))[:5]) or "none"
        raise LedgerError(f"{self.path}: not a ghostsent ledger (a database with application id {app_id} and "
                          f"tables: {shown}); left untouched")

    def _enable_wal(self) -> None:
        """Switch to WAL once. SQLite answers a journal-mode change that races another connection with
        "database is locked" at once, without its busy timeout (two processes opening a new ledger),
        so the switch is retried here until the timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        if str(mode).lower() != "wal":
            raise LedgerError(f"{self.path}: cannot switch the ledger to WAL mode (got {mode})")

    def _error(self, e: sqlite3.Error) -> LedgerError:
        """One line saying what went wrong with the ledger file, for an sqlite3 error."""
        msg = str(e)
        low = msg.lower()
        if "locked" in low or "busy" in low:
            return LedgerError(f"{self.path}: the ledger is locked by another process (waited {self.timeout:g} s); "
                               f"try again when it has finished")
        if "readonly" in low or "read-only" in low or "unable to open" in low:
            return LedgerError(f"{self.path}: the ledger cannot be written ({msg}); check the permissions of the "
                               f"file and its folder")
        if "full" in low:
            return LedgerError(f"{self.path}: no space left for the ledger ({msg}); the failed write recorded nothing")
        if "not a database" in low or "malformed" in low:
            return LedgerError(f"{self.path}: not a ghostsent ledger ({msg}); left untouched")
        return LedgerError(f"{self.path}: ledger error ({msg})")

    # -- plumbing --------------------------------------------------------------------------------------

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT; any exception rolls everything back. Nested calls join the outer one.
        BEGIN IMMEDIATE takes the write lock at once, so two processes' read-then-write sequences
        (get-or-create) are serialised, not interleaved."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise self._error(e) from None
        self._depth = 1
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as exc:
            self._depth = 0
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from None
            raise
        self._depth = 0

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, target: int) -> None:
        has_table = self._q("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        if has_table and self.schema_version == target:
            return  # the common case: no write lock taken just to open the ledger
        with self.transaction():
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                "description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = self.schema_version
            if current > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path}: ledger schema version {current} is newer than this ghostsent "
                    f"understands ({SCHEMA_VERSION}); upgrade ghostsent"
                )
            for version in range(current, target):
                description, apply = MIGRATIONS[version]
                apply(self._conn)
                self._conn.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                                   (version + 1, description, utcnow()))
                self._conn.execute(f"PRAGMA user_version = {version + 1}")

    def _q(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        try:
            cur = self._conn.execute(sql, args)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()
        except sqlite3.Error as e:
            raise self._error(e) from None

    # -- identifiers -----------------------------------------------------------------------------------

    def new_identifier(
        self,
        owner: str,
        wordlist: "WordList | str | Path",
        n_words: int = DEFAULT_WORDS,
        template: str | None = None,
        seed: int | None = None,
        rng: random.Random | None = None,
    ) -> Identifier:
        """Draw a fresh identifier and store it; redraw (from the same generator) on a passphrase collision."""
        if seed is not None and rng is not None:
            raise InputError("pass either seed or rng, not both")
        if isinstance(wordlist, WordList):
            wl, wl_name = wordlist, wordlist.name
        else:
            wl = load_wordlist(wordlist)
            # a shipped list by name; a user's file by absolute path, so audits can reload it later
            wl_name = str(wordlist) if str(wordlist) in builtin_names() else str(Path(wordlist).resolve())
        if seed is not None:
            rng, drawn = random.Random(seed), f"seed:{seed}"
        else:
            drawn = "secrets" if rng is None else "rng"
        tmpl = resolve_template(template)
        owner = normalise_owner(owner)
        with self.transaction():
            taken = self._q("SELECT count(*) FROM identifiers WHERE n_words = ?", (n_words,))[0][0]
            if n_words >= 1 and taken >= wl.size ** n_words:
                raise LedgerError(f"all {wl.size}^{n_words} passphrases of {n_words} word(s) are taken; use more words")
            for _ in range(MAX_DRAWS):
                words = draw_words(wl, n_words, rng)
                if not self._q("SELECT 1 FROM identifiers WHERE passphrase_norm = ?", (passphrase_key(words),)):
                    break
            else:
                raise LedgerError(f"no unused passphrase found in {MAX_DRAWS} draws; use more words")
            ident_id = self._fresh_id()
            ident = Identifier(ident_id, owner, Ghost(words, tmpl), wl_name, wl.sha256, utcnow(), drawn,
                               secrets.token_hex(16))
            self.add_identifier(ident)
            self._set_current(owner, ident.id)  # the newest identifier is the owner's current one
        return ident

    def identifier_for_owner_or_new(self, owner: str, wordlist: "WordList | str | Path",
                                    n_words: int = DEFAULT_WORDS, template: str | None = None,
                                    seed: int | None = None) -> tuple[Identifier, bool]:
        """The owner's current identifier, or a new one (then True): looked up and created in ONE
        transaction, so concurrent runs that meet the same new owner give it exactly one identifier."""
        owner = normalise_owner(owner)
        with self.transaction():
            got = self.identifier_for_owner(owner)
            if got is not None:
                return got, False
            return self.new_identifier(owner, wordlist, n_words=n_words, template=template, seed=seed), True

    def _has_owner_table(self) -> bool:
        if self._owner_table is None:
            self._owner_table = bool(self._q("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                             "name = 'owner_identifiers'"))
        return self._owner_table

    def _set_current(self, owner: str, ident_id: str) -> None:
        """Make `ident_id` the owner's current identifier (no-op on a ledger opened below migration 3)."""
        if self._has_owner_table():
            with self.transaction():
                self._conn.execute(
                    "INSERT INTO owner_identifiers (owner, identifier_id, updated_at) VALUES (?,?,?) "
                    "ON CONFLICT(owner) DO UPDATE SET identifier_id = excluded.identifier_id, "
                    "updated_at = excluded.updated_at", (owner, ident_id, utcnow()))

    def _fresh_id(self) -> str:
        while True:
            candidate = "gs-" + secrets.token_hex(5)
            if not self._q("SELECT 1 FROM identifiers WHERE id = ?", (candidate,)):
                return candidate

    def add_identifier(self, ident: Identifier) -> None:
        """Store an identifier (a fresh salt is made if it has none). LedgerError on an id or passphrase conflict."""
        if not ID_RE.match(ident.id):
            raise LedgerError(f"identifier id {ident.id!r} is not of the form gs-<10 hex digits>")
        salt = ident.salt or secrets.token_hex(16)
        if not SALT_RE.match(salt):
            raise LedgerError(f"identifier {ident.id}: salt must be 32 lowercase hex digits")
        key = passphrase_key(ident.words)
        with self.transaction():
            if self._q("SELECT 1 FROM identifiers WHERE id = ?", (ident.id,)):
                raise LedgerError(f"identifier {ident.id} already exists in {self.path}")
            other = self._q("SELECT id FROM identifiers WHERE passphrase_norm = ?", (key,))
            if other:
                raise LedgerError(f"identifier {ident.id}: its passphrase is already used by {other[0]['id']}")
            self._conn.execute(
                "INSERT INTO identifiers (id, owner, template, words, passphrase_norm, wordlist_name, "
                "wordlist_sha256, n_words, created_at, drawn, salt) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (ident.id, ident.owner, ident.ghost.template, json.dumps(list(ident.words), ensure_ascii=False),
                 key, ident.wordlist_name, ident.wordlist_sha256, ident.n_words, ident.created_at, ident.drawn,
                 salt),
            )

    @staticmethod
    def _ident(row: sqlite3.Row) -> Identifier:
        return Identifier(row["id"], row["owner"], Ghost(tuple(json.loads(row["words"])), row["template"]),
                          row["wordlist_name"], row["wordlist_sha256"], row["created_at"], row["drawn"], row["salt"])

    def get(self, id_or_unique_prefix: str) -> Identifier:
        """An identifier by id or by a prefix that matches exactly one id."""
        key = id_or_unique_prefix.strip()
        rows = self._q("SELECT * FROM identifiers WHERE id = ?", (key,))
        if not rows and key:
            like = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._q("SELECT * FROM identifiers WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 6", (like,))
        if not rows:
            raise LedgerError(f"unknown identifier {id_or_unique_prefix!r} in {self.path}")
        if len(rows) > 1:
            shown = ", ".join(r["id"] for r in rows[:5]) + (", …" if len(rows) > 5 else "")
            raise LedgerError(f"identifier prefix {id_or_unique_prefix!r} is ambiguous: {shown}")
        return self._ident(rows[0])

    def identifiers(self, owner: str | None = None) -> list[Identifier]:
        """All identifiers (of one owner, named as when it was stored), oldest first."""
        if owner is None:
            rows = self._q("SELECT * FROM identifiers ORDER BY created_at, rowid")
        else:
            rows = self._q("SELECT * FROM identifiers WHERE owner = ? ORDER BY created_at, rowid",
                           (normalise_owner(owner),))
        return [self._ident(r) for r in rows]

    def identifier_for_owner(self, owner: str) -> Identifier | None:
        """The owner's current identifier (the newest drawn or imported), or None."""
        owner = normalise_owner(owner)
        if self._has_owner_table():
            rows = self._q("SELECT i.* FROM owner_identifiers AS o JOIN identifiers AS i ON i.id = o.identifier_id "
                           "WHERE o.owner = ?", (owner,))
        else:
            rows = self._q("SELECT * FROM identifiers WHERE owner = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                           (owner,))
        return self._ident(rows[0]) if rows else None

    # -- insertions ------------------------------------------------------------------------------------

    def add_insertion(self, identifier_id: str, document: str, sha256_before: str, sha256_after: str,
                      offset: int, strategy: str) -> int:
        """Record that a ghost sentence went into a document; returns the insertion id."""
        with self.transaction():
            if not self._q("SELECT 1 FROM identifiers WHERE id = ?", (identifier_id,)):
                raise LedgerError(f"unknown identifier {identifier_id!r} in {self.path}")
            cur = self._conn.execute(
                'INSERT INTO insertions (identifier_id, document, sha256_before, sha256_after, "offset", '
                "strategy, created_at) VALUES (?,?,?,?,?,?,?)",
                (identifier_id, str(document), sha256_before, sha256_after, int(offset), strategy, utcnow()),
            )
            return int(cur.lastrowid)

    def add_insertions(self, rows: Iterable[tuple[str, str, str, str, int, str]]) -> int:
        """Record many insertions at once (tag-jsonl's checkpoint chunks); returns how many.

        Each row is add_insertion's arguments in order. One executemany in one transaction (joining an
        outer one) instead of two statements per row; every identifier is still checked first, so an
        unknown one raises LedgerError and records nothing. The rows share one created_at: they are
        committed together, and the autoincrement id keeps their order."""
        now = utcnow()
        full = [(r[0], str(r[1]), r[2], r[3], int(r[4]), r[5], now) for r in rows]
        if not full:
            return 0
        with self.transaction():
            for ident in {r[0] for r in full}:
                if not self._q("SELECT 1 FROM identifiers WHERE id = ?", (ident,)):
                    raise LedgerError(f"unknown identifier {ident!r} in {self.path}")
            self._conn.executemany(
                'INSERT INTO insertions (identifier_id, document, sha256_before, sha256_after, "offset", '
                "strategy, created_at) VALUES (?,?,?,?,?,?,?)",
                full,
            )
        return len(full)

    def insertions(self, identifier_id: str | None = None) -> list[Insertion]:
        if identifier_id is None:
            rows = self._q('SELECT * FROM insertions ORDER BY id')
        else:
            rows = self._q('SELECT * FROM insertions WHERE identifier_id = ? ORDER BY id', (identifier_id,))
        return [Insertion(r["id"], r["identifier_id"], r["document"], r["sha256_before"], r["sha256_after"],
                          r["offset"], r["strategy"], r["created_at"]) for r in rows]

    def has_insertion(self, identifier_id: str, document: str, sha256_after: str) -> bool:
        """Whether the ledger records this identifier going into `document` with these resulting bytes."""
        return bool(self._q("SELECT 1 FROM insertions WHERE identifier_id = ? AND document = ? AND sha256_after = ?",
                            (identifier_id, document, sha256_after)))

    def count_insertions(self, identifier_id: str) -> int:
        return int(self._q("SELECT count(*) FROM insertions WHERE identifier_id = ?", (identifier_id,))[0][0])

    # -- checkpoints -----------------------------------------------------------------------------------

    def get_checkpoint(self, key: str) -> dict | None:
        rows = self._q("SELECT state FROM checkpoints WHERE key = ?", (key,))
        return json.loads(rows[0]["state"]) if rows else None

    def set_checkpoint(self, key: str, state: dict) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO checkpoints (key, state, updated_at) VALUES (?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                (key, json.dumps(state, ensure_ascii=False, sort_keys=True), utcnow()),
            )

    def delete_checkpoint(self, key: str) -> None:
        with self.transaction():
            self._conn.execute("DELETE FROM checkpoints WHERE key = ?", (key,))

    # -- runs ------------------------------------------------------------------------------------------

    def add_run(self, kind: str, model: dict, settings: dict, summary: dict, status: str = "complete",
                created_at: str | None = None) -> int:
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO runs (kind, created_at, status, model, settings, summary) VALUES (?,?,?,?,?,?)",
                (kind, created_at or utcnow(), status, _dumps(model), _dumps(settings), _dumps(summary)),
            )
            return int(cur.lastrowid)

    def add_run_records(self, run_id: int, records: list[dict]) -> None:
        with self.transaction():
            if not self._q("SELECT 1 FROM runs WHERE id = ?", (run_id,)):
                raise LedgerError(f"unknown run {run_id} in {self.path}")
            for i, rec in enumerate(records):
                ident = rec.get("identifier_id")
                if rec.get("role") not in ("member", "control"):
                    raise LedgerError(f"run {run_id} record {i}: role must be 'member' or 'control'")
                if ident is not None and not self._q("SELECT 1 FROM identifiers WHERE id = ?", (ident,)):
                    raise LedgerError(f"run {run_id} record {i}: unknown identifier {ident!r}")
                self._conn.execute(
                    "INSERT INTO run_records (run_id, identifier_id, role, test, prompt, reply, score, p_value, "
                    "details) VALUES (?,?,?,?,?,?,?,?,?)",
                    (run_id, ident, rec["role"], str(rec.get("test", "")), rec.get("prompt"), rec.get("reply"),
                     _float(rec.get("score")), _float(rec.get("p_value")), _dumps(rec.get("details") or {})),
                )

    @staticmethod
    def _run(row: sqlite3.Row) -> dict[str, Any]:
        return {"id": row["id"], "kind": row["kind"], "created_at": row["created_at"], "status": row["status"],
                "model": json.loads(row["model"]), "settings": json.loads(row["settings"]),
                "summary": json.loads(row["summary"])}

    def runs(self, identifier_id: str | None = None) -> list[dict]:
        """Runs (without records), oldest first; with identifier_id only runs that tested it."""
        if identifier_id is None:
            rows = self._q("SELECT * FROM runs ORDER BY id")
        else:
            rows = self._q("SELECT * FROM runs WHERE id IN (SELECT run_id FROM run_records WHERE identifier_id = ?) "
                           "ORDER BY id", (identifier_id,))
        return [self._run(r) for r in rows]

    def _records(self, run_id: int) -> list[dict]:
        return [{"identifier_id": r["identifier_id"], "role": r["role"], "test": r["test"], "prompt": r["prompt"],
                 "reply": r["reply"], "score": r["score"], "p_value": r["p_value"],
                 "details": json.loads(r["details"])}
                for r in self._q("SELECT * FROM run_records WHERE run_id = ? ORDER BY id", (run_id,))]

    def run(self, run_id: int) -> dict:
        rows = self._q("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise LedgerError(f"unknown run {run_id} in {self.path}")
        return {**self._run(rows[0]), "records": self._records(run_id)}

    # -- test history and disclosures (see ghostsent/history.py) --------------------------------------

    def reserve_tests(self, entries: list[tuple[str, str, str]], stored: bool,
                      disclosures: list[tuple[str, str, str, list[int]]] = ()) -> list[tuple[int, int]]:
        """Take the next test number of each (identifier, kind, model) and log what the test will show,
        in one transaction, before the test runs. Returns (test id, number) per entry; each disclosure
        (identifier, endpoint, via, word indices) is tied to its identifier's test."""
        now = utcnow()
        out: list[tuple[int, int]] = []
        with self.transaction():
            test_of: dict[str, int] = {}
            for ident, kind, model in entries:
                if not self._q("SELECT 1 FROM identifiers WHERE id = ?", (ident,)):
                    raise LedgerError(f"unknown identifier {ident!r} in {self.path}")
                number = 1 + self._q("SELECT count(*) FROM tests WHERE identifier_id = ?", (ident,))[0][0]
                cur = self._conn.execute(
                    "INSERT INTO tests (identifier_id, number, kind, model, started_at, stored) VALUES (?,?,?,?,?,?)",
                    (ident, number, kind, model, now, int(stored)))
                test_of[ident] = int(cur.lastrowid)
                out.append((int(cur.lastrowid), number))
            for ident, endpoint, via, words in disclosures:
                self._add_disclosure(ident, test_of.get(ident), endpoint, via, words, now)
        return out

    def _add_disclosure(self, ident: str, test_id: int | None, endpoint: str, via: str, words: list[int],
                        created_at: str) -> None:
        self._conn.execute("INSERT INTO disclosures (identifier_id, test_id, endpoint, via, words, created_at) "
                           "VALUES (?,?,?,?,?,?)", (ident, test_id, endpoint, via, json.dumps(words), created_at))

    def add_disclosure(self, ident: str, endpoint: str, via: str, words: list[int]) -> None:
        """Log words shown outside a test (the card)."""
        with self.transaction():
            if not self._q("SELECT 1 FROM identifiers WHERE id = ?", (ident,)):
                raise LedgerError(f"unknown identifier {ident!r} in {self.path}")
            self._add_disclosure(ident, None, endpoint, via, words, utcnow())

    def finish_test(self, test_id: int, p_value: float | None, p_history: float | None, run_id: int | None) -> None:
        with self.transaction():
            self._conn.execute("UPDATE tests SET finished_at = ?, p_value = ?, p_history = ?, run_id = ? WHERE id = ?",
                               (utcnow(), _float(p_value), _float(p_history), run_id, test_id))

    def tests(self, identifier_id: str | None = None) -> list[dict]:
        """Tests (oldest first), of one identifier or all."""
        where, args = ("WHERE identifier_id = ?", (identifier_id,)) if identifier_id else ("", ())
        return [dict(r) for r in self._q(f"SELECT * FROM tests {where} ORDER BY id", args)]

    def disclosures(self, identifier_id: str | None = None) -> list[dict]:
        where, args = ("WHERE identifier_id = ?", (identifier_id,)) if identifier_id else ("", ())
        return [{**dict(r), "words": json.loads(r["words"])}
                for r in self._q(f"SELECT * FROM disclosures {where} ORDER BY id", args)]

    # -- export / import -------------------------------------------------------------------------------

    def export_jsonl(self, fp: IO[str]) -> int:
        """Write the ledger as JSON lines (header, identifiers with salts, insertions, runs, test history,
        disclosures); returns the count of lines after the header."""
        n = 0
        fp.write(_line({"type": "header", "format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                        "schema_version": self.schema_version}))
        for ident in self.identifiers():
            fp.write(_line({"type": "identifier", **ident.to_dict(reveal=True)}))
            n += 1
        for ins in self.insertions():
            d = ins.to_dict()
            d.pop("id")
            fp.write(_line({"type": "insertion", **d}))
            n += 1
        for run in self.runs():
            d = self.run(run["id"])
            d.pop("id")
            fp.write(_line({"type": "run", **d}))
            n += 1
        for t in self.tests():  # the history travels with the identifiers: a copy cannot reset it
            fp.write(_line({"type": "test", **{k: t[k] for k in _TEST_FIELDS}}))
            n += 1
        for d in self.disclosures():
            fp.write(_line({"type": "disclosure", **{k: d[k] for k in _DISCLOSURE_FIELDS}}))
            n += 1
        return n

    def import_jsonl(self, fp: IO[str], source: str, warn: Callable[[str], None] | None = None) -> dict:
        """Import an export, all or nothing. Malformed line or invalid value → InputError, conflicting id
        or passphrase → LedgerError, both naming `source:line`; then nothing is imported. Identical
        duplicates are skipped. `warn` gets one line per identifier that was not drawn with `secrets`
        (predictable) or whose words could not be checked against its word list."""
        counts = {k: {"added": 0, "skipped": 0} for k in ("identifiers", "insertions", "runs")}
        check = _ImportChecks(warn or (lambda m: None))
        with self.transaction():
            for lineno, raw in enumerate(fp, start=1):
                if not raw.strip():
                    continue
                where = f"{source}:{lineno}"
                try:
                    obj = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise InputError(f"{where}: not valid JSON ({e.msg})") from None
                if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
                    raise InputError(f"{where}: expected a JSON object with a \"type\" field")
                kind = obj["type"]
                if kind == "header":
                    if obj.get("format") != EXPORT_FORMAT:
                        raise InputError(f"{where}: not a ghostsent ledger export (format {obj.get('format')!r})")
                    if not isinstance(obj.get("version"), int) or obj["version"] > EXPORT_VERSION:
                        raise InputError(f"{where}: export version {obj.get('version')!r} is not supported")
                elif kind == "identifier":
                    added = self._import_identifier(obj, where, check)
                    counts["identifiers"]["added" if added else "skipped"] += 1
                elif kind == "insertion":
                    added = self._import_insertion(obj, where)
                    counts["insertions"]["added" if added else "skipped"] += 1
                elif kind == "run":
                    added = self._import_run(obj, where)
                    counts["runs"]["added" if added else "skipped"] += 1
                elif kind in ("test", "disclosure"):
                    added = self._import_history(kind, obj, where)
                    c = counts.setdefault(kind + "s", {"added": 0, "skipped": 0})
                    c["added" if added else "skipped"] += 1
                else:
                    raise InputError(f"{where}: unknown type {kind!r} (identifier, insertion, run, test, disclosure, "
                                     "header)")
        return counts

    def _import_identifier(self, obj: dict, where: str, check: "_ImportChecks") -> bool:
        f = _Fields(obj, where)
        ident_id = f.string("id")
        if not ID_RE.match(ident_id):
            raise InputError(f"{where}: field 'id' {ident_id!r} is not of the form gs-<10 hex digits>")
        words = f.get("words", list)
        if not words or not all(isinstance(w, str) and w and not any(c.isspace() for c in w) for w in words):
            raise InputError(f"{where}: field 'words' must be a non-empty list of words without whitespace")
        template = f.string("template")
        try:
            template = resolve_template(template)
        except InputError as e:
            raise InputError(f"{where}: field 'template': {e}") from None
        sha = f.string("wordlist_sha256")
        if not SHA_RE.match(sha):
            raise InputError(f"{where}: field 'wordlist_sha256' must be 64 lowercase hex digits")
        salt = f.string("salt")
        if not SALT_RE.match(salt):
            raise InputError(f"{where}: field 'salt' must be 32 lowercase hex digits")
        if "n_words" in obj and obj["n_words"] != len(words):
            raise InputError(f"{where}: field 'n_words' is {obj['n_words']!r} but there are {len(words)} words")
        drawn = f.string("drawn")
        if not DRAWN_RE.match(drawn):
            raise InputError(f"{where}: field 'drawn' {drawn!r} must be 'secrets', 'rng' or 'seed:N'")
        ident = Identifier(ident_id, normalise_owner(f.string("owner"), where), Ghost(tuple(words), template),
                           f.nonempty("wordlist_name"), sha, f.time("created_at"), drawn, salt)
        if "text" in obj and obj["text"] != ident.text:
            raise InputError(f"{where}: field 'text' does not match the words and template")
        check.words(ident, where)
        rows = self._q("SELECT * FROM identifiers WHERE id = ?", (ident.id,))
        if rows:
            existing = self._ident(rows[0])
            if existing == ident and existing.salt == ident.salt:
                return False
            diff = [k for k, v in ident.to_dict(reveal=True).items() if existing.to_dict(reveal=True)[k] != v]
            raise LedgerError(f"{where}: identifier {ident.id} conflicts with the one in the ledger "
                              f"(differs in {', '.join(diff)}); nothing imported")
        other = self._q("SELECT id FROM identifiers WHERE passphrase_norm = ?", (passphrase_key(ident.words),))
        if other:
            raise LedgerError(f"{where}: identifier {ident.id} has the same passphrase as {other[0]['id']} "
                              "in the ledger; nothing imported")
        self.add_identifier(ident)
        current = self.identifier_for_owner(ident.owner)
        if current is None or parse_time(current.created_at) <= parse_time(ident.created_at):
            self._set_current(ident.owner, ident.id)
        check.drawn(ident, where)
        return True

    def _import_insertion(self, obj: dict, where: str) -> bool:
        f = _Fields(obj, where)
        vals = (f.string("identifier_id"), f.string("document"), f.string("sha256_before"), f.string("sha256_after"),
                f.get("offset", int), f.string("strategy"), f.string("created_at"))
        if not self._q("SELECT 1 FROM identifiers WHERE id = ?", (vals[0],)):
            raise LedgerError(f"{where}: insertion refers to unknown identifier {vals[0]!r}; nothing imported")
        f.nonempty("document")
        for name in ("sha256_before", "sha256_after"):
            if not SHA_RE.match(obj[name]):
                raise InputError(f"{where}: field {name!r} must be 64 lowercase hex digits")
        if vals[4] < 0:
            raise InputError(f"{where}: field 'offset' must be >= 0, got {vals[4]}")
        if vals[5] not in _STRATEGIES:
            raise InputError(f"{where}: field 'strategy' {vals[5]!r} is not one of {', '.join(_STRATEGIES)}")
        f.time("created_at")
        if self._q('SELECT 1 FROM insertions WHERE identifier_id=? AND document=? AND sha256_before=? AND '
                   'sha256_after=? AND "offset"=? AND strategy=? AND created_at=?', vals):
            return False
        self._conn.execute('INSERT INTO insertions (identifier_id, document, sha256_before, sha256_after, "offset", '
                           "strategy, created_at) VALUES (?,?,?,?,?,?,?)", vals)
        return True

    def _import_run(self, obj: dict, where: str) -> bool:
        f = _Fields(obj, where)
        kind, created, status = f.nonempty("kind"), f.time("created_at"), f.nonempty("status")
        model, settings, summary = f.get("model", dict), f.get("settings", dict), f.get("summary", dict)
        records = f.get("records", list) if "records" in obj else []
        if self._q("SELECT id FROM runs WHERE kind=? AND created_at=? AND status=? AND model=? AND settings=? "
                   "AND summary=?", (kind, created, status, _dumps(model), _dumps(settings), _dumps(summary))):
            return False
        run_id = self.add_run(kind, model, settings, summary, status=status, created_at=created)
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise InputError(f"{where}: records[{i}] is not an object")
        try:
            self.add_run_records(run_id, records)
        except (LedgerError, KeyError) as e:
            raise LedgerError(f"{where}: {e}; nothing imported") from None
        return True

    def _import_history(self, kind: str, obj: dict, where: str) -> bool:
        """A test or disclosure line; identical ones already present are skipped."""
        f = _Fields(obj, where)
        ident = f.string("identifier_id")
        if not self._q("SELECT 1 FROM identifiers WHERE id = ?", (ident,)):
            raise LedgerError(f"{where}: {kind} refers to unknown identifier {ident!r}; nothing imported")
        if kind == "disclosure":
            words = f.get("words", list)
            if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 0 for w in words):
                raise InputError(f"{where}: field 'words' must be a list of word indices")
            vals = (ident, f.string("endpoint"), f.string("via"), json.dumps(words), f.string("created_at"))
            if self._q("SELECT 1 FROM disclosures WHERE identifier_id=? AND endpoint=? AND via=? AND words=? "
                       "AND created_at=?", vals):
                return False
            self._add_disclosure(vals[0], None, vals[1], vals[2], words, vals[4])
            return True
        row = (ident, f.get("number", int), f.string("kind"), f.string("model"), f.string("started_at"))
        p = obj.get("p_value")
        if p is not None and not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1):
            raise InputError(f"{where}: field 'p_value' must be a number between 0 and 1, or null")
        if self._q("SELECT 1 FROM tests WHERE identifier_id=? AND number=? AND kind=? AND model=? AND started_at=?",
                   row):
            return False
        self._conn.execute("INSERT INTO tests (identifier_id, number, kind, model, started_at, finished_at, stored, "
                           "p_value, p_history) VALUES (?,?,?,?,?,?,?,?,?)",
                           (*row, obj.get("finished_at"), int(bool(obj.get("stored", True))), _float(p),
                            _float(obj.get("p_history"))))
        return True

    # -- commitments -----------------------------------------------------------------------------------

    def commitment(self) -> dict:
        """Root commitment over all identifiers plus each identifier's commitment (sorted by id)."""
        # Only ids and commitments: the published list must reveal nothing about the identifiers
        # (owner and creation time are inside each commitment, hidden by its salt).
        items = [{"id": i.id, "commitment": identifier_commitment(i)}
                 for i in sorted(self.identifiers(), key=lambda i: i.id)]
        return {"scheme": COMMIT_SCHEME, "root": commitment_root([x["commitment"] for x in items]),
                "count": len(items), "identifiers": items}


# --- helpers --------------------------------------------------------------------------------------------

_TEST_FIELDS = ("identifier_id", "number", "kind", "model", "started_at", "finished_at", "stored", "p_value",
                "p_history")
_DISCLOSURE_FIELDS = ("identifier_id", "endpoint", "via", "words", "created_at")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)


def _line(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n"


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})$")
MAX_CLOCK_SKEW = timedelta(days=1)  # an imported time this far past our clock is refused as "future"


def parse_time(value: str) -> datetime | None:
    """An ISO-8601 time with a zone ("...Z" or "+01:00"), as an aware datetime; None if it is not one.
    Times are compared parsed, never as strings, so no odd spelling can sort as "newest"."""
    if not isinstance(value, str) or not _TIME_RE.match(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class _ImportChecks:
    """Checks on imported identifiers that need word lists: each list is loaded once per import."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self._lists: dict[str, WordList | None] = {}
        self._sets: dict[str, frozenset[str]] = {}

    def _wordlist(self, name: str) -> WordList | None:
        if name not in self._lists:
            wl = None
            # Only a shipped list or a plain file of sane size: an import file must not make us read
            # /dev/zero or a FIFO.
            if name in builtin_names() or (os.path.isfile(name) and os.path.getsize(name) < 16 << 20):
                try:
                    wl = load_wordlist(name)
                except InputError:
                    wl = None
            self._lists[name] = wl
        return self._lists[name]

    def words(self, ident: Identifier, where: str) -> None:
        """Every word must be in the list the identifier claims; a list we cannot check is a warning."""
        wl = self._wordlist(ident.wordlist_name)
        if wl is None:
            self.warn(f"{where}: word list {ident.wordlist_name!r} is not available here; the words of "
                      f"{ident.id} were not checked")
            return
        if wl.sha256 != ident.wordlist_sha256:
            self.warn(f"{where}: word list {ident.wordlist_name!r} here differs from the one {ident.id} was drawn "
                      f"from (SHA-256); its words were not checked")
            return
        known = self._sets.setdefault(wl.sha256, frozenset(wl.words))
        for w in ident.words:
            if w not in known:
                raise InputError(f"{where}: word {w!r} of {ident.id} is not in the word list {ident.wordlist_name!r}")

    def drawn(self, ident: Identifier, where: str) -> None:
        if ident.drawn != "secrets":
            self.warn(f"{where}: identifier {ident.id} was drawn with {ident.drawn}, not secrets: predictable to "
                      f"anyone who knows the seed or generator; fine for tests and studies, never for a real "
                      f"watermark")


class _Fields:
    """Typed field access for one import line, with errors naming the line and the field."""

    def __init__(self, obj: dict, where: str) -> None:
        self.obj, self.where = obj, where

    def get(self, name: str, typ: type) -> Any:
        if name not in self.obj:
            raise InputError(f"{self.where}: missing field {name!r}")
        value = self.obj[name]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise InputError(f"{self.where}: field {name!r} must be {typ.__name__}, got {type(value).__name__}")
        return value

    def string(self, name: str) -> str:
        return self.get(name, str)

    def nonempty(self, name: str) -> str:
        value = self.string(name)
        if not value.strip():
            raise InputError(f"{self.where}: field {name!r} is empty")
        return value

    def time(self, name: str) -> str:
        """An ISO-8601 time with a zone, not in the future; returned exactly as written (the commitment
        covers the string)."""
        value = self.string(name)
        when = parse_time(value)
        if when is None:
            raise InputError(f"{self.where}: field {name!r} {value!r} is not an ISO-8601 time with a zone "
                             f"(like 2024-01-31T12:00:00.000000Z)")
        if when > datetime.now(timezone.utc) + MAX_CLOCK_SKEW:
            raise InputError(f"{self.where}: field {name!r} {value!r} is in the future")
        return value
