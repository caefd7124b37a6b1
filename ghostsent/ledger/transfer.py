"""Export a ledger as JSON lines and import such a file, all or nothing, checking every field.

An export holds every passphrase and salt and the ledger's selection secret (so that a ledger moved to
another machine keeps choosing the same records for the same jobs), and the test history travels with the
identifiers: a copy cannot reset how often an identifier was tested. Import validates each line (InputError naming
`source:line` and the field), refuses conflicting ids or passphrases (LedgerError), skips identical
duplicates, and commits nothing unless every line is good.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any, Callable

from ghostsent.errors import InputError, LedgerError
from ghostsent.ledger.records import (DRAWN_RE, ID_RE, SALT_RE, SHA_RE, STRATEGIES, Identifier, TestRecord,
                                      parse_time, passphrase_key)
from ghostsent.names import normalise_owner
from ghostsent.passphrase import NATURAL, Ghost, resolve_template
from ghostsent.wordlists import WordList, find_wordlist

EXPORT_FORMAT = "ghostsent-ledger"
EXPORT_VERSION = 3  # 2: test history and disclosure lines; 3: the ledger's secrets
_SECRET_RE = re.compile(r"^(?:[0-9a-f]{2}){16,64}$")  # 16..64 bytes, hex
MAX_CLOCK_SKEW = timedelta(days=1)  # an imported time this far past our clock is refused as "future"
_TEST_FIELDS = ("identifier_id", "number", "kind", "model", "started_at", "finished_at", "stored", "p_value",
                "p_history")
_DISCLOSURE_FIELDS = ("identifier_id", "endpoint", "via", "words", "created_at")
_KINDS = ("identifier", "insertion", "run", "test", "disclosure", "secret", "header")


def _line(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n"


def export_jsonl(ledger: Any, fp: IO[str]) -> int:
    """Write the ledger as JSON lines (header, identifiers with salts, insertions, runs, test history,
    disclosures); returns the count of lines after the header."""
    lines = [{"type": "identifier", **i.to_dict(reveal=True)} for i in ledger.identifiers()]
    lines += [{"type": "insertion", **{k: v for k, v in ins.to_dict().items() if k != "id"}}
              for ins in ledger.insertions()]
    lines += [{"type": "run", **{k: v for k, v in ledger.run(r["id"]).items() if k != "id"}} for r in ledger.runs()]
    lines += [{"type": "test", **{k: getattr(t, k) for k in _TEST_FIELDS}} for t in ledger.tests()]
    lines += [{"type": "disclosure", **{k: v for k, v in d.to_dict().items() if k in _DISCLOSURE_FIELDS}}
              for d in ledger.disclosures()]
    lines += [{"type": "secret", "name": name, "value": value.hex(), "created_at": created}
              for name, (value, created) in ledger.secrets().items()]
    fp.write(_line({"type": "header", "format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                    "schema_version": ledger.schema_version}))
    for obj in lines:
        fp.write(_line(obj))
    return len(lines)


@dataclass
class ImportCounts:
    """Lines added and identical ones skipped, per kind."""

    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k: {"added": 0, "skipped": 0} for k in ("identifiers", "insertions", "runs")})

    def add(self, kind: str, added: bool) -> None:
        c = self.counts.setdefault(kind + "s", {"added": 0, "skipped": 0})
        c["added" if added else "skipped"] += 1

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {k: dict(v) for k, v in self.counts.items()}


def import_jsonl(ledger: Any, fp: IO[str], source: str,
                 warn: Callable[[str], None] | None = None) -> dict[str, dict[str, int]]:
    """Import an export into `ledger`, all or nothing (see the module docstring). `warn` gets one line
    per identifier not drawn with `secrets` (predictable) or whose words could not be checked."""
    counts = ImportCounts()
    importer = _Importer(ledger, _ImportChecks(warn or (lambda m: None)))
    with ledger.transaction():
        for lineno, raw in enumerate(fp, start=1):
            if raw.strip():
                kind, added = importer.line(raw, f"{source}:{lineno}")
                if kind != "header":
                    counts.add(kind, added)
    return counts.to_dict()


class _Importer:
    """One import: each line is checked, then stored unless an identical record is there."""

    def __init__(self, ledger: Any, check: "_ImportChecks") -> None:
        self.ledger, self.check = ledger, check

    def line(self, raw: str, where: str) -> tuple[str, bool]:
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise InputError(f"{where}: expected a JSON object with a \"type\" field")
        kind = obj["type"]
        if kind not in _KINDS:
            raise InputError(f"{where}: unknown type {kind!r} ({', '.join(_KINDS)})")
        return kind, getattr(self, kind)(obj, where)

    def header(self, obj: dict, where: str) -> bool:
        if obj.get("format") != EXPORT_FORMAT:
            raise InputError(f"{where}: not a ghostsent ledger export (format {obj.get('format')!r})")
        if not isinstance(obj.get("version"), int) or obj["version"] > EXPORT_VERSION:
            raise InputError(f"{where}: export version {obj.get('version')!r} is not supported")
        return False

    def identifier(self, obj: dict, where: str) -> bool:
        ident = _parse_identifier(obj, where)
        self.check.words(ident, where)
        existing = self.ledger.find(ident.id)
        if existing is not None:
            if existing == ident and existing.salt == ident.salt:
                return False
            diff = [k for k, v in ident.to_dict(reveal=True).items() if existing.to_dict(reveal=True)[k] != v]
            raise LedgerError(f"{where}: identifier {ident.id} conflicts with the one in the ledger "
                              f"(differs in {', '.join(diff)}); nothing imported")
        other = self.ledger.passphrase_owner(passphrase_key(ident.words))
        if other is not None:
            raise LedgerError(f"{where}: identifier {ident.id} has the same passphrase as {other} "
                              "in the ledger; nothing imported")
        self.ledger.add_identifier(ident)
        current = self.ledger.identifier_for_owner(ident.owner)
        if current is None or parse_time(current.created_at) <= parse_time(ident.created_at):
            self.ledger.set_current(ident.owner, ident.id)
        self.check.drawn(ident, where)
        return True

    def insertion(self, obj: dict, where: str) -> bool:
        f = _Fields(obj, where)
        row = (f.string("identifier_id"), f.string("document"), f.string("sha256_before"), f.string("sha256_after"),
               f.get("offset", int), f.string("strategy"))
        created = f.string("created_at")
        self._known(row[0], where, "insertion")
        f.nonempty("document")
        for name in ("sha256_before", "sha256_after"):
            if not SHA_RE.match(obj[name]):
                raise InputError(f"{where}: field {name!r} must be 64 lowercase hex digits")
        if row[4] < 0:
            raise InputError(f"{where}: field 'offset' must be >= 0, got {row[4]}")
        if row[5] not in STRATEGIES:
            raise InputError(f"{where}: field 'strategy' {row[5]!r} is not one of {', '.join(STRATEGIES)}")
        f.time("created_at")
        if self.ledger.insertion_exists(row, created):
            return False
        self.ledger.add_insertion(*row, created_at=created)
        return True

    def run(self, obj: dict, where: str) -> bool:
        f = _Fields(obj, where)
        kind, created, status = f.nonempty("kind"), f.time("created_at"), f.nonempty("status")
        model, settings, summary = f.get("model", dict), f.get("settings", dict), f.get("summary", dict)
        records = f.get("records", list) if "records" in obj else []
        if self.ledger.find_run(kind, created, status, model, settings, summary) is not None:
            return False
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise InputError(f"{where}: records[{i}] is not an object")
        run_id = self.ledger.add_run(kind, model, settings, summary, status=status, created_at=created)
        try:
            self.ledger.add_run_records(run_id, records)
        except (LedgerError, KeyError) as e:
            raise LedgerError(f"{where}: {e}; nothing imported") from None
        return True

    def test(self, obj: dict, where: str) -> bool:
        f = _Fields(obj, where)
        ident = f.string("identifier_id")
        self._known(ident, where, "test")
        p = obj.get("p_value")
        if p is not None and not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1):
            raise InputError(f"{where}: field 'p_value' must be a number between 0 and 1, or null")
        t = TestRecord(0, ident, f.get("number", int), f.string("kind"), f.string("model"), f.string("started_at"),
                       obj.get("finished_at"), bool(obj.get("stored", True)), None, _float(p),
                       _float(obj.get("p_history")))
        same = (t.number, t.kind, t.model, t.started_at)
        if any((x.number, x.kind, x.model, x.started_at) == same for x in self.ledger.tests(ident)):
            return False
        self.ledger.add_test(t)
        return True

    def disclosure(self, obj: dict, where: str) -> bool:
        f = _Fields(obj, where)
        ident = f.string("identifier_id")
        self._known(ident, where, "disclosure")
        words = f.get("words", list)
        if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 0 for w in words):
            raise InputError(f"{where}: field 'words' must be a list of word indices")
        vals = (f.string("endpoint"), f.string("via"), list(words), f.string("created_at"))
        if any((d.endpoint, d.via, d.words, d.created_at) == vals for d in self.ledger.disclosures(ident)):
            return False
        self.ledger.add_disclosure(ident, vals[0], vals[1], words, None, vals[3])
        return True

    def secret(self, obj: dict, where: str) -> bool:
        """The exporting ledger's secret: stored when this ledger has none of that name. A ledger that
        has its own keeps it (its jobs were selected with it), and the user is told that re-running the
        exporting ledger's jobs here would choose other records."""
        f = _Fields(obj, where)
        name, value = f.nonempty("name"), f.string("value")
        f.time("created_at")
        if not _SECRET_RE.match(value):
            raise InputError(f"{where}: field 'value' must be 16 to 64 bytes in lowercase hex")
        made: list[bool] = []
        kept = self.ledger.secret(name, lambda: made.append(True) or bytes.fromhex(value))
        if not made and kept != bytes.fromhex(value):
            self.check.warn(f"{where}: this ledger keeps its own {name} secret; jobs recorded by the exporting "
                            "ledger would select other records if re-run against this one")
        return bool(made)

    def _known(self, ident: str, where: str, kind: str) -> None:
        if self.ledger.find(ident) is None:
            raise LedgerError(f"{where}: {kind} refers to unknown identifier {ident!r}; nothing imported")


def _parse_identifier(obj: dict, where: str) -> Identifier:
    f = _Fields(obj, where)
    ident_id = f.string("id")
    if not ID_RE.match(ident_id):
        raise InputError(f"{where}: field 'id' {ident_id!r} is not of the form gs-<10 hex digits>")
    words = f.get("words", list)
    if not words or not all(isinstance(w, str) and w and not any(c.isspace() for c in w) for w in words):
        raise InputError(f"{where}: field 'words' must be a non-empty list of words without whitespace")
    try:
        if f.string("template") == NATURAL:  # a kind drawn per identifier, never a stored template
            raise InputError("'natural' names a kind of template, not the identifier's drawn template")
        template = resolve_template(f.string("template"))
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
    return ident


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


class _ImportChecks:
    """Checks on imported identifiers that need word lists: each list is loaded once per import."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self._sets: dict[str, frozenset[str]] = {}

    def _wordlist(self, ident: Identifier) -> WordList | None:
        # Found by its SHA-256 among the shipped (and legacy) lists, else by name: only a shipped list or a
        # plain file of sane size, so an import file cannot make us read /dev/zero or a FIFO.
        name = ident.wordlist_name
        readable = os.path.isfile(name) and os.path.getsize(name) < 16 << 20
        try:
            return find_wordlist(ident.wordlist_sha256, name if readable else None)
        except InputError:
            return None

    def words(self, ident: Identifier, where: str) -> None:
        """Every word must be in the list the identifier claims; a list we cannot check is a warning."""
        wl = self._wordlist(ident)
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
