"""The null harness in CI (reduced): an innocent model through every workflow must give a false-detection
rate at or below alpha (issue 7, section 2). The full run and its table: scripts/null_harness.py and
docs/statistics.md. Seeded, so the verdict is reproducible; a broken rule must be flagged, so the
harness is not blind."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "null_harness.py"
RUNS = 200
NULLS = 199   # coarser than the full run's 999, to keep CI fast; p < alpha stays attainable


def _harness():
    spec = importlib.util.spec_from_file_location("null_harness", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


harness = _harness()


@pytest.fixture(scope="module")
def rows():
    return {r.name: r for r in harness.run(RUNS, seed=20261128, nulls=NULLS)}


@pytest.mark.parametrize("name", [w.name for w in harness.WORKFLOWS if not w.self_check])
def test_innocent_model_false_detection_rate_is_at_most_alpha(rows, name):
    r = rows[name]
    assert r.runs == RUNS
    for a in harness.ALPHAS:
        assert r.excess_p(a) >= 0.01, (name, a, r.detected[a])


def test_the_harness_flags_a_two_alpha_rule(rows):
    r = rows["broken-rule"]
    assert not r.ok and r.rate(0.05) > 0.075


def test_table_lists_every_workflow(rows):
    text = harness.table(list(rows.values()))
    assert all(w.name in text for w in harness.WORKFLOWS)
    assert "flagged, as it must be" in text
