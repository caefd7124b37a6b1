"""Hostile input: JSON that is valid but odd, bytes that are not JSON, owner names and file names made
to break terminals, and arbitrary generated lines. Nothing may crash, change other bytes, or leave the
ledger describing something the output does not hold."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness
from ghostsent.errors import InputError
from ghostsent.ledger import Ledger
from ghostsent.tagging import JsonlOptions, tag_jsonl
from proc import gs, one_line_error


def test_hostile_corpus_is_tagged_with_bad_records_listed(tmp_path):
    data = harness.corpus(1500, seed=21)
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(data)
    bad = harness.expected_bad(data)
    assert len(bad) > 20
    res = gs("tag-jsonl", inp, tmp_path / "o.jsonl", "--ledger", tmp_path / "l.db", "--checkpoint-every", "1000")
    one_line_error(res, 3, f"line {bad[0]}")
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.partial").exists()
    assert harness.ledger_rows(tmp_path / "l.db")[0] == []
    res = gs("tag-jsonl", inp, tmp_path / "out.jsonl", "--skip-bad", "--json", "--ledger", tmp_path / "l.db")
    assert res.returncode == 0, res.stderr
    assert [b["line"] for b in json.loads(res.stdout)["bad_lines"]] == bad
    out = (tmp_path / "out.jsonl").read_bytes()
    assert harness.check_jsonl(data, out, tmp_path / "l.db", str(inp)) > 100
    lines = harness.split_lines(out)
    assert all(lines[n - 1] == harness.split_lines(data)[n - 1] for n in bad)
    with Ledger(tmp_path / "l.db") as led:
        owners = {i.owner for i in led.identifiers()}
    assert "spaced" in owners and "42" in owners and not any(o != o.strip() for o in owners)


def _record(owner, text: str, extra: dict, ascii_only: bool) -> bytes:
    return json.dumps({"owner": owner, "text": text, **extra}, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


LINES = st.one_of(
    st.sampled_from([line for line, _ in harness.HOSTILE]),
    st.binary(max_size=60).filter(lambda b: b"\n" not in b),
    st.builds(_record, st.one_of(st.text(max_size=8), st.integers(), st.none()), st.text(max_size=80),
              st.dictionaries(st.sampled_from(["id", "n", "text"]),
                              st.one_of(st.floats(allow_nan=False), st.text(max_size=5)), max_size=2),
              st.booleans()),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINES, min_size=1, max_size=25), crlf=st.booleans(), every=st.integers(1, 9))
def test_any_lines_are_tagged_or_skipped_never_mangled(lines, crlf, every):
    data = b"".join(line + (b"\r\n" if crlf else b"\n") for line in lines)
    with tempfile.TemporaryDirectory() as d:
        inp, out, led = Path(d) / "in.jsonl", Path(d) / "out.jsonl", Path(d) / "l.db"
        inp.write_bytes(data)
        with Ledger(led) as ledger:
            try:
                tag_jsonl(ledger, str(inp), str(out), JsonlOptions(skip_bad=True, checkpoint_every=every, seed=1,
                                                                   words=4))
            except InputError as e:  # the only acceptable failure, and only for this reason
                raise AssertionError(f"--skip-bad run failed: {e}") from None
        assert inp.read_bytes() == data
        harness.check_jsonl(data, out.read_bytes(), led, str(inp))


NAMES = [b"esc\x1b[31m.txt", b"new\nline.txt", b"caf\xe9.txt", "rtl\u202etxt.exe".encode(), b" spaced .txt",
         b"bell\x07.txt"]


def test_hostile_file_names_are_tagged_and_printed_escaped(tmp_path):
    ledger = tmp_path / "l.db"
    ident = json.loads(gs("new", "--words", "5", "--json", "--ledger", ledger).stdout)["id"]
    d = os.fsencode(tmp_path)
    for name in NAMES:
        with open(os.path.join(d, name), "w") as f:
            f.write("First sentence here. Second one follows.\n")
    res = gs("insert", ident, *NAMES, "--out", "o", "--ledger", ledger, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    shown = gs("show", ident, "--ledger", ledger).stdout
    for output in (res.stdout, shown):
        assert not any(c in output for c in (b"\x1b", b"\x07", "\u202e".encode(), b"\xe9"))
    assert len(res.stdout.splitlines()) == len(NAMES) + 1  # no name smuggled in a line break
    with Ledger(ledger) as led:
        docs = sorted(i.document for i in led.insertions())
    assert len(docs) == len(NAMES) and any(doc.endswith("caf\\xe9.txt") for doc in docs)
    for name in NAMES:
        assert b"Second one follows." in open(os.path.join(d, b"o", name), "rb").read()
