"""Real SIGKILL and SIGINT at random moments, then --resume (tag-jsonl) or a rerun (insert).

Each interrupted attempt must leave the input intact, OUT absent or complete, the ledger consistent
with OUT.partial's checkpointed prefix; the run that finally completes must equal an uninterrupted run
byte for byte, with the same ledger records (scenarios.kill_and_resume). The seed is random and named
in every failure; GHOSTSENT_FAULT_SEED=N replays one. scripts/fault_soak.py runs these for longer."""
from __future__ import annotations

import os
import random

import scenarios

SEED = int(os.environ.get("GHOSTSENT_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))


def test_random_kills_and_interrupts_then_resume(tmp_path):
    scenarios.kill_and_resume(tmp_path, SEED, lines=4000, max_kills=6)


def test_random_kills_with_workers_then_resume(tmp_path):
    """The same with --workers 2 (chunks tagged in a worker process and in the main one): a kill -9 or
    Ctrl-C at any moment leaves what one process leaves, and the resumed result is one process's."""
    scenarios.kill_and_resume(tmp_path, SEED + 2, lines=4000, max_kills=4, workers=2)


def test_a_killed_worker_stops_the_run_in_one_line_and_resume_finishes_it(tmp_path):
    """kill -9 of a --workers process (the out-of-memory killer's way): one error line, exit 3, state
    consistent, resumable — not a run that waits forever for the chunk the dead worker held."""
    assert scenarios.worker_killed_then_resume(tmp_path, SEED + 3) < 30


def test_random_kills_during_insert_in_place_then_rerun(tmp_path):
    scenarios.insert_kill_rerun(tmp_path, SEED + 1, files=40, rounds=3)
