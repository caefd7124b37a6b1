"""The fault-injection suite for as long as you like: tests/faults' scenarios at random seeds and sizes.

    python scripts/fault_soak.py --minutes 30            # every scenario, at random
    python scripts/fault_soak.py --only kill --seed 123   # replay one failure

Scenarios: kill (tag-jsonl killed or interrupted at random moments, then --resume, compared with an
uninterrupted run), insert (insert --in-place killed, then rerun), writers (two runs on one OUT),
disk (a disk that fills up, then --resume), fuzz (a hostile corpus with random bytes flipped). Each
round runs in a fresh folder and asserts the invariants of tests/faults/harness.py. The first failure
stops the run, prints the scenario and seed, and keeps its folder (fault-soak-failure-*) for a look.
Exit 0 when every round held. Needs root for the tmpfs of the disk scenario (else RLIMIT_FSIZE).
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

import scenarios  # noqa: E402
from mounts import SmallDisk  # noqa: E402


def _disk(d: Path, seed: int, rng: random.Random) -> None:
    disk = SmallDisk(d / "disk", rng.choice([256 << 10, 512 << 10, 1 << 20, 2 << 20]))
    try:
        scenarios.full_disk_then_resume(d, seed, disk, lines=rng.choice([400, 800, 1500]))
    finally:
        disk.close()


SCENARIOS = {
    "kill": lambda d, seed, rng: scenarios.kill_and_resume(d, seed, lines=rng.choice([2000, 8000, 20000]),
                                                           max_kills=rng.randint(2, 12)),
    "insert": lambda d, seed, rng: scenarios.insert_kill_rerun(d, seed, files=rng.choice([20, 80, 200]),
                                                               rounds=rng.randint(1, 4)),
    "writers": lambda d, seed, rng: scenarios.two_writers(d, seed, lines=rng.choice([1000, 5000]), rounds=2),
    "disk": _disk,
    "fuzz": lambda d, seed, rng: scenarios.fuzzed_corpus(d, seed, lines=rng.choice([500, 3000, 10000])),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=None, help="seed of the first round (then drawn from it)")
    ap.add_argument("--only", choices=sorted(SCENARIOS), default=None)
    args = ap.parse_args()
    master = random.Random(args.seed)
    end = time.time() + args.minutes * 60
    counts: dict[str, int] = {}
    first = True
    while first or time.time() < end:
        name = args.only or master.choice(sorted(SCENARIOS))
        seed = args.seed if first and args.seed is not None else master.randrange(1 << 30)
        first = False
        d = Path(tempfile.mkdtemp(prefix="fault-soak-"))
        t0 = time.time()
        try:
            SCENARIOS[name](d, seed, random.Random(seed))
        except BaseException:
            keep = Path.cwd() / f"fault-soak-failure-{name}-{seed}"
            shutil.copytree(d, keep, symlinks=True, dirs_exist_ok=True)
            traceback.print_exc()
            print(f"FAILED: scenario {name}, seed {seed} (replay: --only {name} --seed {seed}); files kept in {keep}")
            return 1
        finally:
            shutil.rmtree(d, ignore_errors=True)
        counts[name] = counts.get(name, 0) + 1
        print(f"ok  {name:<8} seed {seed:<11} {time.time() - t0:6.1f} s", flush=True)
    print("all rounds held: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
