"""Read-only destinations and a read-only ledger: one line, the documented exit code, nothing written,
nothing recorded that did not happen."""
from __future__ import annotations

import json
import os
from pathlib import Path

import harness
from ghostsent.ledger import Ledger
from proc import gs, one_line_error

TEXT = "First sentence here. Second one follows. Third is last.\n"


def _ledger_with_id(path: Path) -> str:
    res = gs("new", "--words", "5", "--json", "--ledger", path)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["id"]


def test_insert_out_into_a_read_only_folder(tmp_path, readonly):
    ledger = tmp_path / "l.db"
    ident = _ledger_with_id(ledger)
    (tmp_path / "a.txt").write_text(TEXT)
    ro = tmp_path / "ro"
    ro.mkdir()
    readonly(ro)
    res = gs("insert", ident, "a.txt", "--out", ro, "--ledger", ledger, cwd=tmp_path)
    one_line_error(res, 3, str(ro / "a.txt"), "cannot write")
    assert list(ro.iterdir()) == [] and (tmp_path / "a.txt").read_text() == TEXT
    with Ledger(ledger) as led:
        assert led.insertions() == []


def test_insert_in_place_that_fails_half_way_names_the_files_already_changed(tmp_path, readonly):
    ledger = tmp_path / "l.db"
    ident = _ledger_with_id(ledger)
    (tmp_path / "ro").mkdir()
    files = [tmp_path / "one.txt", tmp_path / "ro" / "two.txt", tmp_path / "three.txt"]
    for f in files:
        f.write_text(TEXT)
    originals = {f: f.read_bytes() for f in files}
    readonly(tmp_path / "ro")
    res = gs("insert", ident, *files, "--in-place", "--ledger", ledger)
    line = one_line_error(res, 3, "two.txt", "already changed", "one.txt")
    assert "three.txt" not in line
    assert files[1].read_bytes() == originals[files[1]] and files[2].read_bytes() == originals[files[2]]
    assert files[0].read_bytes() != originals[files[0]]
    harness.check_files(originals, ledger)  # one.txt tagged and recorded; the others untouched, unrecorded


def test_tag_jsonl_into_a_read_only_folder(tmp_path, readonly):
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(harness.corpus(50, seed=1))
    ro = tmp_path / "ro"
    ro.mkdir()
    readonly(ro)
    ledger = tmp_path / "l.db"
    res = gs("tag-jsonl", inp, ro / "out.jsonl", "--skip-bad", "--ledger", ledger)
    one_line_error(res, 3, "out.jsonl", "cannot")
    assert list(ro.iterdir()) == []
    with Ledger(ledger) as led:
        assert led.insertions() == [] and led._q("SELECT count(*) FROM checkpoints")[0][0] == 0


def test_export_into_a_read_only_folder(tmp_path, readonly):
    ledger = tmp_path / "l.db"
    _ledger_with_id(ledger)
    ro = tmp_path / "ro"
    ro.mkdir()
    readonly(ro)
    one_line_error(gs("export", "-o", ro / "x.jsonl", "--ledger", ledger), 3, "x.jsonl", "cannot write")
    assert list(ro.iterdir()) == []


def test_read_only_ledger(tmp_path, readonly):
    folder = tmp_path / "ledger"
    folder.mkdir()
    ledger = folder / "l.db"
    ident = _ledger_with_id(ledger)
    before = ledger.read_bytes()
    readonly(folder)
    one_line_error(gs("new", "--ledger", ledger), 4, "l.db")
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(harness.corpus(30, seed=2, hostile=False))
    res = gs("tag-jsonl", inp, tmp_path / "out.jsonl", "--ledger", ledger)
    one_line_error(res, 4, "l.db")
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.jsonl.partial").exists()
    (tmp_path / "a.txt").write_text(TEXT)
    one_line_error(gs("insert", ident, "a.txt", "--in-place", "--ledger", ledger, cwd=tmp_path), 4, "l.db")
    assert (tmp_path / "a.txt").read_text() == TEXT and not (tmp_path / "a.txt.bak").exists()
    res = gs("list", "--ledger", ledger)  # reading may work or fail, but only ever as one line
    if res.returncode != 0:
        one_line_error(res, 4, "l.db")
    assert ledger.read_bytes() == before and sorted(os.listdir(folder)) == ["l.db"]
