"""The SQLite ledger: the default backend, one local file (docs/ledger.md).

Why SQLite with WAL and one transaction per write: an identifier is only useful if it is never lost and
never issued twice, so a crash or Ctrl-C mid-write must leave the file as it was (BEGIN IMMEDIATE …
COMMIT), and a reader (an audit) must not block a writer (WAL). Storage only: the rules that use it are
in draw.py, transfer.py, commitments.py and history.py beside this file. No secrets (API keys, tokens)
are ever stored here.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ghostsent.errors import LedgerError
from ghostsent.ledger.records import (ID_RE, ROLES, SALT_RE, DisclosureRecord, Identifier, Insertion, RunRecord,
                                      TestRecord, passphrase_key, utcnow)
from ghostsent.ledger.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, V1_TABLES
from ghostsent.ledger.store import InsertionRow, LedgerStore
from ghostsent.names import normalise_owner
from ghostsent.passphrase import Ghost

DEFAULT_TIMEOUT = 30.0  # seconds a write waits for another process's transaction


class SQLiteLedger(LedgerStore):
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
            raise LedgerError(f"{self.path}: no ledger here", hint="ledger_missing")
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
        if app_id == APPLICATION_ID or (app_id == 0 and V1_TABLES <= tables):
            return
        if app_id == 0 and not tables:
            if create or self.created:
                return
            raise LedgerError(f"{self.path}: empty file, not a ledger", hint="ledger_missing")
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

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Commits inside skip their WAL fsync (synchronous = NORMAL: ~0.2 ms instead of ~4 ms for a new
        owner's identifier, once per owner in tag-jsonl). They are still atomic, visible to every other
        connection at once, and safe against a killed process; only an OS crash or power loss could undo
        them, until the caller's next normal commit (synchronous = FULL), whose fsync of the WAL covers
        every frame written before its own (a WAL checkpoint in between fsyncs what it copies); the
        connection's own setting (FULL by default) is restored on the way out. tag-jsonl
        only uses it before a checkpoint commit, and nothing it wrote depends on them before that commit."""
        if self._depth:  # inside a transaction: its own commit decides
            yield
            return
        before = int(self._conn.execute("PRAGMA synchronous").fetchone()[0])
        self._conn.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            self._conn.execute(f"PRAGMA synchronous = {before}")

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

    def _has_owner_table(self) -> bool:
        if self._owner_table is None:
            self._owner_table = bool(self._q("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                             "name = 'owner_identifiers'"))
        return self._owner_table

    def set_current(self, owner: str, ident_id: str) -> None:
        """Make `ident_id` the owner's current identifier (no-op on a ledger opened below migration 3)."""
        if self._has_owner_table():
            with self.transaction():
                self._conn.execute(
                    "INSERT INTO owner_identifiers (owner, identifier_id, updated_at) VALUES (?,?,?) "
                    "ON CONFLICT(owner) DO UPDATE SET identifier_id = excluded.identifier_id, "
                    "updated_at = excluded.updated_at", (owner, ident_id, utcnow()))

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

    def find(self, identifier_id: str) -> Identifier | None:
        rows = self._q("SELECT * FROM identifiers WHERE id = ?", (identifier_id,))
        return self._ident(rows[0]) if rows else None

    def passphrase_owner(self, key: str) -> str | None:
        rows = self._q("SELECT id FROM identifiers WHERE passphrase_norm = ?", (key,))
        return rows[0]["id"] if rows else None

    def count_identifiers(self, n_words: int) -> int:
        return int(self._q("SELECT count(*) FROM identifiers WHERE n_words = ?", (n_words,))[0][0])

    def _require_identifier(self, identifier_id: str | None, where: str = "") -> None:
        if identifier_id is not None and not self._q("SELECT 1 FROM identifiers WHERE id = ?", (identifier_id,)):
            raise LedgerError(f"{where}unknown identifier {identifier_id!r} in {self.path}")

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
                      offset: int, strategy: str, created_at: str | None = None) -> int:
        with self.transaction():
            self._require_identifier(identifier_id)
            cur = self._conn.execute(
                'INSERT INTO insertions (identifier_id, document, sha256_before, sha256_after, "offset", '
                "strategy, created_at) VALUES (?,?,?,?,?,?,?)",
                (identifier_id, str(document), sha256_before, sha256_after, int(offset), strategy,
                 created_at or utcnow()),
            )
            return int(cur.lastrowid)

    def add_insertions(self, rows: Iterable[InsertionRow]) -> int:
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
                self._require_identifier(ident)
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

    def insertion_exists(self, row: InsertionRow, created_at: str) -> bool:
        return bool(self._q('SELECT 1 FROM insertions WHERE identifier_id=? AND document=? AND sha256_before=? AND '
                            'sha256_after=? AND "offset"=? AND strategy=? AND created_at=?', (*row, created_at)))

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

    # -- the ledger's own secrets (issue 12: the selection secret) -------------------------------------

    def secret(self, name: str, make: "Callable[[], bytes]") -> bytes:
        """The secret called `name`, created with make() the first time (one transaction: of two
        processes that race, the second reads the first one's)."""
        with self.transaction():
            rows = self._q("SELECT value FROM ledger_secrets WHERE name = ?", (name,))
            if rows:
                return bytes.fromhex(rows[0]["value"])
            value = make()
            self._conn.execute("INSERT INTO ledger_secrets (name, value, created_at) VALUES (?,?,?)",
                               (name, value.hex(), utcnow()))
            return value

    def secrets(self) -> "dict[str, tuple[bytes, str]]":
        rows = self._q("SELECT name, value, created_at FROM ledger_secrets ORDER BY name")
        return {r["name"]: (bytes.fromhex(r["value"]), r["created_at"]) for r in rows}

    # -- runs ------------------------------------------------------------------------------------------

    def add_run(self, kind: str, model: dict, settings: dict, summary: dict, status: str = "complete",
                created_at: str | None = None) -> int:
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO runs (kind, created_at, status, model, settings, summary) VALUES (?,?,?,?,?,?)",
                (kind, created_at or utcnow(), status, _dumps(model), _dumps(settings), _dumps(summary)),
            )
            return int(cur.lastrowid)

    def add_run_records(self, run_id: int, records: "Sequence[RunRecord | dict[str, Any]]") -> None:
        with self.transaction():
            if not self._q("SELECT 1 FROM runs WHERE id = ?", (run_id,)):
                raise LedgerError(f"unknown run {run_id} in {self.path}")
            for i, rec in enumerate(records):
                r = rec.to_dict() if isinstance(rec, RunRecord) else rec
                ident = r.get("identifier_id")
                if r.get("role") not in ROLES:
                    raise LedgerError(f"run {run_id} record {i}: role must be 'member' or 'control'")
                self._require_identifier(ident, f"run {run_id} record {i}: ")
                self._conn.execute(
                    "INSERT INTO run_records (run_id, identifier_id, role, test, prompt, reply, score, p_value, "
                    "details) VALUES (?,?,?,?,?,?,?,?,?)",
                    (run_id, ident, r["role"], str(r.get("test", "")), r.get("prompt"), r.get("reply"),
                     _float(r.get("score")), _float(r.get("p_value")), _dumps(r.get("details") or {})),
                )

    def find_run(self, kind: str, created_at: str, status: str, model: dict, settings: dict,
                 summary: dict) -> int | None:
        rows = self._q("SELECT id FROM runs WHERE kind=? AND created_at=? AND status=? AND model=? AND settings=? "
                       "AND summary=?", (kind, created_at, status, _dumps(model), _dumps(settings), _dumps(summary)))
        return int(rows[0]["id"]) if rows else None

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

    # -- test history and disclosures (see history.py) ----------------------------------------------

    def reserve_tests(self, entries: Sequence[tuple[str, str, str]], stored: bool,
                      disclosures: Sequence[tuple[str, str, str, list[int]]] = ()) -> list[tuple[int, int]]:
        """Each disclosure (identifier, endpoint, via, word indices) is tied to its identifier's test."""
        now = utcnow()
        out: list[tuple[int, int]] = []
        with self.transaction():
            test_of: dict[str, int] = {}
            for ident, kind, model in entries:
                self._require_identifier(ident)
                number = 1 + self._q("SELECT count(*) FROM tests WHERE identifier_id = ?", (ident,))[0][0]
                cur = self._conn.execute(
                    "INSERT INTO tests (identifier_id, number, kind, model, started_at, stored) VALUES (?,?,?,?,?,?)",
                    (ident, number, kind, model, now, int(stored)))
                test_of[ident] = int(cur.lastrowid)
                out.append((int(cur.lastrowid), number))
            for ident, endpoint, via, words in disclosures:
                self.add_disclosure(ident, endpoint, via, words, test_of.get(ident), now)
        return out

    def add_disclosure(self, identifier_id: str, endpoint: str, via: str, words: Sequence[int],
                       test_id: int | None = None, created_at: str | None = None) -> None:
        with self.transaction():
            self._require_identifier(identifier_id)
            self._conn.execute("INSERT INTO disclosures (identifier_id, test_id, endpoint, via, words, created_at) "
                               "VALUES (?,?,?,?,?,?)", (identifier_id, test_id, endpoint, via,
                                                        json.dumps(list(words)), created_at or utcnow()))

    def finish_test(self, test_id: int, p_value: float | None, p_history: float | None, run_id: int | None) -> None:
        with self.transaction():
            self._conn.execute("UPDATE tests SET finished_at = ?, p_value = ?, p_history = ?, run_id = ? WHERE id = ?",
                               (utcnow(), _float(p_value), _float(p_history), run_id, test_id))

    def add_test(self, t: TestRecord) -> None:
        with self.transaction():
            self._require_identifier(t.identifier_id)
            self._conn.execute("INSERT INTO tests (identifier_id, number, kind, model, started_at, finished_at, stored, "
                               "p_value, p_history, run_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
                               (t.identifier_id, t.number, t.kind, t.model, t.started_at, t.finished_at, int(t.stored),
                                _float(t.p_value), _float(t.p_history), t.run_id))

    def tests(self, identifier_id: str | None = None) -> list[TestRecord]:
        """Tests (oldest first), of one identifier or all."""
        where, args = ("WHERE identifier_id = ?", (identifier_id,)) if identifier_id else ("", ())
        return [TestRecord(r["id"], r["identifier_id"], r["number"], r["kind"], r["model"], r["started_at"],
                           r["finished_at"], bool(r["stored"]), r["run_id"], r["p_value"], r["p_history"])
                for r in self._q(f"SELECT * FROM tests {where} ORDER BY id", args)]

    def disclosures(self, identifier_id: str | None = None) -> list[DisclosureRecord]:
        where, args = ("WHERE identifier_id = ?", (identifier_id,)) if identifier_id else ("", ())
        return [DisclosureRecord(r["id"], r["identifier_id"], r["test_id"], r["endpoint"], r["via"],
                                 list(json.loads(r["words"])), r["created_at"])
                for r in self._q(f"SELECT * FROM disclosures {where} ORDER BY id", args)]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)


def _float(x: Any) -> float | None:
    return None if x is None else float(x)
