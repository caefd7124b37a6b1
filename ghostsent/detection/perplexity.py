"""The perplexity test: rank the ghost's likelihood under the model among fresh passphrases.

Score = mean negative log-likelihood (nats per token) of the passphrase tokens given the ghost's prefix.
Every candidate shares the same context and a leading space, so tokenisation is comparable. Nulls are
fresh passphrases drawn exactly like the ghost (same list, length and template). Under H0 the ghost is
one more such draw, so its rank among the N+1 scores is uniform and p = rank/(N+1) is exact. That needs
every candidate scored the same way: they are scored in a random order (batching, API caches and drift
must not favour the ghost), non-finite scores count against the ghost, and a target's log-probabilities
are checked before any is trusted (targets/capability.py).

With a reference model (one released before the identifier existed), the score is target NLL minus
reference NLL. Word frequency makes some passphrases easy for every model; subtracting what an innocent
model thinks cancels most of that noise, which narrows the null and raises power. The p-value stays exact
because nulls get the same treatment.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ghostsent.passphrase import Ghost, draw_words
from ghostsent.stats import RankResult, TailExtrapolation, TailFit, approx_exposure, fit_tail, rank_test
from ghostsent.targets.base import Target
from ghostsent.targets.capability import require_logprobs
from ghostsent.wordlists import WordList

DEFAULT_NULLS = 1000


def candidate_nll(target: Target, ghosts: Sequence[Ghost], progress: bool = False) -> np.ndarray:
    """Mean NLL of each ghost's passphrase tokens given its prefix (lower = more familiar to the model).

    Candidates are grouped by prefix so the shared context is computed once per group. The target's
    log-probabilities must pass the capability check first (CapabilityError otherwise; cached per target).
    """
    require_logprobs(target)
    out = np.empty(len(ghosts), dtype=float)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(ghosts):
        groups[g.prefix].append(i)
    for prefix, idx in groups.items():
        scored = target.score(prefix, [" " + ghosts[i].passphrase for i in idx], progress=progress)
        for i, s in zip(idx, scored):
            out[i] = s.nll
    return out


def draw_nulls(ghost: Ghost, wordlist: WordList, n: int, rng: random.Random | None = None) -> list[Ghost]:
    """n fresh passphrases drawn exactly like the ghost: same list, length and template."""
    return [ghost.with_words(draw_words(wordlist, len(ghost.words), rng)) for _ in range(n)]



@dataclass
class PplResult:
    ghost_text: str
    score: float                      # target NLL (or target - reference)
    null_scores: np.ndarray
    rank: RankResult
    extrapolation: TailExtrapolation  # skew-normal model extrapolation: never part of a verdict
    target_nll: float
    reference_nll: float | None = None
    stratum: str | None = None        # which null set it was ranked against (a run has one per stratum)
    scored_at: int | None = None      # its place in the random scoring order
    reference: str | None = None      # the reference model's spec (ppl_test)

    @property
    def p_value(self) -> float:
        return self.rank.p_value

    @property
    def exposure(self) -> float:
        return self.rank.exposure

    def to_dict(self, include_nulls: bool = False) -> dict[str, Any]:
        ext = self.extrapolation
        finite = self.null_scores[np.isfinite(self.null_scores)]
        d = {
            "ghost_text": self.ghost_text,
            "score": self.score,
            "target_nll": self.target_nll,
            "reference_nll": self.reference_nll,
            "rank": self.rank.rank,
            "n_nulls": self.rank.n_nulls,
            "p_value": self.p_value,
            "exposure_bits": self.exposure,
            "max_exposure_bits": float(np.log2(self.rank.n_nulls + 1)),
            "non_finite_nulls": self.rank.non_finite_nulls,
            "ghost_finite": self.rank.ghost_finite,
            "model_extrapolation": {
                "label": "model extrapolation (skew-normal fitted to the nulls); not used for any verdict",
                "tail_p": ext.p_value, "exposure_bits": approx_exposure(ext.p_value), "fits": ext.fits,
                "ks_p": ext.ks_p, "tail_ratio": ext.tail_ratio, "note": ext.note,
            },
            "null_mean": float(np.nanmean(finite)) if len(finite) else float("nan"),
            "null_std": float(np.nanstd(finite)) if len(finite) else float("nan"),
            **{k: v for k, v in (("reference", self.reference), ("stratum", self.stratum),
                                 ("scored_at", self.scored_at)) if v is not None},
        }
        if include_nulls:
            d["null_scores"] = self.null_scores.tolist()
        return d


@dataclass
class ScoredSet:
    """Scores of a batch of ghosts (members, controls, nulls) under target and optional reference.

    `order[j]` is the index of the candidate scored j-th (a random permutation), kept for the record.
    """

    target: np.ndarray
    reference: np.ndarray | None
    order: list[int] = field(default_factory=list)

    @property
    def score(self) -> np.ndarray:
        return self.target if self.reference is None else self.target - self.reference

    def split(self, k: int) -> "tuple[ScoredSet, ScoredSet]":
        """The first k candidates and the rest (ghosts first, then their nulls, as scored together)."""
        ref = self.reference
        return (ScoredSet(self.target[:k], None if ref is None else ref[:k]),
                ScoredSet(self.target[k:], None if ref is None else ref[k:]))


def score_set(
    target: Target, ghosts: Sequence[Ghost], reference: Target | None = None, progress: bool = False,
    rng: random.Random | None = None,
) -> ScoredSet:
    """Score every candidate in one random order (CSPRNG unless `rng` is given; the same order for the
    reference), so no candidate's place in batches or requests depends on whether it is the ghost."""
    order = list(range(len(ghosts)))
    (rng or random.SystemRandom()).shuffle(order)
    shuffled = [ghosts[i] for i in order]

    def unshuffle(scores: np.ndarray) -> np.ndarray:
        out = np.empty(len(ghosts), dtype=float)
        out[order] = scores
        return out

    t = unshuffle(candidate_nll(target, shuffled, progress=progress))
    r = unshuffle(candidate_nll(reference, shuffled, progress=progress)) if reference is not None else None
    return ScoredSet(t, r, order)


def rank_against(
    ghost: Ghost, ghost_scores: ScoredSet, index: int, nulls: ScoredSet, tail: TailFit | None = None, **where: Any,
) -> PplResult:
    """The ghost at `index` of `ghost_scores` ranked against a scored null set (`tail`: the nulls' fit,
    when several ghosts share them; `where`: stratum, scored_at, reference)."""
    s = float(ghost_scores.score[index])
    ns = nulls.score
    return PplResult(
        ghost_text=ghost.text,
        score=s,
        null_scores=ns,
        rank=rank_test(s, ns),
        extrapolation=(tail or fit_tail(ns)).extrapolate(s),
        target_nll=float(ghost_scores.target[index]),
        reference_nll=None if ghost_scores.reference is None else float(ghost_scores.reference[index]),
        **where,
    )


def ppl_test(
    target: Target,
    ghost: Ghost,
    wordlist: WordList,
    n_nulls: int = DEFAULT_NULLS,
    reference: Target | None = None,
    rng: random.Random | None = None,
    progress: bool = False,
) -> PplResult:
    """Rank one ghost sentence against n_nulls fresh passphrases under `target` (minus `reference`).

    A single test: re-testing an identifier needs the ledger's history correction (detection/session.py).
    CapabilityError if a target's log-probabilities fail the capability check.
    """
    nulls = draw_nulls(ghost, wordlist, n_nulls, rng)
    scored = score_set(target, [ghost, *nulls], reference, progress=progress, rng=rng)
    ghost_part, null_part = scored.split(1)
    return rank_against(ghost, ghost_part, 0, null_part, reference=reference.spec if reference else None,
                        scored_at=scored.order.index(0))
