"""From p-values to a verdict: pure functions, numbers in, decision and words out.

One family at level alpha (docs/statistics.md, sections 3-4):
- per identifier: its tests' p-values combined by Bonferroni, then divided by its history share (its
  j-th test spends alpha/(j(j+1)): stats.history_weight);
- the joint answer (the pooled rank-sum test, over two or more identifiers) divided by the smallest
  history share among the identifiers in it;
- Holm over all of them: DETECTED iff some adjusted p is below alpha. Running several kinds of test, or
  many identifiers, cannot inflate the false-detection rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from ghostsent.stats import bonferroni, format_p, history_weight, holm

NOT_PROVEN = (
    "A detection shows the model was trained on (or retrieves) text carrying the ghost sentence. It does "
    "not show which documents were used, how often, or whether the use was lawful. A non-detection does "
    "not prove the text was not used: a ghost seen only a few times may not be memorised."
)
TIE_ORDER = ("probe", "rank", "ppl")  # the evidence named on a tie of p-values


def weight(test_number: int | None) -> float:
    """The history share of an identifier's test (1 for a test not numbered by the ledger)."""
    return history_weight(test_number) if test_number else 1.0


def combine_tests(p_by_test: Mapping[str, float]) -> tuple[float | None, str | None]:
    """(Bonferroni over one subject's tests, the test with the smallest p), or (None, None)."""
    if not p_by_test:
        return None, None
    names = sorted(p_by_test, key=lambda t: (TIE_ORDER.index(t) if t in TIE_ORDER else len(TIE_ORDER), t))
    return bonferroni([p_by_test[t] for t in names]), min(names, key=lambda t: p_by_test[t])


@dataclass(frozen=True)
class Evidence:
    """One member's numbers: each test's p, which test of the identifier this is, and whether it is
    part of the joint answer."""

    key: str
    p_by_test: Mapping[str, float]
    test_number: int | None = None
    in_joint: bool = False


@dataclass(frozen=True)
class MemberDecision:
    key: str
    p_value: float | None
    evidence: str | None
    p_history: float | None
    p_holm: float | None
    detected: bool | None


@dataclass(frozen=True)
class Decision:
    members: tuple[MemberDecision, ...]
    joint_p_history: float | None
    joint_p_holm: float | None
    joint_detected: bool | None
    family_size: int
    detected: bool


def decide(members: Sequence[Evidence], joint_p: float | None, alpha: float) -> Decision:
    """The family's decision (see the module docstring)."""
    first = [(e, *combine_tests(e.p_by_test)) for e in members]
    hist = [None if p is None else min(1.0, p / weight(e.test_number)) for e, p, _ in first]
    joint_w = [weight(e.test_number) for e in members if e.in_joint]
    joint_hist = None if joint_p is None or not joint_w else min(1.0, joint_p / min(joint_w))
    family = [h for h in hist if h is not None] + ([joint_hist] if joint_hist is not None else [])
    adjusted = iter(holm(family) if family else [])
    decided = []
    for (e, p, evidence), h in zip(first, hist):
        adj = next(adjusted) if h is not None else None
        decided.append(MemberDecision(e.key, p, evidence, h, adj, None if adj is None else adj < alpha))
    joint_holm = next(adjusted, None) if joint_hist is not None else None
    joint_detected = None if joint_holm is None else joint_holm < alpha
    any_hit = any(m.detected for m in decided) or bool(joint_detected)
    return Decision(tuple(decided), joint_hist, joint_holm, joint_detected, len(family), any_hit)


def verdict_text(model: str, decision: Decision, alpha: float, partial: bool = False) -> str:
    """The one-line verdict a person reads first."""
    n = len(decision.members)
    hits = [m for m in decision.members if m.detected]
    a = f"threshold {alpha:g}"
    if hits:
        best = min(hits, key=lambda m: m.p_holm)
        by_probe = [m for m in hits if m.evidence == "probe"]
        by_rank = [m for m in hits if m.evidence == "rank"]
        if len(by_rank) == len(hits):
            what = (f"predicts the passphrase words of {len(hits)} of {n} ghost sentence(s) far beyond chance "
                    "(word-rank test)")
        elif len(by_probe) == len(hits):
            what = f"reproduces held-out words of {len(hits)} of {n} ghost sentence(s) far beyond chance"
        elif not by_probe:
            what = (f"ranks {len(hits)} of {n} ghost sentence(s) as more likely than fresh passphrases "
                    "drawn the same way (perplexity rank test)")
        else:
            what = (f"reproduces held-out words of {len(by_probe)} and ranks {len(hits) - len(by_probe)} more as "
                    f"more likely than fresh passphrases, of {n} ghost sentence(s)")
        text = f"DETECTED: {model} {what} (best p = {format_p(best.p_holm)} after corrections, {a})."
    elif decision.joint_detected:
        text = (f"DETECTED (jointly): across {n} ghost sentences {model} prefers them over fresh "
                f"passphrases (combined p = {format_p(decision.joint_p_holm)} after corrections, {a}), "
                "though no single one is significant alone.")
    else:
        best_p = min((m.p_holm for m in decision.members if m.p_holm is not None), default=1.0)
        joint = f", combined p = {format_p(decision.joint_p_holm)}" if decision.joint_p_holm is not None else ""
        text = (f"NOT DETECTED: no evidence that {model} memorised these ghost sentence(s) "
                f"(smallest corrected p = {format_p(best_p)}{joint}).")
    return text + (" (Run interrupted: partial results.)" if partial else "")


def ppl_floor(family_size: int, n_members: int, n_tests: int, test_numbers: Sequence[int | None],
              n_nulls: int, alpha: float) -> tuple[float, int]:
    """(smallest corrected p any identifier can reach with `n_nulls` nulls, nulls needed to go below
    alpha): rank 1 of n_nulls + 1, times Holm's factor, the tests' Bonferroni and the history share."""
    factor = (family_size or n_members) * n_tests / max(weight(n) for n in test_numbers)
    return factor / (n_nulls + 1), int(math.ceil(factor / alpha))


@dataclass(frozen=True)
class RunFacts:
    """The numbers the warnings depend on."""

    alpha: float
    test_numbers: tuple[int | None, ...]   # of the members
    family_size: int
    tests: tuple[str, ...]
    n_nulls: int
    has_joint: bool
    bad_scores: int                        # members/controls with a non-finite perplexity score
    nonfinite_nulls: int
    flagged_controls: int


def warnings(f: RunFacts) -> list[str]:
    """What a person must know beside the verdict (re-tests, the floor, odd scores, flagged controls)."""
    out = [NOT_PROVEN]
    retests = [n for n in f.test_numbers if (n or 1) > 1]
    if retests:
        out.append(f"{len(retests)} identifier(s) had been tested before (up to test {max(retests)}): the j-th "
                   "test of an identifier is held to alpha/(j(j+1)), so re-testing cannot manufacture "
                   "significance (docs/statistics.md, section 4).")
    if "ppl" in f.tests and f.test_numbers:
        floor, needed = ppl_floor(f.family_size, len(f.test_numbers), len(f.tests), f.test_numbers, f.n_nulls,
                                  f.alpha)
        if floor >= f.alpha:
            family = f.family_size or len(f.test_numbers)
            factors = ([f"Holm over {family} tests"] if family > 1 else []) + \
                (["both the probe and the perplexity test"] if len(f.tests) > 1 else []) + ["the history share"]
            out.append(f"With {f.n_nulls} nulls no single identifier can reach p < {f.alpha:g} after the "
                       f"corrections ({', '.join(factors)}): the smallest possible is {floor:.3g}; use {needed} "
                       "or more nulls for per-identifier answers."
                       + (" The combined test is not limited so." if f.has_joint else ""))
    if f.bad_scores or f.nonfinite_nulls:
        out.append(f"Non-finite scores (NaN/inf): {f.nonfinite_nulls} null(s), each counted as beating every "
                   f"ghost, and {f.bad_scores} identifier/control score(s), each given p = 1. Check the model's "
                   "numeric precision or the API.")
    if f.flagged_controls:
        out.append(f"{f.flagged_controls} control passphrase test(s) fell below the threshold: treat results "
                   "with caution.")
    return out
