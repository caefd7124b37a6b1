"""The detection tests, in one table: a new test (for example a word-rank test) is one more entry.

Everything that handles tests goes through TESTS: the engine runs them (in table order) and combines
their p-values, the session checks the capabilities they need and logs what they show, the ledger gets
their records, reports and the CLI print their one-line summaries. A test implements DetectionTest:

    name, title             how options, JSON and reports call it
    needs_logprobs          the target (and reference) must pass the log-probability capability check
    shown_words(...)        which passphrase words it shows the model (the disclosure log)
    run(state)              puts its result (with a `p_value` and `to_dict()`) in each subject's outcomes
    combine(...)            its part of the answer over all members (in the Holm family or for reading)
    control_summary(...)    how the controls fared
    ledger_records(...)     what the ledger keeps of one subject's result
    summary(...)            one line for people
"""
from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from ghostsent.detection import probe as probe_mod
from ghostsent.detection import rank as rank_mod
from ghostsent.detection.perplexity import rank_against, score_set
from ghostsent.detection.pooled import pooled_rank_sum
from ghostsent.detection.results import (Combined, ControlSummary, DetectionSettings, ProbeFamily, SubjectResult)
from ghostsent.detection.subjects import Subject
from ghostsent.errors import InputError
from ghostsent.ledger.records import RunRecord
from ghostsent.stats import bonferroni, fit_tail, format_p, ks_uniform
from ghostsent.targets.base import Target


@dataclass
class RunState:
    """One run while its tests execute: inputs, and the per-subject results the tests fill in."""

    target: Target
    reference: Target | None
    subjects: list[Subject]                      # members first, then controls
    rows: dict[str, SubjectResult]
    settings: DetectionSettings
    rng: random.Random | None
    progress: bool = False
    null_scores: dict[str, list[float]] = field(default_factory=dict)
    scoring_order: dict[str, list[int]] = field(default_factory=dict)
    null_sets: dict[str, Any] = field(default_factory=dict)      # stratum -> the nulls' ScoredSet


class DetectionTest(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    needs_logprobs: ClassVar[bool] = False
    shows_reference: ClassVar[bool] = False    # the reference model is shown the words too

    @abstractmethod
    def shown_words(self, n_words: int, settings: DetectionSettings) -> list[int]: ...

    @abstractmethod
    def run(self, state: RunState) -> None: ...

    def combine(self, members: list[SubjectResult], state: RunState, combined: Combined) -> None:  # noqa: B027
        """Fill this test's part of the combined answer (default: none)."""

    def control_summary(self, controls: list[SubjectResult], alpha: float) -> ControlSummary | None:
        ps = [c.outcomes[self.name].p_value for c in controls if self.name in c.outcomes]
        return ControlSummary(len(ps), ps, sum(p < alpha for p in ps)) if ps else None

    @abstractmethod
    def ledger_records(self, subject: SubjectResult, identifier_id: str | None) -> list[RunRecord]: ...

    @abstractmethod
    def summary(self, outcome: Any) -> str: ...


class ProbeTest(DetectionTest):
    """The last-k probe (probe.py): a valid upper bound, through any text interface."""

    name, title = "probe", "last-k probe"

    def shown_words(self, n_words: int, settings: DetectionSettings) -> list[int]:
        return list(range(n_words - min(settings.ks)))

    def run(self, state: RunState) -> None:
        s = state.settings
        results = probe_mod.run_probes(state.target, [(x.ghost, x.wordlist.size) for x in state.subjects], s.ks,
                                       s.samples, s.temperature, seed=s.seed or 0, modes=s.modes, rng=state.rng,
                                       leads=[x.lead for x in state.subjects])
        for x, pr in zip(state.subjects, results):
            state.rows[x.key].outcomes[self.name] = pr

    def combine(self, members: list[SubjectResult], state: RunState, combined: Combined) -> None:
        probes = [m.probe for m in members if m.probe is not None]
        if probes:
            combined.probe_family = ProbeFamily(bonferroni([p.p_value for p in probes]),
                                                sum(1 for p in probes if p.completed))

    def control_summary(self, controls: list[SubjectResult], alpha: float) -> ControlSummary | None:
        c = super().control_summary(controls, alpha)
        if c is not None:
            c.completed = sum(1 for x in controls if x.probe is not None and x.probe.completed)
        return c

    def ledger_records(self, subject: SubjectResult, identifier_id: str | None) -> list[RunRecord]:
        return [RunRecord(identifier_id, subject.role, "probe",
                          r.prompt if isinstance(r.prompt, str) else json.dumps(r.prompt, ensure_ascii=False),
                          r.reply, float(r.matches), r.p_value,
                          {"k": r.k, "mode": r.mode, "sample": r.sample, "places": r.places, "held_out": r.held_out,
                           "counted": r.counted, "refused": r.refused, "ghost_text": subject.ghost_text})
                for r in subject.probe.records]

    def summary(self, outcome: Any) -> str:
        refused = f", {outcome.refusals} refusal(s)" if outcome.refusals else ""
        return f"probe p={format_p(outcome.p_value)}{' (completed)' if outcome.completed else ''}{refused}"


class PplTest(DetectionTest):
    """The perplexity rank test (perplexity.py): exact, one null set per stratum shared by its subjects."""

    name, title = "ppl", "perplexity test"
    needs_logprobs = True
    shows_reference = True

    def shown_words(self, n_words: int, settings: DetectionSettings) -> list[int]:
        return list(range(n_words))

    def run(self, state: RunState) -> None:
        by_stratum: dict[str, list[Subject]] = defaultdict(list)
        for x in state.subjects:
            by_stratum[x.stratum].append(x)
        for st, subs in by_stratum.items():
            # One null set per stratum, shared by every subject in it: each p-value stays exact (its
            # identifier is exchangeable with the nulls) and Holm/rank-sum hold under the dependence.
            nulls = [subs[0].fresh(state.rng) for _ in range(state.settings.n_nulls)]
            scored = score_set(state.target, [x.ghost for x in subs] + nulls, state.reference,
                               progress=state.progress, rng=state.rng)
            sub_part, null_part = scored.split(len(subs))
            state.null_scores[st] = null_part.score.tolist()
            state.null_sets[st] = null_part
            state.scoring_order[st] = scored.order
            position = {c: j for j, c in enumerate(scored.order)}
            tail = fit_tail(null_part.score)
            for i, x in enumerate(subs):
                state.rows[x.key].outcomes[self.name] = rank_against(x.ghost, sub_part, i, null_part, tail,
                                                                     stratum=st, scored_at=position[i])

    def combine(self, members: list[SubjectResult], state: RunState, combined: Combined) -> None:
        """Over two or more identifiers: the pooled rank-sum test, one more member of the Holm family."""
        scored = [m for m in members if m.ppl is not None]
        if len(scored) < 2:
            return
        by_stratum: dict[str, list[float]] = defaultdict(list)
        for m in scored:
            by_stratum[m.ppl.stratum].append(m.ppl.score)
        combined.rank_sum = pooled_rank_sum(by_stratum, state.null_scores)
        if combined.rank_sum is not None:
            combined.p_value = combined.rank_sum.p_value

    def control_summary(self, controls: list[SubjectResult], alpha: float) -> ControlSummary | None:
        c = super().control_summary(controls, alpha)
        if c is not None and c.n >= 5:
            # Calibration only where it means something: rank p-values are uniform under H0; probe
            # p-values are a bound that is almost always 1, so a KS test on them says nothing.
            c.ks_uniform_p = ks_uniform(c.p_values)
        return c

    def ledger_records(self, subject: SubjectResult, identifier_id: str | None) -> list[RunRecord]:
        details = {k: v for k, v in subject.ppl.to_dict().items() if k != "null_scores"}
        return [RunRecord(identifier_id, subject.role, "ppl", None, None, subject.ppl.score, subject.ppl.p_value,
                          details | {"ghost_text": subject.ghost_text})]

    def summary(self, outcome: Any) -> str:
        return (f"ppl rank {outcome.rank.rank}/{outcome.rank.n_nulls + 1} p={format_p(outcome.p_value)} "
                f"exposure {outcome.exposure:.1f} bits (at most {np.log2(outcome.rank.n_nulls + 1):.1f})")


class RankTest(DetectionTest):
    """The word-rank test (rank.py): exact per identifier without nulls, through the whole next-token
    distribution of a local model or the top-N log-probabilities of an API (completions or chat)."""

    name, title = "rank", "word-rank test"

    def shown_words(self, n_words: int, settings: DetectionSettings) -> list[int]:
        return list(range(n_words - 1))   # position j shows words 0..j-1; the last word is never shown

    def run(self, state: RunState) -> None:
        s = state.settings
        by_list: dict[str, list[Subject]] = defaultdict(list)
        for x in state.subjects:
            by_list[x.wordlist.sha256].append(x)
        for subs in by_list.values():
            results = rank_mod.rank_tests(state.target, [x.ghost for x in subs], subs[0].wordlist.words,
                                          mode=s.rank_mode, top_n=s.top_n)
            for x, r in zip(subs, results):
                state.rows[x.key].outcomes[self.name] = r

    def ledger_records(self, subject: SubjectResult, identifier_id: str | None) -> list[RunRecord]:
        r = subject.word_rank
        prompts = [p if isinstance(p, str) else json.dumps(p, ensure_ascii=False) for p in r.prompts]
        return [RunRecord(identifier_id, subject.role, "rank", json.dumps(prompts, ensure_ascii=False) if prompts else None,
                          None, float(sum(r.at_or_above)), r.p_value, r.to_dict() | {"ghost_text": subject.ghost_text})]

    def summary(self, outcome: Any) -> str:
        top = f" top-{outcome.top_n}" if outcome.top_n else ""
        how = "" if outcome.combiner == "fisher" else f", {outcome.combiner}"
        refused = f", {outcome.refusals} replies refused" if outcome.refusals else ""
        return (f"rank p={format_p(outcome.p_value)} ({outcome.first_place}/{len(outcome.positions)} words "
                f"ranked first, {outcome.mode}{top}{how}{refused})")


# Run order: the perplexity test first (it draws the nulls), then the probes, then the word-rank test.
TESTS: dict[str, DetectionTest] = {t.name: t for t in (PplTest(), ProbeTest(), RankTest())}


def chosen(names: Sequence[str]) -> list[DetectionTest]:
    """The tests named, in run order; InputError for an unknown name."""
    unknown = [n for n in names if n not in TESTS]
    if unknown:
        raise InputError(f"unknown test {unknown[0]!r} (choose from {', '.join(TESTS)})")
    return [t for n, t in TESTS.items() if n in names]
