"""File and JSONL tagging against a real SQLite ledger."""
from __future__ import annotations

import codecs
import hashlib
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostsent.errors import InputError, OutputError
from ghostsent.ledger import Ledger
from ghostsent.sentences import Boundary
from ghostsent.tagging import JsonlOptions, checkpoint_key, tag_files, tag_jsonl


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.db") as led:
        yield led


@pytest.fixture
def ident(ledger):
    return ledger.new_identifier("alice", "en", n_words=6, seed=1)


def only_change_is_ghost(before: bytes, after: bytes, ghost: str, enc: str = "utf-8") -> None:
    text_before, text_after = before.decode(enc), after.decode(enc)
    i = next(i for i, (a, b) in enumerate(zip(text_before + "\0", text_after)) if a != b)
    span = len(text_after) - len(text_before)
    assert text_after[:i] + text_after[i + span:] == text_before
    assert ghost in text_after[i - 1:i + span + 1]


# --- files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("enc,bom,nl", [
    ("utf-8", b"", "\n"),
    ("utf-8", codecs.BOM_UTF8, "\r\n"),
    ("utf-16-le", codecs.BOM_UTF16_LE, "\r\n"),
    ("utf-16-be", codecs.BOM_UTF16_BE, "\n"),
])
def test_encoding_bom_and_newlines_round_trip(tmp_path, ledger, ident, enc, bom, nl):
    text = nl.join(["# Title", "", "Caf\u00e9 first. Second one.", "", "```", "code. X.", "```", "Last one.", ""])
    src = tmp_path / "doc.md"
    src.write_bytes(bom + text.encode(enc))
    [res] = tag_files(ledger, ident, [src], out_dir=tmp_path / "out", rng=random.Random(0))
    assert res.status == "tagged"
    out = Path(res.output)
    assert out == tmp_path / "out" / "doc.md"
    raw = out.read_bytes()
    assert raw.startswith(bom)
    new_text = raw[len(bom):].decode(enc)
    assert new_text.count("\r\n") == text.count("\r\n") and new_text.count("\n") == text.count("\n")
    assert new_text.replace(Boundary(0, "after").inserted(ident.text), "", 1) == text
    assert src.read_bytes() == bom + text.encode(enc)  # input untouched
    [ins] = ledger.insertions(ident.id)
    assert ins.sha256_before == hashlib.sha256(bom + text.encode(enc)).hexdigest()
    assert ins.sha256_after == hashlib.sha256(raw).hexdigest()
    assert ins.offset == res.offset and new_text[ins.offset:].startswith(" " + ident.text)
    assert ins.strategy == "latter-half" and ins.document == str(out.resolve())


def test_latin1_with_explicit_encoding(tmp_path, ledger, ident):
    src = tmp_path / "a.txt"
    src.write_bytes("Gr\u00fc\u00dfe aus K\u00f6ln. Sch\u00f6n hier.\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"a\.txt: not valid utf-8 at byte offset 2 .*encoding"):
        tag_files(ledger, ident, [src], out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() and ledger.insertions() == []
    [res] = tag_files(ledger, ident, [src], out_dir=tmp_path / "out", encoding="latin-1")
    only_change_is_ghost(src.read_bytes(), Path(res.output).read_bytes(), ident.text, "latin-1")


def test_one_bad_file_means_nothing_written_for_any(tmp_path, ledger, ident):
    good = tmp_path / "good.txt"
    good.write_text("Fine text. Yes.\n")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Hello. \xff\xfe broken.\n")
    with pytest.raises(InputError, match="bad.txt: not valid utf-8 at byte offset 7"):
        tag_files(ledger, ident, [good, bad], out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() and ledger.insertions() == []


def test_binary_is_skipped_and_empty_is_reported(tmp_path, ledger, ident):
    binf = tmp_path / "x.bin"
    binf.write_bytes(b"Some. Text.\x00\x01\x02")
    empty = tmp_path / "e.txt"
    empty.write_text("")
    code = tmp_path / "c.md"
    code.write_text("```\nonly. Code.\n```\n")
    warnings = []
    res = tag_files(ledger, ident, [binf, empty, code], out_dir=tmp_path / "out", warn=warnings.append)
    assert [r.status for r in res] == ["binary", "no-boundary", "no-boundary"]
    assert "empty" in res[1].message and len(warnings) == 1
    assert not (tmp_path / "out").exists() and ledger.insertions() == []


def test_dry_run_writes_nothing(tmp_path, ledger, ident):
    src = tmp_path / "a.txt"
    src.write_text("One. Two. Three.\nFour five.\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    [res] = tag_files(ledger, ident, [src], dry_run=True, out_dir=tmp_path / "out")
    assert res.status == "would-tag" and res.line >= 1 and res.col >= 1 and ident.text in res.snippet
    assert sorted(p.name for p in tmp_path.iterdir()) == before and ledger.insertions() == []


def test_in_place_backup_and_idempotent_rerun(tmp_path, ledger, ident):
    src = tmp_path / "a.md"
    original = b"Para one. Para two.\n\nPara three.\n"
    src.write_bytes(original)
    src.chmod(0o640)
    [res] = tag_files(ledger, ident, [src], in_place=True)
    assert res.status == "tagged" and (tmp_path / "a.md.bak").read_bytes() == original
    assert oct(src.stat().st_mode & 0o777) == oct(0o640)
    tagged = src.read_bytes()
    only_change_is_ghost(original, tagged, ident.text)
    [again] = tag_files(ledger, ident, [src], in_place=True)
    assert again.status == "already-tagged" and src.read_bytes() == tagged
    assert ledger.count_insertions(ident.id) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    # A second identifier keeps the first backup and adds a numbered one.
    other = ledger.new_identifier("bob", "en", n_words=6, seed=2)
    tag_files(ledger, other, [src], in_place=True)
    assert (tmp_path / "a.md.bak").read_bytes() == original
    assert (tmp_path / "a.md.bak.1").read_bytes() == tagged


def test_in_place_no_backup(tmp_path, ledger, ident):
    src = tmp_path / "a.txt"
    src.write_text("One. Two.\n")
    tag_files(ledger, ident, [src], in_place=True, backup=False)
    assert not (tmp_path / "a.txt.bak").exists() and ident.text in src.read_text()


def test_failed_rename_rolls_the_ledger_back(tmp_path, ledger, ident, monkeypatch):
    import os

    src = tmp_path / "a.txt"
    src.write_text("One. Two.\n")

    def boom(*a, **k):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OutputError, match="disk on fire"):  # one-line error, not a traceback (issue 8)
        tag_files(ledger, ident, [src], out_dir=tmp_path / "out")
    monkeypatch.undo()
    assert ledger.insertions() == []
    assert list((tmp_path / "out").iterdir()) == []


def test_output_collisions_are_refused(tmp_path, ledger, ident):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in "ab":
        (tmp_path / d / "x.txt").write_text("One. Two.\n")
    with pytest.raises(InputError, match="would both be written"):
        tag_files(ledger, ident, [tmp_path / "a" / "x.txt", tmp_path / "b" / "x.txt"], out_dir=tmp_path / "out")


# --- JSONL ------------------------------------------------------------------------------------

def write_corpus(path: Path, n: int, owners: int = 3, extra: dict | None = None) -> list[bytes]:
    lines = []
    for i in range(n):
        rec = {"id": f"r{i}", "author": f"owner{i % owners}",
               "body": f"Record number {i} starts here. It has a middle part. And it ends \u00e9 here."}
        if extra and i in extra:
            rec = extra[i]
        lines.append((rec if isinstance(rec, bytes) else json.dumps(rec).encode()) + b"\n")
    path.write_bytes(b"".join(lines))
    return lines


def opts(**kw) -> JsonlOptions:
    base = dict(text_field="body", owner_field="author", seed=5, checkpoint_every=7, words=6)
    base.update(kw)
    return JsonlOptions(**base)


def keyed_rank(secret: bytes, owner: str, key: str) -> int:
    """docs/scale.md's rule, computed here independently of ghostsent.tagging.selection."""
    import hmac
    return int.from_bytes(hmac.new(secret, f"{owner}\0{key}".encode(), hashlib.sha256).digest()[:8], "big")


def seed_secret(seed: int) -> bytes:
    return hashlib.sha256(f"ghostsent-selection-seed:{seed}".encode()).digest()


def test_jsonl_cap_order_and_ledger(tmp_path, ledger):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = write_corpus(inp, 30)
    s = tag_jsonl(ledger, str(inp), str(out), opts(max_per_owner=2))
    assert s["inserted"] == 6 and s["owners"] == 3 and s["new_identifiers"] == 3 and s["lines"] == 30
    got = out.read_bytes().splitlines(keepends=True)
    assert len(got) == 30
    changed = [i for i, (a, b) in enumerate(zip(lines, got)) if a != b]
    # each owner's two records with the smallest keyed hash of (owner, line number), not the first two
    ranks = {i: keyed_rank(seed_secret(5), f"owner{i % 3}", f"n:{i + 1}") for i in range(30)}
    expected = sorted(i for o in range(3) for i in sorted((i for i in range(30) if i % 3 == o), key=ranks.get)[:2])
    assert changed == expected and expected != [0, 1, 2, 3, 4, 5]
    for i, (a, b) in enumerate(zip(lines, got)):
        ra, rb = json.loads(a), json.loads(b)
        assert ra["id"] == rb["id"] and ra["author"] == rb["author"]
        if i in changed:
            ghost = ledger.identifier_for_owner(ra["author"]).text
            assert rb["body"].replace(Boundary(0, "after").inserted(ghost), "", 1) == ra["body"]
    ins = ledger.insertions()
    assert sorted(i.document for i in ins) == sorted(f"{inp}:line {k + 1}" for k in changed)
    assert ledger.get_checkpoint(checkpoint_key(str(out))) is None
    assert not Path(str(out) + ".partial").exists()


def test_jsonl_fraction_nested_field_and_id_field(tmp_path, ledger):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    with open(inp, "w") as f:
        for i in range(40):
            f.write(json.dumps({"rid": i, "meta": {"by": "solo"}, "doc": {"text": f"Item {i}. More text."}}) + "\n")
    s = tag_jsonl(ledger, str(inp), str(out), opts(text_field="doc.text", owner_field="meta.by", id_field="rid",
                                                   fraction=0.25))
    # a record is chosen when its keyed rank is below 0.25 * 2^64 (about a quarter, binomially)
    chosen = [i for i in range(40) if keyed_rank(seed_secret(5), "solo", f"id:{i}") < (1 << 64) // 4]
    assert s["inserted"] == len(chosen) and 0 < len(chosen) < 40
    ghost = ledger.identifier_for_owner("solo").text
    tagged = [i for i, l in enumerate(out.read_text().splitlines()) if ghost in json.loads(l)["doc"]["text"]]
    assert tagged == chosen
    assert {i.document for i in ledger.insertions()} == {f"{inp}:rid={i}" for i in chosen}


def test_jsonl_rerun_on_tagged_output_inserts_nothing(tmp_path, ledger):
    inp, out, out2 = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "out2.jsonl"
    write_corpus(inp, 12)
    tag_jsonl(ledger, str(inp), str(out), opts(max_per_owner=1))
    s = tag_jsonl(ledger, str(out), str(out2), opts(max_per_owner=1))
    assert s["inserted"] == 0 and s["already_tagged"] == 3 and s["new_identifiers"] == 0
    assert out2.read_bytes() == out.read_bytes() and len(ledger.insertions()) == 3


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_after", [1, 3])
def test_jsonl_resume_after_crash_matches_uninterrupted_run(tmp_path, crash_after):
    inp = tmp_path / "in.jsonl"
    write_corpus(inp, 50, owners=4)
    o = dict(max_per_owner=5, position="random")
    with Ledger(tmp_path / "ref.db") as ref:
        tag_jsonl(ref, str(inp), str(tmp_path / "ref.jsonl"), opts(**o))
        ref_docs = sorted((i.document, i.offset, i.sha256_after) for i in ref.insertions())

    out = tmp_path / "out.jsonl"
    with Ledger(tmp_path / "l.db") as led:
        def hook(n):
            if n == crash_after:
                # Half-write the next chunk first, as a real crash would leave it.
                with open(str(out) + ".partial", "ab") as f:
                    f.write(b'{"garbage": "half a li')
                raise Crash()

        with pytest.raises(Crash):
            tag_jsonl(led, str(inp), str(out), opts(**o), after_checkpoint=hook)
        assert not out.exists() and Path(str(out) + ".partial").exists()
        cp = led.get_checkpoint(checkpoint_key(str(out)))
        assert cp["lines_done"] == 7 * crash_after
        assert len(led.insertions()) == sum(1 for d in ref_docs if int(d[0].rsplit(" ", 1)[1]) <= 7 * crash_after)
        with pytest.raises(InputError, match="resume it to continue") as err:
            tag_jsonl(led, str(inp), str(out), opts(**o))
        assert err.value.hint == "resume"  # the CLI adds "--resume"
        with pytest.raises(InputError, match="different settings.*max_per_owner"):
            tag_jsonl(led, str(inp), str(out), opts(max_per_owner=6, position="random", resume=True))
        s = tag_jsonl(led, str(inp), str(out), opts(resume=True, **o))
        assert s["resumed_from_line"] == 7 * crash_after
        assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
        docs = sorted((i.document, i.offset, i.sha256_after) for i in led.insertions())
        assert docs == ref_docs  # no double insertions, none lost
        assert led.get_checkpoint(checkpoint_key(str(out))) is None


def test_jsonl_skip_bad_copies_lines_through(tmp_path, ledger):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = write_corpus(inp, 10, extra={2: b"{not json", 4: {"author": "x"}, 6: b"[1, 2]", 8: b"\xff\xfe"})
    s = tag_jsonl(ledger, str(inp), str(out), opts(skip_bad=True, max_per_owner=1))
    got = out.read_bytes().splitlines(keepends=True)
    assert len(got) == 10 and all(got[i] == lines[i] for i in (2, 4, 6, 8))
    assert [b["line"] for b in s["bad_lines"]] == [3, 5, 7, 9] and s["bad"] == 4
    assert "text field 'body'" in s["bad_lines"][1]["reason"]
    assert "UTF-8" in s["bad_lines"][3]["reason"]


@pytest.mark.parametrize("bad,match", [
    (b"{not json", r"line 4: not valid JSON"),
    (b'{"author": "x", "text": "no body"}', r"line 4: missing text field 'body'"),
    (b'{"body": "No owner. Here."}', r"line 4: missing owner field 'author'"),
])
def test_jsonl_bad_line_stops_and_leaves_nothing(tmp_path, ledger, bad, match):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_corpus(inp, 10, extra={3: bad})
    with pytest.raises(InputError, match=match + ".*copied through unchanged"):
        tag_jsonl(ledger, str(inp), str(out), opts(checkpoint_every=1000))
    assert not out.exists() and not Path(str(out) + ".partial").exists()
    assert ledger.insertions() == [] and ledger.get_checkpoint(checkpoint_key(str(out))) is None


def test_jsonl_bad_line_after_a_checkpoint_keeps_a_resumable_partial(tmp_path, ledger):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_corpus(inp, 20, extra={12: b"{broken"})
    with pytest.raises(InputError, match="line 13.*fix the cause and resume") as err:
        tag_jsonl(ledger, str(inp), str(out), opts(checkpoint_every=5))
    assert err.value.hint == "resume_or_skip_bad"  # the CLI adds "--resume (or add --skip-bad)"
    assert not out.exists()
    s = tag_jsonl(ledger, str(inp), str(out), opts(checkpoint_every=5, resume=True, skip_bad=True))
    assert s["lines"] == 20 and [b["line"] for b in s["bad_lines"]] == [13]
    assert len(out.read_bytes().splitlines()) == 20


def test_jsonl_crlf_blank_lines_and_no_boundary(tmp_path, ledger):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(b'{"author": "a", "body": "One. Two."}\r\n\r\n{"author": "b", "body": ""}\r\n'
                    b'{"author": "b", "body": "Three. Four."}')
    s = tag_jsonl(ledger, str(inp), str(out), opts(max_per_owner=1))
    got = out.read_bytes().split(b"\r\n")
    assert len(got) == 4 and got[1] == b"" and got[2] == b'{"author": "b", "body": ""}'
    assert s["no_boundary"] == 1 and s["blank"] == 1 and s["inserted"] == 2
    assert not got[3].endswith(b"\n")


def test_jsonl_existing_identifier_is_reused(tmp_path, ledger, ident):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"author": "alice", "body": "Hi there. Bye."}) + "\n")
    s = tag_jsonl(ledger, str(inp), str(out), opts())
    assert s["new_identifiers"] == 0 and ident.text in out.read_text()
    assert ledger.count_insertions(ident.id) == 1


def test_jsonl_workers_give_the_same_output_and_ledger_and_resume(tmp_path):
    """--workers 2 (real processes): the same bytes and insertions as one process, bad lines in the same
    places, and a crash after a checkpoint resumes to the same result."""
    inp = tmp_path / "in.jsonl"
    write_corpus(inp, 2600, owners=7, extra={5: b"{broken", 1999: {"author": "x"}})
    o = dict(max_per_owner=150, skip_bad=True, checkpoint_every=500)
    with Ledger(tmp_path / "one.db") as led:
        one = tag_jsonl(led, str(inp), str(tmp_path / "one.jsonl"), opts(**o))
        one_rows = sorted((i.document, i.offset, i.sha256_after) for i in led.insertions())
        one_words = sorted((i.owner, i.text) for i in led.identifiers())
    assert one["inserted"] == 7 * 150 and [b["line"] for b in one["bad_lines"]] == [6, 2000]
    out = tmp_path / "two.jsonl"
    with Ledger(tmp_path / "two.db") as led:
        def crash(n):
            if n == 2:
                raise Crash()
        with pytest.raises(Crash):
            tag_jsonl(led, str(inp), str(out), opts(workers=2, **o), after_checkpoint=crash)
        two = tag_jsonl(led, str(inp), str(out), opts(workers=2, resume=True, **o))
        two_rows = sorted((i.document, i.offset, i.sha256_after) for i in led.insertions())
        two_words = sorted((i.owner, i.text) for i in led.identifiers())
    assert two["resumed_from_line"] == 1000
    assert out.read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert two_rows == one_rows and two_words == one_words
    assert {k: two[k] for k in ("inserted", "records", "bad", "owners", "lines")} == \
           {k: one[k] for k in ("inserted", "records", "bad", "owners", "lines")}


def test_smallest_ranks_picks_the_n_smallest_eligible_in_any_order_and_sharding():
    from ghostsent.tagging.selection import SmallestRanks

    rng = random.Random(7)
    recs = [(f"o{rng.randrange(5)}", rng.getrandbits(64), rng.random() < 0.8) for _ in range(3000)]
    want = {}
    for o in {r[0] for r in recs}:
        ranks = sorted(r for oo, r, ok in recs if oo == o and ok)[:4]
        want[o] = ranks[-1]
    calls = 0

    def run(order):
        nonlocal calls
        sr = SmallestRanks(4)
        for o, r, ok in order:
            def ev(ok=ok, o=o, r=r):
                nonlocal calls
                calls += 1
                return (o, r) if ok else None
            sr.offer(o, r, ev)
        return sr

    whole = run(recs)
    assert whole.thresholds() == want
    assert sorted(whole.payload.values()) == sorted((o, r) for o, r, ok in recs if ok and r <= want[o])
    assert calls < len(recs) / 5  # eligibility is evaluated only for ranks that would enter a heap
    shuffled = recs[:]
    rng.shuffle(shuffled)
    a, b = run(shuffled[:1000]), run(shuffled[1000:])
    a.merge(b)
    assert a.thresholds() == want


def test_jsonl_workers_that_cannot_open_the_ledger_fail_in_one_error_not_a_hang(tmp_path, monkeypatch):
    """Fault injection: the workers' ledger open fails (the path vanished). multiprocessing.Pool would
    restart a failing initializer forever; the error must come back as the run's one error instead."""
    import signal

    from ghostsent.errors import LedgerError

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_corpus(inp, 50)
    with Ledger(tmp_path / "l.db") as led:
        monkeypatch.setattr(led, "path", tmp_path / "gone.db")  # what the workers are told to open
        signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("workers hung")))
        signal.alarm(120)
        try:
            with pytest.raises(LedgerError, match="gone.db"):
                tag_jsonl(led, str(inp), str(out), opts(workers=2))
        finally:
            signal.alarm(0)
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_a_pool_shutdown_that_never_returns_does_not_hang_the_run(tmp_path, monkeypatch):
    """Fault injection: Pool.terminate() that never returns (CPython's can wait forever for its task
    handler; seen in this file's test above). The run still ends, with its own outcome, after STOP_S."""
    import multiprocessing.pool
    import threading
    import time

    from ghostsent.errors import LedgerError
    from ghostsent.tagging import parallel

    real = multiprocessing.pool.Pool.terminate
    monkeypatch.setattr(multiprocessing.pool.Pool, "terminate", lambda self: (real(self), threading.Event().wait()))
    monkeypatch.setattr(parallel, "STOP_S", 1.0)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_corpus(inp, 50)
    with Ledger(tmp_path / "l.db") as led:
        t0 = time.monotonic()
        tag_jsonl(led, str(inp), str(out), opts(workers=2))              # success: the output is complete
        assert out.exists() and time.monotonic() - t0 < 60
        monkeypatch.setattr(led, "path", tmp_path / "gone.db")           # failure: its own error
        with pytest.raises(LedgerError, match="gone.db"):
            tag_jsonl(led, str(inp), str(tmp_path / "out2.jsonl"), opts(workers=2))


@settings(max_examples=300, deadline=None)
@given(seed=st.binary(min_size=24, max_size=24), bounds=st.lists(st.integers(1, 5000), min_size=1, max_size=30))
def test_keyed_random_randrange_draws_like_random_randrange(seed, bounds):
    """KeyedRandom's inlined randrange(n) returns what random.Random.randrange returns from the same
    keyed bits (placements stay the same as before the speed work), draw after draw."""
    from ghostsent.tagging.selection import KeyedRandom

    fast, slow = KeyedRandom(seed), KeyedRandom(seed)
    for n in bounds:
        assert fast.randrange(n) == random.Random.randrange(slow, n)
    assert fast.randrange(3, 10) == random.Random.randrange(slow, 3, 10)


@settings(max_examples=200, deadline=None)
@given(secret=st.binary(max_size=130), owner=st.text(), key=st.text())
def test_selection_digest_is_hmac_sha256_of_owner_and_key(secret, owner, key):
    """The keyed hash is HMAC-SHA256(secret, owner NUL key) as documented, whatever HMAC API computes it."""
    import hmac

    from ghostsent.tagging.selection import SelectionKey

    msg = f"{owner}\x00{key}".encode("utf-8", "surrogatepass")
    assert SelectionKey.of(secret).digest_fn()(owner, key) == hmac.new(secret, msg, hashlib.sha256).digest()


class _OldKeyedRandom(random.SystemRandom):
    """KeyedRandom as it was before it stopped subclassing random.Random (4cd0e4d), for comparison."""

    def __init__(self, seed: bytes) -> None:
        self.gauss_next = None
        self._buf, self._pos, self._seed, self._n = seed, 0, seed, 0

    def getrandbits(self, k: int) -> int:
        n = (k + 7) // 8
        while self._pos + n > len(self._buf):
            self._n += 1
            self._buf = self._buf[self._pos:] + hashlib.sha256(self._seed + self._n.to_bytes(8, "big")).digest()
            self._pos = 0
        pos = self._pos
        self._pos = pos + n
        return int.from_bytes(self._buf[pos:pos + n], "big") >> (n * 8 - k)

    def random(self) -> float:
        return self.getrandbits(53) * (1.0 / (1 << 53))


@settings(max_examples=300, deadline=None)
@given(seed=st.binary(min_size=24, max_size=24),
       calls=st.lists(st.tuples(st.sampled_from(["randrange", "randrange2", "random", "choice", "shuffle", "sample",
                                                 "randint", "getrandbits", "uniform"]), st.integers(1, 3000)),
                      min_size=1, max_size=25))
def test_keyed_random_draws_like_the_former_random_subclass(seed, calls):
    """KeyedRandom (a plain class, cheap to make) gives, call after call, exactly what the former
    random.SystemRandom subclass gave from the same keyed bits, for every method random.Random offers
    that could reach it (placement uses randrange; the rest must not silently differ)."""
    from ghostsent.tagging.selection import KeyedRandom

    new, old = KeyedRandom(seed), _OldKeyedRandom(seed)
    for name, n in calls:
        a, b = list(range(n % 40 + 1)), list(range(n % 40 + 1))
        got = {"randrange": lambda r, _, n=n: r.randrange(n), "randrange2": lambda r, _, n=n: r.randrange(3, n + 3, 2),
               "random": lambda r, _: r.random(), "choice": lambda r, xs: r.choice(xs),
               "shuffle": lambda r, xs: (r.shuffle(xs), xs)[1], "sample": lambda r, xs: r.sample(xs, len(xs) // 2),
               "randint": lambda r, _, n=n: r.randint(-n, n), "getrandbits": lambda r, _, n=n: r.getrandbits(n % 200),
               "uniform": lambda r, _, n=n: r.uniform(0, n)}[name]
        assert got(new, a) == got(old, b)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_records_sharing_an_id_each_get_the_ghost_at_a_boundary_of_their_own_text(tmp_path, suffix):
    """Defect (found by the pinned-output test): with --max-per-owner and an id field, the first pass
    kept placements keyed by the record's keyed digest, which records sharing an owner and id share; the
    tagging pass then put the ghost into a duplicate at the OTHER record's offset (inside a word, or past
    the end). Each record must get the placement of its own text (seekable walk and compressed heaps)."""
    import gzip

    texts = ["Short one. Two.", "A much longer text comes here first. Then a second sentence follows it. "
             "And a third one closes the record. Done now.", "Naive words everywhere in this text. Really."]
    lines = b"".join(json.dumps({"id": "same", "author": "alice", "body": t}).encode() + b"\n" for t in texts)
    inp = tmp_path / f"in.jsonl{suffix}"
    inp.write_bytes(gzip.compress(lines) if suffix else lines)
    out = tmp_path / "out.jsonl"
    with Ledger(tmp_path / "l.db") as led:
        s = tag_jsonl(led, str(inp), str(out), opts(id_field="id", max_per_owner=1))
        [ident] = led.identifiers()
    assert s["inserted"] == 3  # one id: one rank, chosen together (docs/scale.md)
    from ghostsent.tagging.core import OwnerGhost
    from ghostsent.tagging.selection import SelectionKey, rng_of

    ghost = OwnerGhost.of(ident)
    digest = SelectionKey.from_seed(5).digest_fn()("alice", 'id:"same"')
    for text, line in zip(texts, out.read_bytes().splitlines()):
        off, inserted = ghost.place(text, rng_of(digest))
        assert json.loads(line)["body"] == text[:off] + inserted + text[off:]
