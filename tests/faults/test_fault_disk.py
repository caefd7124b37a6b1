"""A destination that fills up (a small tmpfs, or RLIMIT_FSIZE where mounting is impossible): one-line
error, exit 3 (output) or 4 (ledger), input untouched, ledger consistent, and --resume or a rerun
finishes the job once there is space again."""
from __future__ import annotations

import io
import json

import harness
import scenarios
from ghostsent.ledger import Ledger
from ghostsent.ledger.transfer import export_jsonl
from proc import gs, one_line_error
from scenarios import FULL


def test_tag_jsonl_on_a_full_disk_then_resume(tmp_path, small_disk):
    scenarios.full_disk_then_resume(tmp_path, seed=3, disk=small_disk(1 << 20), lines=600)


def test_insert_out_on_a_full_disk_names_what_was_written(tmp_path, small_disk):
    names = []
    for i in range(3):
        f = tmp_path / f"f{i}.txt"
        # 80 KB, 200 KB, 80 KB: the second cannot fit (on the disk, or under the per-file limit)
        f.write_text(("Some sentence here. " * (10000 if i == 1 else 4000)).strip() + "\n")
        names.append(f.name)
    originals = {tmp_path / n: (tmp_path / n).read_bytes() for n in names}
    ledger = tmp_path / "l.db"
    ident = json.loads(gs("new", "--json", "--ledger", ledger).stdout)["id"]
    disk = small_disk(128 << 10)
    res = gs("insert", ident, *names, "--out", disk.path, "--ledger", ledger, cwd=tmp_path, preexec_fn=disk.preexec)
    line = one_line_error(res, 3, "f1.txt", "already changed", "f0.txt")
    assert any(f in line for f in FULL), line
    assert sorted(p.name for p in disk.path.iterdir()) == ["f0.txt"]  # no temp file left behind
    with Ledger(ledger) as led:
        [ins] = led.insertions()
    assert ins.document == str((disk.path / "f0.txt").resolve())
    assert ins.sha256_after == harness.sha((disk.path / "f0.txt").read_bytes())
    assert all(p.read_bytes() == b for p, b in originals.items())


def test_ledger_on_a_full_disk_imports_nothing(tmp_path, small_disk):
    with Ledger(tmp_path / "big.db") as big, big.transaction():
        for i in range(3000):
            big.new_identifier(f"owner{i}", "en", n_words=6)
    buf = io.StringIO()
    with Ledger(tmp_path / "big.db") as big:
        export_jsonl(big, buf)
    (tmp_path / "big.jsonl").write_text(buf.getvalue())
    disk = small_disk(256 << 10)
    ledger = disk.path / "l.db"
    assert gs("new", "--owner", "keep", "--ledger", ledger, preexec_fn=disk.preexec).returncode == 0
    res = gs("import", tmp_path / "big.jsonl", "--ledger", ledger, preexec_fn=disk.preexec)
    line = one_line_error(res, 4, "l.db")
    assert "space" in line or "full" in line, line
    disk.grow(64 << 20)
    harness.ledger_ok(ledger)
    with Ledger(ledger) as led:
        assert [i.owner for i in led.identifiers()] == ["keep"]  # all or nothing
