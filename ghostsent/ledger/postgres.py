"""The PostgreSQL ledger: many writers (processes, machines) on one ledger (docs/scale.md).

`--ledger postgresql://USER@HOST:PORT/DB` or `GHOSTSENT_LEDGER=postgresql://…`. Credentials come only
from the URL or libpq's environment (PGPASSWORD, PGPASSFILE, PGSERVICE …); the password never appears
in a message (`display_url`, `scrub`).

Why a subclass of the SQLite ledger: the queries are written once (sqlite.py, SQLite's dialect) and the
schema once (schema.py's MIGRATIONS); this class only swaps the plumbing underneath them: the
connection (a thin adapter rendering each statement with schema.to_postgres), transactions, migrations
and error messages. So every rule (draw, import, history, checkpoints) is the same on both backends.

Why one advisory lock per write transaction: SQLite's BEGIN IMMEDIATE serialises writers, and the rules
above rely on it (get-or-create an owner's identifier, the next test number, import's all-or-nothing
checks are read-then-write). `pg_advisory_xact_lock` gives PostgreSQL the same guarantee for every
ghostsent writer on the database: each write transaction holds it until COMMIT/ROLLBACK (so a killed
client releases it), while reads never wait. Unique indexes back it up.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, ContextManager, Iterable, Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

from ghostsent.errors import LedgerError
from ghostsent.ledger.records import utcnow
from ghostsent.ledger.schema import MIGRATIONS, SCHEMA_VERSION, to_postgres
from ghostsent.ledger.sqlite import DEFAULT_TIMEOUT, SQLiteLedger

LOCK_KEY = int.from_bytes(b"gsnt", "big")  # the advisory lock every ghostsent write transaction takes


def display_url(url: str) -> str:
    """The URL without its password (user, host, port and database kept), for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}" if user else f":***@{netloc}"))


def scrub(message: str, url: str) -> str:
    """`message` with the URL's password (as written and percent-decoded) replaced by ***."""
    raw = _raw_password(url)
    for secret in sorted({p for p in (urlsplit(url).password, raw, unquote(raw or "")) if p}, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def _raw_password(url: str) -> str | None:
    m = re.match(r"^[^:]+://[^:@/]*:([^@/]*)@", url)
    return m.group(1) if m else None


class _Row(tuple):
    """A row readable by position (tuple unpacking, [0]) and by column name, like sqlite3.Row."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        return tuple.__getitem__(self, self.names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self.names)


def _row_factory(cursor: Any) -> Any:
    names = {d.name: i for i, d in enumerate(cursor.description or [])}

    def make(values: Any) -> _Row:
        row = _Row(values)
        row.names = names
        return row
    return make


class _Cursor:
    """What the SQLite-dialect code reads back from a statement: rows and lastrowid."""

    def __init__(self, cur: Any, returning: bool) -> None:
        self._rows = cur.fetchall() if cur.description is not None else []
        self.lastrowid = self._rows[0][0] if returning and self._rows else None
        self.rowcount = cur.rowcount

    def fetchall(self) -> list[_Row]:
        return self._rows

    def fetchone(self) -> _Row | None:
        return self._rows[0] if self._rows else None


class _Connection:
    """The subset of sqlite3.Connection the ledger code uses, over one psycopg connection."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, args: tuple | list = ()) -> _Cursor:
        pg = to_postgres(sql, with_args=bool(args))
        if pg is None:
            return _Cursor(_Nothing(), False)
        cur = self.raw.cursor(row_factory=_row_factory)
        cur.execute(pg, tuple(args) if args else None)
        return _Cursor(cur, pg.endswith(" RETURNING id"))

    def executemany(self, sql: str, rows: Iterable[tuple]) -> None:
        pg = to_postgres(sql, with_args=True)
        if pg is not None:
            self.raw.cursor().executemany(pg.removesuffix(" RETURNING id"), list(rows))

    def close(self) -> None:
        self.raw.close()


class _Nothing:
    description = None
    rowcount = 0


class PostgresLedger(SQLiteLedger):
    """One ledger in a PostgreSQL database (the tables of schema.py, in the connection's search_path)."""

    def deferred_sync(self) -> ContextManager[None]:
        """A no-op: the server's own settings decide how commits are flushed (no SQLite PRAGMA here)."""
        return contextlib.nullcontext()

    def __init__(self, url: str, _target_version: int | None = None, *, create: bool = True,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            import psycopg
        except ImportError:
            raise LedgerError("a postgresql:// ledger needs psycopg: pip install 'ghostsent[postgres]'") from None
        self._psycopg = psycopg
        self.url = url
        self.path = display_url(url)  # type: ignore[assignment]  # shown in messages; never the password
        self.timeout = timeout
        self.created = False
        self._depth = 0
        self._owner_table = None
        try:
            # a writer waits for the ledger's lock at most `timeout` (like SQLite's busy timeout); options
            # the URL already sets (e.g. -c search_path=… for a ledger in its own schema) are kept
            given = psycopg.conninfo.conninfo_to_dict(url).get("options") or ""
            raw = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)),
                                  options=f"{given} -c lock_timeout={int(timeout * 1000)}".strip())
        except psycopg.Error as e:
            raise LedgerError(f"{self.path}: cannot connect to the ledger database "
                              f"({scrub(_first_line(e), url)})") from None
        self._conn = _Connection(raw)  # type: ignore[assignment]
        try:
            self._open(create, SCHEMA_VERSION if _target_version is None else _target_version)
        except BaseException:
            raw.close()
            raise

    def _open(self, create: bool, target: int) -> None:
        """Refuse a database that is neither empty nor a ghostsent ledger; then migrate."""
        exists = self._q("SELECT to_regclass('schema_version') IS NOT NULL AS t")[0]["t"]
        if not exists:
            if not create:
                raise LedgerError(f"{self.path}: no ledger in this database", hint="ledger_missing")
            foreign = [r["table_name"] for r in self._q(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_name IN ('identifiers', 'insertions', 'runs', 'tests') ORDER BY table_name")]
            if foreign:
                raise LedgerError(f"{self.path}: not a ghostsent ledger (tables {', '.join(foreign)} exist "
                                  f"without its schema_version); left untouched")
        self._migrate(target)

    def _error(self, e: Exception) -> LedgerError:  # type: ignore[override]
        text = scrub(_first_line(e), self.url)
        low = text.lower()
        if "lock timeout" in low or "canceling statement due to lock" in low:
            return LedgerError(f"{self.path}: the ledger is locked by another writer (waited {self.timeout:g} s); "
                               f"try again when it has finished")
        if "read-only" in low or "permission denied" in low:
            return LedgerError(f"{self.path}: the ledger cannot be written ({text})")
        return LedgerError(f"{self.path}: ledger error ({text})")

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN; take the ledger's write lock; … COMMIT. Any exception rolls everything back; nested
        calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN")
            self._conn.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_KEY,))
        except self._psycopg.Error as e:
            with contextlib.suppress(self._psycopg.Error):
                self._conn.execute("ROLLBACK")
            raise self._error(e) from None
        self._depth = 1
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as exc:
            self._depth = 0
            with contextlib.suppress(self._psycopg.Error):
                self._conn.execute("ROLLBACK")
            if isinstance(exc, self._psycopg.Error):
                raise self._error(exc) from None
            raise
        self._depth = 0

    @property
    def schema_version(self) -> int:
        return int(self._q("SELECT coalesce(max(version), 0) AS v FROM schema_version")[0]["v"])

    def _migrate(self, target: int) -> None:
        if self._q("SELECT to_regclass('schema_version') IS NOT NULL AS t")[0]["t"] and self.schema_version == target:
            return
        with self.transaction():  # the write lock: of two processes opening a new ledger, one migrates
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                               "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = self.schema_version
            self.created = current == 0
            if current > SCHEMA_VERSION:
                raise LedgerError(f"{self.path}: ledger schema version {current} is newer than this ghostsent "
                                  f"understands ({SCHEMA_VERSION}); upgrade ghostsent")
            for version in range(current, target):
                description, apply = MIGRATIONS[version]
                apply(self._conn)  # type: ignore[arg-type]  # the adapter renders each statement
                self._conn.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (version + 1, description, utcnow()))

    def _q(self, sql: str, args: tuple = ()) -> list:  # type: ignore[override]
        try:
            return self._conn.execute(sql, args).fetchall()
        except self._psycopg.Error as e:
            raise self._error(e) from None

    def _has_owner_table(self) -> bool:
        if self._owner_table is None:
            self._owner_table = bool(self._q("SELECT to_regclass('owner_identifiers') IS NOT NULL AS t")[0]["t"])
        return self._owner_table


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
