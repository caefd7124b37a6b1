"""Two writers at once, as real processes: the same OUT, the same ledger, the same files in place."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import harness
import scenarios
from ghostsent.ledger import Ledger
from proc import gs, popen


def _start_together(*commands: list) -> list:
    procs = [popen(*c) for c in commands]
    return [(p, *p.communicate(timeout=300)) for p in procs]


def test_two_tag_jsonl_runs_on_one_out(tmp_path):
    scenarios.two_writers(tmp_path, seed=11, lines=3000, rounds=3)


def test_concurrent_runs_with_new_owners_share_one_identifier_each(tmp_path):
    ledger = tmp_path / "l.db"
    assert gs("new", "--owner", "first", "--ledger", ledger).returncode == 0
    inputs = []
    for k in range(3):
        inp = tmp_path / f"in{k}.jsonl"
        inp.write_bytes(harness.corpus(400, seed=k, owners=15))
        inputs.append(inp)
    results = _start_together(*[["tag-jsonl", inp, tmp_path / f"out{k}.jsonl", "--skip-bad", "--words", "4",
                                 "--ledger", ledger, "--no-progress"] for k, inp in enumerate(inputs)])
    assert all(p.returncode == 0 for p, _, _ in results), [e for _, _, e in results]
    with Ledger(ledger) as led:
        owners = [i.owner for i in led.identifiers()]
    assert len(owners) == len(set(owners)), sorted(owners)
    for k, inp in enumerate(inputs):
        harness.check_jsonl(inp.read_bytes(), (tmp_path / f"out{k}.jsonl").read_bytes(), ledger, str(inp))


def _files(tmp_path: Path, n: int) -> dict[Path, bytes]:
    rng = random.Random(5)
    files = {}
    for i in range(n):
        f = tmp_path / f"d{i}.txt"
        f.write_text(" ".join(harness.sentence(rng) for _ in range(4)) + "\n")
        files[f] = f.read_bytes()
    return files


def test_two_insert_in_place_runs_on_the_same_files(tmp_path):
    files = _files(tmp_path, 30)
    ledger = tmp_path / "l.db"
    ident = json.loads(gs("new", "--words", "5", "--json", "--ledger", ledger).stdout)["id"]
    for _attempt in range(3):
        results = _start_together(["insert", ident, *files, "--in-place", "--ledger", ledger],
                                  ["insert", ident, *files, "--in-place", "--ledger", ledger])
        for p, _, err in results:
            err = err.decode()
            assert p.returncode in (0, 3) and "Traceback" not in err, err
            if p.returncode == 3:
                assert "changed by another process" in err, err
        harness.check_files(files, ledger)
        with Ledger(ledger) as led:
            assert len(led.insertions()) == len(files)  # one ghost, one record per file
        ghost = Ledger(ledger).get(ident).text
        assert all(f.read_text().count(ghost) == 1 for f in files)
        time.sleep(0.01)


def test_two_insert_runs_into_the_same_out_folder(tmp_path):
    files = _files(tmp_path, 20)
    ledger = tmp_path / "l.db"
    ident = json.loads(gs("new", "--words", "5", "--json", "--ledger", ledger).stdout)["id"]
    names = [f.name for f in files]
    results = _start_together(["insert", ident, *names, "--out", tmp_path / "out", "--ledger", ledger],
                              ["insert", ident, *names, "--out", tmp_path / "out", "--ledger", ledger])
    for p, _, err in results:
        assert p.returncode in (0, 3) and "Traceback" not in err.decode(), err
    res = gs("insert", ident, *names, "--out", tmp_path / "out", "--ledger", ledger, cwd=tmp_path)
    assert res.returncode == 0, res.stderr  # a rerun completes whatever the loser left
    with Ledger(ledger) as led:
        docs = [i.document for i in led.insertions()]
    assert sorted(docs) == sorted(str((tmp_path / "out" / n).resolve()) for n in names)
    assert all(f.read_bytes() == original for f, original in files.items())
