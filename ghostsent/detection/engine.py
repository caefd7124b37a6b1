"""Run the chosen tests on members and controls, then combine: the one path behind probe, ppl-test,
audit, the demo and the study (docs/statistics.md).

- per identifier: each test's p (registry.py), Bonferroni over its tests, corrected for its history;
- one joint answer over two or more identifiers (the pooled rank-sum, pooled.py);
- ONE family at level alpha (verdict.py): Holm over the identifiers and the joint answer;
- negative controls: fresh never-published passphrases run through exactly the same tests.

This is the engine only: it neither checks capabilities nor touches the ledger. The session
(session.py) numbers the tests, checks the target, runs this, stores and reports.
"""
from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from typing import Mapping, Sequence

import numpy as np

from ghostsent.detection import probe as probe_mod
from ghostsent.detection.registry import RunState, chosen
from ghostsent.detection.results import DetectionResult, DetectionSettings, Shown, SubjectResult
from ghostsent.detection.subjects import MEMBER, Subject, make_controls
from ghostsent.detection.verdict import Evidence, RunFacts, combine_tests, decide, verdict_text, warnings
from ghostsent.targets.base import Target


def disclosures(target: Target, reference: Target | None, members: Sequence[Subject],
                settings: DetectionSettings) -> list[Shown]:
    """Which words of each member a run shows to whom: each test says which (a probe all but the last
    min(k) words, a perplexity test every word, to the reference model too)."""
    out = []
    for s in members:
        for test in chosen(settings.tests):
            words = test.shown_words(len(s.ghost.words), settings)
            for t in (target, reference) if test.shows_reference else (target,):
                if t is not None:
                    out.append(Shown(s.key, t.endpoint(), test.name, words))
    return out


def _row(s: Subject, test_numbers: Mapping[str, int] | None) -> SubjectResult:
    number = int((test_numbers or {}).get(s.key, 0)) or None if s.role == MEMBER else None
    return SubjectResult(s.key, s.role, s.owner, s.ghost.text, s.wordlist.name, s.wordlist.size, number)


def run_detection(
    target: Target,
    members: Sequence[Subject],
    settings: DetectionSettings,
    reference: Target | None = None,
    kind: str = "audit",
    progress: bool = False,
    test_numbers: Mapping[str, int] | None = None,
    controls: Sequence[Subject] | None = None,
    rng: random.Random | None = None,
) -> DetectionResult:
    """Run the chosen tests on members and controls. Interrupting keeps what finished (status partial).

    `test_numbers[key]` says which test of its identifier this is (1 = first; from the ledger, see
    session.py); a member without one is treated as tested only this once. `controls` replaces the
    fresh controls (a study's never-inserted identifiers); `rng` the generator seeded from settings.seed.
    """
    t0 = time.time()
    rng = rng or (random.Random(settings.seed) if settings.seed is not None else None)
    controls = list(controls) if controls is not None else make_controls(members, settings.controls, rng)
    everyone = [*members, *controls]
    res = DetectionResult(kind, target.describe(), reference.describe() if reference else None, settings,
                          started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          disclosures=disclosures(target, reference, members, settings))
    res.warnings.append(probe_mod.WARNING)
    state = RunState(target, reference, everyone, {s.key: _row(s, test_numbers) for s in everyone}, settings, rng,
                     progress)
    try:
        for test in chosen(settings.tests):
            test.run(state)
    except KeyboardInterrupt:
        res.status = "partial"
    res.subjects = list(state.rows.values())
    res.null_scores, res.scoring_order, res.null_sets = state.null_scores, state.scoring_order, state.null_sets
    summarise(res, state)
    res.seconds = round(time.time() - t0, 2)
    return res


def summarise(res: DetectionResult, state: RunState) -> None:
    """Combine what the tests found: controls, the joint answer, the family, the verdict, warnings."""
    settings, tests = res.settings, chosen(res.settings.tests)
    members = res.members()
    res.combined.n_members = len(members)
    for t in tests:
        t.combine(members, state, res.combined)
        summary = t.control_summary([s for s in res.subjects if s.role != MEMBER], settings.alpha)
        if summary is not None:
            res.controls[t.name] = summary
    for s in res.subjects:
        s.p_value, s.evidence = combine_tests({n: o.p_value for n, o in s.outcomes.items()})
    evidence = [Evidence(m.key, {n: o.p_value for n, o in m.outcomes.items()}, m.test_number, m.ppl is not None)
                for m in members]
    d = decide(evidence, res.combined.p_value if res.combined.rank_sum is not None else None, settings.alpha)
    for m, md in zip(members, d.members):
        m.p_history, m.p_holm, m.detected = md.p_history, md.p_holm, md.detected
    c = res.combined
    c.p_history, c.p_holm, c.detected, c.family_size = d.joint_p_history, d.joint_p_holm, d.joint_detected, d.family_size
    res.detected = d.detected
    res.verdict = verdict_text(res.model.get("spec", "the model"), d, settings.alpha, res.status == "partial")
    res.warnings += warnings(RunFacts(
        settings.alpha, tuple(m.test_number for m in members), d.family_size, tuple(settings.tests),
        settings.n_nulls, d.joint_p_holm is not None,
        sum(1 for s in res.subjects if s.ppl is not None and not s.ppl.rank.ghost_finite),
        sum(int(np.sum(~np.isfinite(np.asarray(v, dtype=float)))) for v in res.null_scores.values()),
        sum(c.flagged for c in res.controls.values())))
