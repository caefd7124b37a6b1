"""Fault scenarios, each a function of a folder, a seed and a size: tests/faults runs them small and
fixed, scripts/fault_soak.py runs them large and at random. Each asserts the invariants of
harness.py and raises AssertionError naming the seed."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import harness
from ghostsent.ledger import Ledger
from ghostsent.tagging import checkpoint_key
from mounts import SmallDisk
from proc import gs, one_line_error, popen

FULL = ("No space left", "File too large")  # ENOSPC on a tmpfs, EFBIG under RLIMIT_FSIZE


def records(ledger: Path) -> list[tuple]:
    """(line, offset, sha before, sha after) of every insertion, sorted: comparable across ledgers."""
    return sorted((i.document.rsplit(":", 1)[1], i.offset, i.sha256_before, i.sha256_after)
                  for i in harness.ledger_rows(ledger)[0])


def checkpoint(ledger: Path, out: Path) -> dict | None:
    if not ledger.exists() or ledger.stat().st_size == 0:
        return None
    with Ledger(ledger, create=False) as led:
        return led.get_checkpoint(checkpoint_key(str(out)))


def reference(d: Path, inp: Path, args: list[str]) -> tuple[bytes, list[tuple], float]:
    """An uninterrupted run: its output, its records, and how long it took."""
    t0 = time.time()
    res = gs("tag-jsonl", inp, d / "ref.jsonl", *args, "--ledger", d / "ref.db")
    assert res.returncode == 0, res.stderr
    return (d / "ref.jsonl").read_bytes(), records(d / "ref.db"), time.time() - t0


def check_interrupted(out: Path, ledger: Path, ref_out: bytes, ref_records: list[tuple]) -> None:
    """State after a killed or interrupted attempt: consistent as of the last committed checkpoint."""
    harness.ledger_ok(ledger)
    if out.exists():
        assert out.read_bytes() == ref_out  # the rename is the last step: OUT is complete or absent
        return
    cp = checkpoint(ledger, out)
    got = records(ledger)
    if cp is None or cp["lines_done"] == 0:
        assert got == [], "records without a checkpoint that covers them"
        return
    partial = Path(str(out) + ".partial").read_bytes()
    assert partial[:cp["bytes_out"]] == ref_out[:cp["bytes_out"]]
    assert got == [r for r in ref_records if int(r[0].split()[-1]) <= cp["lines_done"]]


def _holds(pid: int, paths: tuple[str, ...]) -> bool:
    """Whether process `pid` has one of `paths` open (Linux /proc)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in paths:
                return True
        except OSError:
            pass
    return False


def _interrupt(p, rng: random.Random, took: float, ready: Path) -> int:
    """Send SIGKILL or SIGINT at a random moment. SIGINT only once the process has `ready` open (OUT's
    lock, or the ledger): an interrupt inside Python's own start-up (importing modules) is not
    ghostsent's to handle."""
    sig = rng.choice([signal.SIGKILL, signal.SIGINT])
    deadline = time.time() + rng.uniform(0.05, took * 1.1)
    while time.time() < deadline and p.poll() is None:
        time.sleep(0.01)
    if sig == signal.SIGINT:
        held = (os.path.realpath(ready),)
        while p.poll() is None and not _holds(p.pid, held):
            time.sleep(0.005)
    if p.poll() is None:
        p.send_signal(sig)
    return sig


def kill_and_resume(d: Path, seed: int, lines: int = 4000, max_kills: int = 6, workers: int = 1) -> int:
    """tag-jsonl --resume, killed or interrupted up to max_kills times; returns the number of kills. With
    `workers` > 1 the interrupted runs use --workers (the reference is one process: the same bytes)."""
    rng = random.Random(seed)
    inp = d / "in.jsonl"
    data = harness.corpus(lines, seed=seed)
    inp.write_bytes(data)
    args = ["--skip-bad", "--seed", "7", "--checkpoint-every", str(rng.choice([97, 250, 600])),
            "--max-per-owner", str(rng.choice([30, 300, 100000])), "--position", rng.choice(["random", "latter-half"]),
            "--no-progress"]
    ref_out, ref_records, took = reference(d, inp, args)
    out, ledger = d / "out.jsonl", d / "l.db"
    kills = 0
    while True:
        p = popen("tag-jsonl", inp, out, *args, "--resume", "--ledger", ledger, "--workers", str(workers))
        sig = _interrupt(p, rng, took, Path(str(out) + ".lock")) if kills < max_kills else None
        _, err = p.communicate(timeout=600)
        err = err.decode()
        assert inp.read_bytes() == data, f"seed {seed}: input changed"
        if p.returncode == 0:
            break
        assert "Traceback" not in err, f"seed {seed}:\n{err}"
        assert p.returncode == (-9 if sig == signal.SIGKILL else 130), (seed, p.returncode, err)
        check_interrupted(out, ledger, ref_out, ref_records)
        kills += 1
        if out.exists():
            break  # interrupted after its final rename: complete
    assert out.read_bytes() == ref_out, f"seed {seed}"
    assert records(ledger) == ref_records, f"seed {seed}"
    assert harness.check_jsonl(data, out.read_bytes(), ledger, str(inp)) == len(ref_records)
    assert not Path(str(out) + ".partial").exists() and not Path(str(out) + ".lock").exists()
    return kills


def _workers_of(pid: int) -> list[int]:
    """The multiprocessing worker processes started by `pid` (Linux /proc)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmd:
            out.append(int(name))
    return out


def worker_killed_then_resume(d: Path, seed: int, lines: int = 30000) -> float:
    """tag-jsonl --workers 2 whose worker process is killed with SIGKILL mid-run (as the out-of-memory
    killer would): the run must stop by itself, in one line with exit code 3, leave a consistent,
    resumable state, and one resumed process must give the uninterrupted result. (multiprocessing.Pool
    replaces a dead worker but loses its chunk: without the check the run waits forever.) Returns how
    long the stopped run took after the kill."""
    rng = random.Random(seed)
    inp = d / "in.jsonl"
    data = harness.corpus(lines, seed=seed)
    inp.write_bytes(data)
    args = ["--skip-bad", "--seed", "7", "--checkpoint-every", "500", "--no-progress"]
    ref_out, ref_records, _ = reference(d, inp, args)
    out, ledger = d / "out.jsonl", d / "l.db"
    p = popen("tag-jsonl", inp, out, *args, "--resume", "--ledger", ledger, "--workers", "2")
    partial = Path(str(out) + ".partial")
    while p.poll() is None and not (partial.exists() and partial.stat().st_size > rng.randint(1, 200_000)):
        time.sleep(0.01)
    workers = _workers_of(p.pid)
    assert p.poll() is None and workers, f"seed {seed}: the run ended before a worker could be killed"
    os.kill(workers[0], signal.SIGKILL)
    t0 = time.time()
    _, err = p.communicate(timeout=120)   # a hang is the defect this scenario exists for
    took = time.time() - t0
    one_line_error(subprocess.CompletedProcess(p.args, p.returncode, b"", err), 3, "worker process ended",
                   "signal 9", "resume")
    assert inp.read_bytes() == data
    check_interrupted(out, ledger, ref_out, ref_records)
    res = gs("tag-jsonl", inp, out, *args, "--resume", "--ledger", ledger)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == ref_out and records(ledger) == ref_records, f"seed {seed}"
    assert not partial.exists()
    return took


def insert_kill_rerun(d: Path, seed: int, files: int = 40, rounds: int = 3) -> None:
    """insert --in-place over many files, killed or interrupted, then rerun: every file is consistent
    with the ledger and its first backup is the original."""
    rng = random.Random(seed)
    originals = {}
    for i in range(files):
        f = d / f"doc{i}.md"
        f.write_text(" ".join(harness.sentence(rng) for _ in range(rng.randint(2, 8))) + "\n")
        originals[f] = f.read_bytes()
    ledger = d / "l.db"
    for round_ in range(rounds):
        res = gs("new", "--owner", f"o{round_}", "--words", "5", "--json", "--ledger", ledger)
        ident = json.loads(res.stdout)["id"]
        p = popen("insert", ident, *originals, "--in-place", "--ledger", ledger)
        _interrupt(p, rng, 0.2 + files * 0.005, ledger)
        _, err = p.communicate(timeout=120)
        assert "Traceback" not in err.decode(), (seed, err)
        res = gs("insert", ident, *originals, "--in-place", "--ledger", ledger)  # the rerun finishes the job
        assert res.returncode == 0, (seed, res.stderr)
        harness.ledger_ok(ledger)
        harness.check_files(originals, ledger)
        for f, original in originals.items():
            assert Path(str(f) + ".bak").read_bytes() == original, seed


def two_writers(d: Path, seed: int, lines: int = 3000, rounds: int = 3) -> None:
    """Two tag-jsonl runs on one OUT at once: one wins, the other is refused in one line; the result
    is the uninterrupted run's."""
    inp = d / "in.jsonl"
    data = harness.corpus(lines, seed=seed)
    inp.write_bytes(data)
    args = ["--skip-bad", "--seed", "3", "--checkpoint-every", "200", "--max-per-owner", "200", "--no-progress"]
    ref, ref_records, _ = reference(d, inp, args)
    for k in range(rounds):
        out, ledger = d / f"out{k}.jsonl", d / f"l{k}.db"
        procs = [popen("tag-jsonl", inp, out, *args, "--ledger", ledger) for _ in range(2)]
        results = [(p, *p.communicate(timeout=600)) for p in procs]
        codes = sorted(p.returncode for p, _, _ in results)
        assert codes == [0, 3], (seed, [(p.returncode, e.decode()) for p, _, e in results])
        loser = next(e.decode() for p, _, e in results if p.returncode == 3)
        assert "Traceback" not in loser and ("another ghostsent run" in loser or "already exists" in loser), loser
        assert out.read_bytes() == ref and inp.read_bytes() == data and records(ledger) == ref_records, seed
        harness.check_jsonl(data, ref, ledger, str(inp))
        assert not Path(str(out) + ".partial").exists() and not Path(str(out) + ".lock").exists()


def full_disk_then_resume(d: Path, seed: int, disk: SmallDisk, lines: int = 600) -> None:
    """tag-jsonl into a disk that fills up: one-line exit 3 naming the temporary file, a consistent
    checkpointed prefix; after space is freed, --resume gives the uninterrupted run's result."""
    inp = d / "in.jsonl"
    data = harness.corpus(lines, seed=seed, long=40)  # about 2 KB a line
    while len(data) < 2 * disk.size:  # the output must outgrow the disk
        lines *= 2
        data = harness.corpus(lines, seed=seed, long=40)
    inp.write_bytes(data)
    args = ["--skip-bad", "--seed", "1", "--checkpoint-every", "100", "--max-per-owner", "40", "--no-progress"]
    ref, ref_records, _ = reference(d, inp, args)
    out, ledger = disk.path / "out.jsonl", d / "l.db"
    res = gs("tag-jsonl", inp, out, *args, "--ledger", ledger, preexec_fn=disk.preexec)
    line = one_line_error(res, 3, "out.jsonl.partial", "cannot write")
    assert any(f in line for f in FULL), line
    assert inp.read_bytes() == data and not out.exists()
    cp = checkpoint(ledger, out)
    if cp is not None and cp["lines_done"] > 0:
        assert "--resume" in line
        check_interrupted(out, ledger, ref, ref_records)
    else:
        assert records(ledger) == [] and not Path(str(out) + ".partial").exists()
    disk.grow(max(disk.size, len(ref)) * 4)
    res = gs("tag-jsonl", inp, out, *args, "--resume", "--ledger", ledger, preexec_fn=disk.preexec)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == ref and records(ledger) == ref_records, seed
    harness.check_jsonl(data, ref, ledger, str(inp))


def fuzzed_corpus(d: Path, seed: int, lines: int = 2000) -> None:
    """A hostile corpus with random bytes flipped, tagged with --skip-bad: exit 0, input untouched,
    output and ledger consistent, whatever the bytes."""
    rng = random.Random(seed)
    data = bytearray(harness.corpus(lines, seed=seed))
    for _ in range(rng.randint(1, max(1, len(data) // 500))):
        data[rng.randrange(len(data))] = rng.randrange(256)
    data = bytes(data)
    inp = d / "in.jsonl"
    inp.write_bytes(data)
    res = gs("tag-jsonl", inp, d / "out.jsonl", "--skip-bad", "--checkpoint-every", str(rng.randint(1, 500)),
             "--ledger", d / "l.db", "--no-progress")
    assert res.returncode == 0, (seed, res.stderr)
    assert inp.read_bytes() == data
    harness.check_jsonl(data, (d / "out.jsonl").read_bytes(), d / "l.db", str(inp))
