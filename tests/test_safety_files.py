"""`insert` and file-writing data-safety defects (issue 8), through the real command where it matters."""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from ghostsent.ledger import Ledger
from ghostsent.sentences import sentence_boundaries
from proc import gs, one_line_error

pytestmark = pytest.mark.core  # runs on the light install (no extras)

TEXT = "First sentence here. Second one follows. Third is last.\n"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def setup(tmp_path):
    """(folder, ledger path, identifier id) with a.txt in the folder."""
    led = tmp_path / "l.db"
    res = gs("new", "--owner", "ann", "--words", "5", "--json", "--ledger", led)
    assert res.returncode == 0, res.stderr
    (tmp_path / "a.txt").write_text(TEXT)
    return tmp_path, led, json.loads(res.stdout)["id"]


# --- 2. --out through a symlink back into the input folder --------------------------------------

def test_out_through_a_symlink_to_the_input_folder_is_refused(setup):
    d, led, ident = setup
    (d / "link").symlink_to(d)
    res = gs("insert", ident, "a.txt", "--out", "link", "--ledger", led, cwd=d)
    one_line_error(res, 3, "a.txt")
    assert (d / "a.txt").read_text() == TEXT
    with Ledger(led) as l:
        assert l.insertions() == []


def test_out_that_resolves_onto_another_input_is_refused(setup):
    d, led, ident = setup
    (d / "tagged").mkdir()
    (d / "tagged" / "a.txt").write_text("Other input. Keep me.\n")
    res = gs("insert", ident, "a.txt", "tagged/a.txt", "--out", "tagged", "--ledger", led, cwd=d)
    one_line_error(res, 3, "tagged/a.txt")
    assert (d / "tagged" / "a.txt").read_text() == "Other input. Keep me.\n"


def test_output_that_is_a_hard_link_to_the_input_is_refused(setup):
    d, led, ident = setup
    (d / "out").mkdir()
    os.link(d / "a.txt", d / "out" / "a.txt")
    res = gs("insert", ident, "a.txt", "--out", "out", "--ledger", led, cwd=d)
    one_line_error(res, 3, "a.txt")
    assert (d / "a.txt").read_text() == TEXT


# --- 5. unclosed protected regions at the end of a text -----------------------------------------

@pytest.mark.parametrize("region", [
    "<script>\nvar a = 1. Next. More.", "<script>var a. Bee;\nc = 2.\n", "```\ncode. Xen. Yes.",
    "<!-- note. Here. More.", "<!-- note. Here.\n", "$$ x. Yes. Zed.", "$$\nx = 1. Yes.\n", "<style>ab. Bee.\n",
    "~~~~\nOne. Two.\n\nThree.",
])
def test_unclosed_region_runs_to_the_end_of_the_text(region):
    text = "Intro one. Intro two.\n\n" + region
    start = text.index(region)
    assert all(b.offset <= start for b in sentence_boundaries(text)), \
        [b for b in sentence_boundaries(text) if b.offset > start]


# --- 9. unwritable output, odd file names, half-failed multi-file runs --------------------------

def test_non_utf8_file_name_is_tagged_and_shown_escaped(setup):
    d, led, ident = setup
    name = b"caf\xe9.txt"
    with open(os.path.join(os.fsencode(d), name), "w") as f:
        f.write(TEXT)
    res = gs("insert", ident, name, "--ledger", led, cwd=d)
    assert res.returncode == 0, res.stderr.decode()
    assert "Traceback" not in res.stderr.decode() and b"\\xe9" in res.stdout
    with Ledger(led) as l:
        [ins] = l.insertions()
    assert ins.document.endswith("caf\\xe9.txt")
    res = gs("show", ident, "--ledger", led)
    assert res.returncode == 0 and b"caf\\xe9.txt" in res.stdout


def test_unreadable_and_missing_inputs_are_one_line_errors(setup):
    d, led, ident = setup
    one_line_error(gs("insert", ident, "missing.txt", "--ledger", led, cwd=d), 3, "missing.txt")
    (d / "sub").mkdir()
    one_line_error(gs("insert", ident, "sub", "--ledger", led, cwd=d), 3, "sub")


# --- 12. ambiguous UTF-16/32 without a byte-order mark -------------------------------------------

@pytest.mark.parametrize("enc", ["utf-16", "UTF16", "utf-32"])
def test_utf16_or_32_without_bom_needs_the_byte_order(setup, enc):
    d, led, ident = setup
    width = "16" if "16" in enc else "32"
    (d / "be.txt").write_bytes(TEXT.encode(f"utf-{width}-be"))
    before = sha(d / "be.txt")
    res = gs("insert", ident, "be.txt", "--in-place", "--encoding", enc, "--ledger", led, cwd=d)
    one_line_error(res, 3, "be.txt", f"utf-{width}-le", f"utf-{width}-be")
    assert sha(d / "be.txt") == before


def test_explicit_byte_order_against_the_opposite_bom_is_refused(setup):
    d, led, ident = setup
    (d / "x.txt").write_bytes(codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"))
    res = gs("insert", ident, "x.txt", "--in-place", "--encoding", "utf-16-le", "--ledger", led, cwd=d)
    one_line_error(res, 3, "x.txt", "byte-order mark")


# --- 13. file modes -----------------------------------------------------------------------------

def test_new_ledger_and_its_wal_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        res = gs("new", "--ledger", tmp_path / "l.db")
        assert res.returncode == 0
        assert b"created new ledger" in res.stderr
    finally:
        os.umask(old)
    with Ledger(tmp_path / "l.db") as l:
        l.new_identifier("x", "en")
        for suffix in ("", "-wal", "-shm"):
            p = tmp_path / ("l.db" + suffix)
            if p.exists():
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, suffix


def test_reports_follow_the_umask(tmp_path):
    from ghostsent.fsio import atomic_write

    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "r" / "report.md", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r" / "report.md").stat().st_mode) == 0o640


def test_export_is_private(setup):
    d, led, ident = setup
    res = gs("export", "-o", "backup.jsonl", "--ledger", led, cwd=d)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE((d / "backup.jsonl").stat().st_mode) == 0o600


# --- 14. stale records ---------------------------------------------------------------------------

def test_rerun_into_the_same_out_neither_overwrites_nor_records_twice(setup):
    d, led, ident = setup
    assert gs("insert", ident, "a.txt", "--ledger", led, cwd=d).returncode == 0
    first = (d / "tagged" / "a.txt").read_bytes()
    res = gs("insert", ident, "a.txt", "--json", "--ledger", led, cwd=d)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["files"][0]["status"] == "already-tagged"
    assert (d / "tagged" / "a.txt").read_bytes() == first
    with Ledger(led) as l:
        assert len(l.insertions()) == 1


def test_existing_different_output_is_refused(setup):
    d, led, ident = setup
    (d / "tagged").mkdir()
    (d / "tagged" / "a.txt").write_text("Someone else's file. Keep.\n")
    res = gs("insert", ident, "a.txt", "--ledger", led, cwd=d)
    one_line_error(res, 3, "tagged/a.txt", "exists")
    assert (d / "tagged" / "a.txt").read_text() == "Someone else's file. Keep.\n"


def test_the_same_file_named_twice_is_tagged_once(setup):
    d, led, ident = setup
    res = gs("insert", ident, "a.txt", "./a.txt", os.path.abspath(d / "a.txt"), "--in-place", "--json",
             "--ledger", led, cwd=d)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"] == {"tagged": 1}
    with Ledger(led) as l:
        assert len(l.insertions()) == 1
        ghost = l.get(ident).text
    assert (d / "a.txt").read_text().count(ghost) == 1


# --- 15. --in-place on a symlink ----------------------------------------------------------------

def test_in_place_on_a_symlink_writes_through_and_keeps_owner_and_mode(setup):
    d, led, ident = setup
    (d / "real").mkdir()
    target = d / "real" / "t.txt"
    target.write_text(TEXT)
    target.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(target, 4321, 4321)
    (d / "link.txt").symlink_to(target)
    res = gs("insert", ident, "link.txt", "--in-place", "--ledger", led, cwd=d)
    assert res.returncode == 0, res.stderr
    assert (d / "link.txt").is_symlink()
    with Ledger(led) as l:
        ghost = l.get(ident).text
        [ins] = l.insertions()
    assert ghost in target.read_text()
    st = target.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (4321, 4321)
    assert ins.document == str(target.resolve())
    assert sha(target) == ins.sha256_after


# --- a kill between the rename and the COMMIT ----------------------------------------------------

def test_rerun_rebuilds_the_record_a_killed_run_never_committed(setup):
    """The rename happens inside the ledger transaction, just before COMMIT; a kill in between leaves a
    tagged file without its record. A rerun finds our inserted span and rebuilds the exact record."""
    import sqlite3

    d, led, ident = setup
    original = hashlib.sha256(TEXT.encode()).hexdigest()
    assert gs("insert", ident, "a.txt", "--in-place", "--no-backup", "--ledger", led, cwd=d).returncode == 0
    with Ledger(led) as l:
        [ins] = l.insertions()
    con = sqlite3.connect(led)
    con.execute("DELETE FROM insertions")  # what the rolled-back transaction leaves
    con.commit()
    con.close()
    res = gs("insert", ident, "a.txt", "--in-place", "--no-backup", "--json", "--ledger", led, cwd=d)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["files"][0]["status"] == "already-tagged"
    with Ledger(led) as l:
        [again] = l.insertions()
    assert (again.sha256_before, again.sha256_after, again.offset) == (original, ins.sha256_after, ins.offset)
    assert again.document == ins.document and again.strategy == "recovered"
    res = gs("insert", ident, "a.txt", "--in-place", "--ledger", led, cwd=d)  # and only once
    with Ledger(led) as l:
        assert len(l.insertions()) == 1


def test_import_accepts_every_strategy_insert_records():
    from ghostsent.insert import POSITIONS
    from ghostsent.ledger.records import STRATEGIES as _STRATEGIES

    assert set(POSITIONS) | {"recovered"} == set(_STRATEGIES)
