"""Real SIGKILL and SIGINT at random moments, then --resume (tag-jsonl) or a rerun (insert).

Each interrupted attempt must leave the input intact, OUT absent or complete, the ledger consistent
with OUT.partial's checkpointed prefix; the run that finally completes must equal an uninterrupted run
byte for byte, with the same ledger records. The seed is printed on failure; set GHOSTSENT_FAULT_SEED
to replay one."""
from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import harness
from ghostsent.ledger import Ledger
from ghostsent.tagging import checkpoint_key
from proc import gs, popen

SEED = int(os.environ.get("GHOSTSENT_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))


def _records(ledger: Path) -> list[tuple]:
    return sorted((i.document.rsplit(":", 1)[1], i.offset, i.sha256_before, i.sha256_after)
                  for i in harness.ledger_rows(ledger)[0])


def _checkpoint(ledger: Path, out: Path) -> dict | None:
    if not ledger.exists() or ledger.stat().st_size == 0:
        return None
    with Ledger(ledger, create=False) as led:
        return led.get_checkpoint(checkpoint_key(str(out)))


def _started(out: Path) -> bool:
    return Path(str(out) + ".partial").exists() or out.exists()


def _check_interrupted(inp: bytes, out: Path, ledger: Path, ref_out: bytes, ref_records: list[tuple]) -> None:
    """State after a killed or interrupted attempt: consistent as of the last committed checkpoint."""
    harness.ledger_ok(ledger)
    if out.exists():
        assert out.read_bytes() == ref_out  # the rename is the last step: OUT is complete or absent
        return
    cp = _checkpoint(ledger, out)
    got = _records(ledger)
    if cp is None or cp["lines_done"] == 0:
        assert got == [], "records without a checkpoint that covers them"
        return
    partial = Path(str(out) + ".partial").read_bytes()
    assert partial[:cp["bytes_out"]] == ref_out[:cp["bytes_out"]]
    done = cp["lines_done"]
    assert got == [r for r in ref_records if int(r[0].split()[-1]) <= done]


def test_random_kills_and_interrupts_then_resume(tmp_path):
    rng = random.Random(SEED)
    inp = tmp_path / "in.jsonl"
    data = harness.corpus(4000, seed=SEED)
    inp.write_bytes(data)
    args = ["--skip-bad", "--seed", "7", "--checkpoint-every", str(rng.choice([97, 250, 600])),
            "--max-per-owner", "300", "--position", "random", "--no-progress"]
    t0 = time.time()
    ref = gs("tag-jsonl", inp, tmp_path / "ref.jsonl", *args, "--ledger", tmp_path / "ref.db")
    took = time.time() - t0
    assert ref.returncode == 0, ref.stderr
    ref_out, ref_records = (tmp_path / "ref.jsonl").read_bytes(), _records(tmp_path / "ref.db")

    out, ledger = tmp_path / "out.jsonl", tmp_path / "l.db"
    kills = 0
    while True:
        p = popen("tag-jsonl", inp, out, *args, "--resume", "--ledger", ledger)
        sig = None
        if kills < 6:
            sig = rng.choice([signal.SIGKILL, signal.SIGINT])
            deadline = time.time() + rng.uniform(0.05, took * 1.1)
            while time.time() < deadline and p.poll() is None:
                time.sleep(0.01)
            if sig == signal.SIGINT:  # after start-up: an interrupt inside Python's own start is not ours
                while p.poll() is None and not _started(out):
                    time.sleep(0.01)
            if p.poll() is None:
                p.send_signal(sig)
        _, err = p.communicate(timeout=300)
        err = err.decode()
        assert inp.read_bytes() == data, f"seed {SEED}: input changed"
        if p.returncode == 0:
            break
        assert "Traceback" not in err, f"seed {SEED}:\n{err}"
        assert p.returncode == (-9 if sig == signal.SIGKILL else 130), (SEED, p.returncode, err)
        _check_interrupted(data, out, ledger, ref_out, ref_records)
        kills += 1
        if out.exists():
            break  # interrupted after its final rename: complete
    assert out.read_bytes() == ref_out, f"seed {SEED}"
    assert _records(ledger) == ref_records, f"seed {SEED}"
    assert harness.check_jsonl(data, out.read_bytes(), ledger, str(inp)) == len(ref_records)
    assert not Path(str(out) + ".partial").exists() and not Path(str(out) + ".lock").exists()


def test_random_kills_during_insert_in_place_then_rerun(tmp_path):
    rng = random.Random(SEED + 1)
    files = {}
    for i in range(40):
        f = tmp_path / f"doc{i}.md"
        f.write_text(" ".join(harness.sentence(rng) for _ in range(rng.randint(2, 8))) + "\n")
        files[f] = f.read_bytes()
    ledger = tmp_path / "l.db"
    for round_ in range(3):
        res = gs("new", "--owner", f"o{round_}", "--words", "5", "--json", "--ledger", ledger)
        ident = __import__("json").loads(res.stdout)["id"]
        p = popen("insert", ident, *files, "--in-place", "--ledger", ledger)
        time.sleep(rng.uniform(0.1, 0.6))
        p.send_signal(rng.choice([signal.SIGKILL, signal.SIGINT]))
        _, err = p.communicate(timeout=120)
        assert "Traceback" not in err.decode(), (SEED, err)
        res = gs("insert", ident, *files, "--in-place", "--ledger", ledger)  # the rerun finishes the job
        assert res.returncode == 0, (SEED, res.stderr)
        harness.ledger_ok(ledger)
        harness.check_files(files, ledger)
        for f, original in files.items():
            assert Path(str(f) + ".bak").read_bytes() == original  # the first backup is the original
