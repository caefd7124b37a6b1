"""The ledger on real SQLite files and a real PostgreSQL server: schema, transactions, collisions,
import/export, commitments. Tests taking `led` or `ledger_at` run on both backends (tests/conftest.py)."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import sqlite3

import pytest

from ghostsent.errors import InputError, LedgerError
from ghostsent.ledger import SCHEMA_VERSION, Identifier, Ledger
from ghostsent.ledger.commitments import (canonical_json, commitment_root, identifier_commitment, ledger_commitment,
                                          reveal)
from ghostsent.ledger.transfer import export_jsonl, import_jsonl
from ghostsent.passphrase import Ghost, draw_words
from ghostsent.wordlists import load_wordlist, parse_wordlist

pytestmark = pytest.mark.core  # runs on the light install (no extras)

EN = load_wordlist("en")
# A minimal legal custom list: 1024 words, so 1-word passphrases collide quickly.
TINY = parse_wordlist("\n".join(EN.words[:1024]), "tiny.txt")


@pytest.fixture
def led(ledger_at):
    with ledger_at("l") as ledger:
        yield ledger


def _sha(x: str) -> str:
    return hashlib.sha256(x.encode()).hexdigest()


def _populate(ledger: Ledger) -> list[Identifier]:
    idents = [ledger.new_identifier(o, EN, n_words=6, template="post") for o in ("ann", "bob", "cy")]
    ledger.add_insertion(idents[0].id, "docs/a.md", _sha("a"), _sha("a2"), 17, "latter-half")
    ledger.add_insertion(idents[1].id, "docs/b.md", _sha("b"), _sha("b2"), 0, "start")
    run = ledger.add_run("probe", {"spec": "default"}, {"k": [2, 3]}, {"verdict": "NOT DETECTED"})
    ledger.add_run_records(run, [
        {"identifier_id": idents[0].id, "role": "member", "test": "probe", "prompt": "p", "reply": "r",
         "score": 0.0, "p_value": 1.0, "details": {"k": 2}},
        {"identifier_id": None, "role": "control", "test": "probe", "prompt": "p2", "reply": "r2",
         "score": 1.0, "p_value": 0.5, "details": {}},
    ])
    return idents


def _snapshot(ledger: Ledger) -> tuple:
    return (ledger.identifiers(), [dataclasses.replace(i, id=0) for i in ledger.insertions()],
            [ledger.run(r["id"]) | {"id": 0} for r in ledger.runs()], ledger_commitment(ledger).to_dict())


# --- schema ------------------------------------------------------------------------------------------

def test_wal_foreign_keys_and_schema_version(tmp_path):
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
        assert ledger._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    versions = [r[0] for r in raw.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    raw.close()


def test_insertions_have_one_identifier_index_that_every_lookup_uses(tmp_path):
    """Issue 12 (speed): the single-column index on insertions.identifier_id is dropped (each inserted row
    updated two indexes); lookups by identifier still use an index (insertions_document's first column),
    never a scan of the table."""
    path = tmp_path / "l.db"
    with Ledger(path):
        pass
    raw = sqlite3.connect(path)
    names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='insertions'")}
    assert "insertions_identifier" not in names and "insertions_document" in names
    for sql in ("SELECT * FROM insertions WHERE identifier_id = ? ORDER BY id",
                "SELECT count(*) FROM insertions WHERE identifier_id = ?",
                "SELECT 1 FROM insertions WHERE identifier_id = ? AND document = ? AND sha256_after = ?"):
        plan = " ".join(str(r[-1]) for r in raw.execute("EXPLAIN QUERY PLAN " + sql, ("a", "b", "c")[:sql.count("?")]))
        assert "insertions_document" in plan, plan
    raw.close()


def test_migration_from_version_1_keeps_data(tmp_path):
    path = tmp_path / "old.db"
    with Ledger(path, _target_version=1) as old:
        assert old.schema_version == 1
        ident = old.new_identifier("ann", EN, n_words=4)
        tables = {r[0] for r in old._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "runs" not in tables
    with Ledger(path) as new:
        assert new.schema_version == SCHEMA_VERSION
        assert new.get(ident.id) == ident
        assert new.get(ident.id).salt == ident.salt
        run = new.add_run("probe", {}, {}, {})  # the table added by migration 2 works
        new.add_run_records(run, [{"identifier_id": ident.id, "role": "member", "test": "probe"}])
        assert new.runs(ident.id)[0]["id"] == run


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "l.db"
    Ledger(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(LedgerError, match="schema version 99 is newer"):
        Ledger(path)


def test_not_a_ledger(tmp_path):
    bad = tmp_path / "x.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="x.db"):
        Ledger(bad)
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger(tmp_path / "missing" / "l.db")


# --- transactions ------------------------------------------------------------------------------------

def test_crash_mid_transaction_leaves_nothing(ledger_at):
    with ledger_at("l") as ledger:
        keep = ledger.new_identifier("ann", EN)
        with pytest.raises(RuntimeError, match="boom"):
            with ledger.transaction():
                ident = ledger.new_identifier("bob", EN)  # nested transaction joins the outer one
                ledger.add_insertion(ident.id, "d.md", _sha("x"), _sha("y"), 3, "end")
                ledger.set_checkpoint("job", {"done": 5})
                raise RuntimeError("boom")
        assert ledger.identifiers() == [keep]
        assert ledger.insertions() == [] and ledger.get_checkpoint("job") is None
    with ledger_at("l") as again:  # and on disk, from a fresh connection
        assert again.identifiers() == [keep]


def test_reader_not_blocked_by_writer(ledger_at):
    with ledger_at("l") as writer, ledger_at("l") as reader:
        first = writer.new_identifier("ann", EN)
        with writer.transaction():
            writer.new_identifier("bob", EN)
            assert reader.identifiers() == [first]  # WAL: reads see the last commit, without waiting
        assert len(reader.identifiers()) == 2


# --- identifiers -------------------------------------------------------------------------------------

def test_new_identifier_fields(led):
    ident = led.new_identifier("ann", "en", n_words=12, template="post")
    assert ident.id.startswith("gs-") and len(ident.id) == 13
    assert ident.n_words == 12 and all(w in EN.words for w in ident.words)
    assert ident.text == f"The ghost sentence of this post is {' '.join(ident.words)}."
    assert ident.wordlist_name == "en" and ident.wordlist_sha256 == EN.sha256
    assert ident.drawn == "secrets" and ident.created_at.endswith("Z")
    assert led.get(ident.id) == ident
    assert led.new_identifier("ann", EN, seed=5).drawn == "seed:5"
    assert led.new_identifier("ann", EN, rng=random.Random(1)).drawn == "rng"
    assert led.identifier_for_owner("ann").drawn == "rng"  # the newest
    assert led.identifier_for_owner("nobody") is None
    assert [i.owner for i in led.identifiers("ann")] == ["ann"] * 3


def test_user_wordlist_path_is_stored_resolved(led, tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(EN.words[:1024]) + "\n", encoding="utf-8")
    ident = led.new_identifier("ann", str(path), n_words=3)
    assert ident.wordlist_name == str(path.resolve())
    assert load_wordlist(ident.wordlist_name).sha256 == ident.wordlist_sha256


def test_collision_redraws_from_the_same_generator(led):
    first = led.new_identifier("ann", TINY, n_words=1, seed=7)
    second = led.new_identifier("bob", TINY, n_words=1, seed=7)  # same seed: first draw collides
    rng = random.Random(7)
    draws = [draw_words(TINY, 1, rng) for _ in range(20)]
    assert first.words == draws[0]
    assert second.words == next(d for d in draws if d != draws[0])
    assert second.drawn == "seed:7"


def test_exhausted_passphrase_space(led):
    with led.transaction():  # one transaction: 1024 commits would be slow
        for i in range(TINY.size):
            led.new_identifier(f"o{i}", TINY, n_words=1)
    assert len({i.words for i in led.identifiers()}) == TINY.size  # every draw unique
    with pytest.raises(LedgerError, match=r"all 1024\^1 passphrases"):
        led.new_identifier("late", TINY, n_words=1)


def test_add_identifier_conflicts(led):
    ident = led.new_identifier("ann", EN, n_words=3)
    with pytest.raises(LedgerError, match=f"{ident.id} already exists"):
        led.add_identifier(dataclasses.replace(ident, owner="eve"))
    same_words = dataclasses.replace(ident, id="gs-0000000000",
                                     ghost=Ghost(tuple(w.upper() for w in ident.words), ident.ghost.template))
    with pytest.raises(LedgerError, match=f"already used by {ident.id}"):
        led.add_identifier(same_words)
    with pytest.raises(LedgerError, match="gs-<10 hex digits>"):
        led.add_identifier(dataclasses.replace(ident, id="bad"))


def test_get_by_prefix(led):
    base = led.new_identifier("ann", EN, n_words=3)
    for suffix, words in (("1", ("a1", "b")), ("2", ("a2", "b"))):
        led.add_identifier(dataclasses.replace(base, id="gs-aaaaaaaaa" + suffix, ghost=Ghost(words), salt=""))
    assert led.get("gs-aaaaaaaaa1").words == ("a1", "b")
    led.add_identifier(dataclasses.replace(base, id="gs-bbbbbbbbbb", ghost=Ghost(("c", "d")), salt=""))
    assert led.get("gs-bbbbb").words == ("c", "d")
    assert led.get(base.id) == base
    with pytest.raises(LedgerError, match="ambiguous: gs-aaaaaaaaa1, gs-aaaaaaaaa2"):
        led.get("gs-aaa")
    with pytest.raises(LedgerError, match="unknown identifier 'gs-zz'"):
        led.get("gs-zz")
    with pytest.raises(LedgerError, match="unknown identifier '%'"):
        led.get("%")  # LIKE wildcards are escaped


# --- insertions, checkpoints, runs -------------------------------------------------------------------

def test_insertions(led):
    ident = led.new_identifier("ann", EN)
    n = led.add_insertion(ident.id, "a.md", _sha("a"), _sha("b"), 12, "latter-half")
    got = led.insertions(ident.id)
    assert [i.id for i in got] == [n] and got[0].offset == 12 and got[0].document == "a.md"
    assert led.count_insertions(ident.id) == 1
    with pytest.raises(LedgerError, match="unknown identifier 'gs-0000000000'"):
        led.add_insertion("gs-0000000000", "a.md", _sha("a"), _sha("b"), 0, "start")


def test_checkpoints(led):
    assert led.get_checkpoint("k") is None
    led.set_checkpoint("k", {"line": 10, "files": ["a"]})
    led.set_checkpoint("k", {"line": 20})
    assert led.get_checkpoint("k") == {"line": 20}
    led.delete_checkpoint("k")
    assert led.get_checkpoint("k") is None


def test_runs_and_records(led):
    idents = _populate(led)
    [run] = led.runs()
    assert led.runs(idents[0].id) == [run] and led.runs(idents[2].id) == []
    full = led.run(run["id"])
    assert full["model"] == {"spec": "default"} and len(full["records"]) == 2
    assert full["records"][0]["details"] == {"k": 2} and full["records"][1]["identifier_id"] is None
    with pytest.raises(LedgerError, match="unknown run 999"):
        led.run(999)
    bad = [{"identifier_id": idents[1].id, "role": "member", "test": "ppl"},
           {"identifier_id": None, "role": "bystander", "test": "ppl"}]
    run2 = led.add_run("ppl", {}, {}, {})
    with pytest.raises(LedgerError, match="record 1: role"):
        led.add_run_records(run2, bad)
    assert led.run(run2)["records"] == []  # the good record before the bad one was rolled back too


# --- export / import ---------------------------------------------------------------------------------

def _export(ledger: Ledger) -> str:
    buf = io.StringIO()
    export_jsonl(ledger, buf)
    return buf.getvalue()


def test_export_import_round_trip_keeps_commitments(ledger_at):
    with ledger_at("a") as a:
        _populate(a)
        text = _export(a)
        snap = _snapshot(a)
    lines = [json.loads(x) for x in text.splitlines()]
    assert [x["type"] for x in lines] == ["header"] + ["identifier"] * 3 + ["insertion"] * 2 + ["run"]
    assert all(len(x["salt"]) == 32 for x in lines if x["type"] == "identifier")
    with ledger_at("b") as b:
        counts = import_jsonl(b, io.StringIO(text), "a.jsonl")
        assert counts == {"identifiers": {"added": 3, "skipped": 0}, "insertions": {"added": 2, "skipped": 0},
                          "runs": {"added": 1, "skipped": 0}}
        assert _snapshot(b) == snap
        assert ledger_commitment(b).to_dict() == snap[3]
        again = import_jsonl(b, io.StringIO(text), "a.jsonl")  # identical duplicates are skipped
        assert all(c["added"] == 0 and c["skipped"] > 0 for c in again.values())
        assert _snapshot(b) == snap


def test_import_conflicting_id_is_all_or_nothing(ledger_at):
    with ledger_at("a") as a:
        idents = _populate(a)
        text = _export(a)
    with ledger_at("b") as b:
        b.new_identifier("zed", EN)
        # same id as the file's third identifier (line 4), different owner
        b.add_identifier(dataclasses.replace(idents[2], owner="mallory", salt=""))
        before = _snapshot(b)
        with pytest.raises(LedgerError, match=rf"^a\.jsonl:4: identifier {idents[2].id} conflicts .*owner"):
            import_jsonl(b, io.StringIO(text), "a.jsonl")
        assert _snapshot(b) == before


def test_import_conflicting_passphrase(ledger_at):
    with ledger_at("a") as a:
        idents = _populate(a)
        text = _export(a)
    with ledger_at("b") as b:
        b.add_identifier(dataclasses.replace(idents[1], id="gs-0123456789", salt=""))
        before = _snapshot(b)
        with pytest.raises(LedgerError, match=r"^a\.jsonl:3: .*same passphrase as gs-0123456789"):
            import_jsonl(b, io.StringIO(text), "a.jsonl")
        assert _snapshot(b) == before


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", "not valid JSON"),
    ('["a list"]', 'expected a JSON object with a "type" field'),
    ('{"type": "nonsense"}', "unknown type 'nonsense'"),
    ('{"type": "identifier", "id": "gs-0000000000"}', "missing field 'words'"),
    ('{"type": "insertion", "identifier_id": "gs-ffffffffff", "document": "d", "sha256_before": "x", '
     '"sha256_after": "y", "offset": "7", "strategy": "end", "created_at": "t"}', "field 'offset' must be int"),
])
def test_import_malformed_line_names_it_and_imports_nothing(ledger_at, bad_line, message):
    with ledger_at("a") as a:
        _populate(a)
        lines = _export(a).splitlines()
    lines.insert(5, bad_line)  # becomes line 6, after three identifiers and one insertion
    with ledger_at("b") as b:
        with pytest.raises(InputError, match=rf"^a\.jsonl:6: {message}"):
            import_jsonl(b, io.StringIO("\n".join(lines)), "a.jsonl")
        assert b.identifiers() == [] and b.insertions() == [] and b.runs() == []


def test_import_insertion_for_unknown_identifier(led):
    line = json.dumps({"type": "insertion", "identifier_id": "gs-ffffffffff", "document": "d", "sha256_before": "x",
                       "sha256_after": "y", "offset": 1, "strategy": "end", "created_at": "t"})
    with pytest.raises(LedgerError, match=r"^f:1: insertion refers to unknown identifier 'gs-ffffffffff'"):
        import_jsonl(led, io.StringIO(line), "f")


# --- commitments -------------------------------------------------------------------------------------

def test_commitment_recomputable_by_a_third_party(led):
    idents = _populate(led)
    com = ledger_commitment(led).to_dict()
    assert com["count"] == 3 and [x["id"] for x in com["identifiers"]] == sorted(i.id for i in idents)
    digests = []
    for ident in idents:
        rv = reveal(ident)
        # what docs/ledger.md tells a verifier to do, from the revealed values only
        mine = hashlib.sha256(bytes.fromhex(rv["salt"]) + rv["canonical_json"].encode("utf-8")).hexdigest()
        assert mine == rv["commitment"] == identifier_commitment(ident)
        assert json.loads(rv["canonical_json"]) == {"id": ident.id, "owner": ident.owner, "ghost": ident.text,
                                                    "wordlist_sha256": ident.wordlist_sha256,
                                                    "created_at": ident.created_at}
        digests.append(mine)
    root = hashlib.sha256(b"".join(bytes.fromhex(d) for d in sorted(digests))).hexdigest()
    assert root == com["flat_root"] == commitment_root(digests)  # the flat root, as published before


def test_commitment_binds_content_and_salt(led):
    ident = led.new_identifier("ann", EN)
    c = identifier_commitment(ident)
    assert identifier_commitment(dataclasses.replace(ident, owner="eve")) != c
    assert identifier_commitment(dataclasses.replace(ident, salt="0" * 32)) != c
    assert canonical_json(ident) == canonical_json(dataclasses.replace(ident, salt="0" * 32))
    root = ledger_commitment(led).to_dict()["root"]
    led.new_identifier("bob", EN)
    assert ledger_commitment(led).to_dict()["root"] != root


# --- both backends: migrations and refusals --------------------------------------------------------------

def test_migration_from_version_1_keeps_data_on_both_backends(ledger_at):
    with ledger_at("old", _target_version=1) as old:
        assert old.schema_version == 1
        ident = old.new_identifier("ann", EN, n_words=4)
    with ledger_at("old") as new:
        assert new.schema_version == SCHEMA_VERSION
        assert new.get(ident.id) == ident and new.get(ident.id).salt == ident.salt
        assert new.identifier_for_owner("ann") == ident  # migration 4 filled owner_identifiers
        run = new.add_run("probe", {}, {}, {})
        new.add_run_records(run, [{"identifier_id": ident.id, "role": "member", "test": "probe"}])
        assert new.runs(ident.id)[0]["id"] == run


def test_read_only_open_refuses_a_missing_ledger(ledger_at):
    with pytest.raises(LedgerError, match="no ledger"):
        ledger_at("missing", create=False)


def test_export_carries_the_selection_secret_so_a_moved_ledger_selects_the_same_records(ledger_at):
    """A ledger moved by export/import keeps its selection secret (the keyed hash that chooses records),
    so a re-run against the copy chooses the same records; a ledger with its own secret keeps it, says
    so, and a malformed secret line imports nothing."""
    from ghostsent.ledger.keys import SELECTION_SECRET, selection_secret

    with ledger_at("a") as a:
        _populate(a)
        secret = selection_secret(a)
        text = _export(a)
    lines = [json.loads(x) for x in text.splitlines()]
    [line] = [x for x in lines if x["type"] == "secret"]
    assert line["name"] == SELECTION_SECRET and bytes.fromhex(line["value"]) == secret
    with ledger_at("b") as b:
        counts = import_jsonl(b, io.StringIO(text), "a.jsonl")
        assert counts["secrets"] == {"added": 1, "skipped": 0}
        assert selection_secret(b) == secret
        assert import_jsonl(b, io.StringIO(text), "a.jsonl")["secrets"] == {"added": 0, "skipped": 1}
    warned: list[str] = []
    with ledger_at("c") as c:
        own = selection_secret(c)
        import_jsonl(c, io.StringIO(text), "a.jsonl", warn=warned.append)
        assert selection_secret(c) == own != secret
    assert any("keeps its own selection secret" in w for w in warned)
    bad = text.replace(line["value"], "zz" * 32)
    with ledger_at("d") as d:
        with pytest.raises(InputError, match=r"^a\.jsonl:\d+: field 'value' must be 16 to 64 bytes"):
            import_jsonl(d, io.StringIO(bad), "a.jsonl")
        assert d.identifiers() == [] and d.secrets() == {}


def test_deferred_sync_commits_visibly_and_restores_full_sync(tmp_path):
    """Ledger.deferred_sync (tag-jsonl's new owners): commits inside skip only their WAL fsync. They are
    committed (another connection sees them at once, a rollback later does not undo them), the connection
    is back to synchronous = FULL afterwards, and a transaction already open is left alone."""
    path = tmp_path / "l.db"
    with Ledger(path) as led:
        sync = lambda: led._conn.execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731
        assert sync() == 2
        with led.deferred_sync():
            assert sync() == 1
            ident, new = led.identifier_for_owner_or_new("alice", "en", n_words=6, seed=1)
        assert new and sync() == 2
        other = sqlite3.connect(path)
        assert other.execute("SELECT owner FROM identifiers WHERE id = ?", (ident.id,)).fetchone() == ("alice",)
        other.close()
        with led.transaction():
            with led.deferred_sync():
                assert sync() == 2  # inside a transaction: untouched, the outer commit decides
        with pytest.raises(RuntimeError):
            with led.deferred_sync():
                raise RuntimeError("boom")
        assert sync() == 2 and led.find(ident.id) is not None


def test_natural_template_is_drawn_once_per_identifier_and_stored_drawn(led):
    """`natural` is a kind: each identifier draws one lead-in (seeded draws repeat), stores the drawn
    template, and its ghost reads lead-in + passphrase + full stop."""
    from ghostsent.passphrase import NATURAL, natural_templates

    idents = [led.new_identifier(f"o{i}", EN, n_words=6, template=NATURAL, rng=random.Random(i)) for i in range(40)]
    pool = set(natural_templates())
    assert all(i.ghost.template in pool for i in idents)
    assert len({i.ghost.template for i in idents}) >= 20  # 40 draws from 128: many different lead-ins
    for i in idents:
        assert i.text == i.ghost.template.replace("{words}", " ".join(i.words))
        assert led.find(i.id).ghost.template == i.ghost.template  # stored as drawn, not as "natural"
    first = led.new_identifier("p", EN, n_words=6, template=NATURAL, seed=7)
    second = led.new_identifier("q", EN, n_words=6, template=NATURAL, seed=7)
    assert first.ghost.template == second.ghost.template  # the lead-in comes from the same generator
    assert first.words != second.words  # (the passphrase is redrawn: the first one is taken)


def test_import_refuses_natural_as_a_stored_template(ledger_at):
    with ledger_at("a") as a:
        _populate(a)
        lines = _export(a).splitlines()
    obj = json.loads(next(x for x in lines if '"identifier"' in x))
    obj["template"] = "natural"
    with ledger_at("b") as b:
        with pytest.raises(InputError, match=r"^a\.jsonl:1: field 'template': 'natural' names a kind"):
            import_jsonl(b, io.StringIO(json.dumps(obj)), "a.jsonl")
        assert b.identifiers() == []
