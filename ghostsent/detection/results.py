"""Typed results of a detection run. `to_dict()` only at the edges (JSON, reports, the ledger).

A run has settings, one SubjectResult per member or control (each test's own result under `outcomes`,
then the corrections), the combined answer over the members (Combined), a summary of the controls per
test (ControlSummary), what it showed whom (Shown), and the verdict.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ghostsent.detection.probe import DEFAULT_KS, ProbeResult
from ghostsent.detection.perplexity import PplResult

DEFAULT_ALPHA = 1e-3
DEFAULT_CONTROLS = 5


@dataclass
class DetectionSettings:
    tests: tuple[str, ...] = ("probe", "ppl")
    ks: tuple[int, ...] = DEFAULT_KS
    samples: int = 1
    temperature: float = 0.0
    modes: tuple[str, ...] | None = None
    n_nulls: int = 1000
    controls: int = DEFAULT_CONTROLS
    alpha: float = DEFAULT_ALPHA
    seed: int | None = None   # seeds nulls/controls for reproducible studies; None = CSPRNG

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class SubjectResult:
    """One member or control: each test's result, then its p-values after every correction."""

    key: str
    role: str
    owner: str | None
    ghost_text: str
    wordlist: str
    vocab_size: int
    test_number: int | None = None          # members: which test of the identifier this is (1 = first)
    outcomes: dict[str, Any] = field(default_factory=dict)   # test name -> ProbeResult | PplResult | ...
    p_value: float | None = None            # Bonferroni over its tests
    evidence: str | None = None             # the test that gave the smallest p
    p_history: float | None = None          # p_value / its history share (members)
    p_holm: float | None = None             # after Holm over the run's family
    detected: bool | None = None

    @property
    def probe(self) -> ProbeResult | None:
        return self.outcomes.get("probe")

    @property
    def ppl(self) -> PplResult | None:
        return self.outcomes.get("ppl")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "role": self.role, "owner": self.owner, "ghost_text": self.ghost_text,
                             "wordlist": self.wordlist, "vocab_size": self.vocab_size}
        if self.role == "member":
            d["test_number"] = self.test_number
        d.update({name: out.to_dict() for name, out in self.outcomes.items()})
        d["p_value"] = self.p_value
        for k in ("evidence", "p_history", "p_holm", "detected"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


@dataclass
class StratumRankSum:
    """The rank-sum test of one stratum's member scores against its nulls."""

    stratum: str
    n_members: int
    n_nulls: int
    z: float
    p_value: float
    method: str
    non_finite: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PooledRankSum:
    """The joint perplexity answer: one stratum's rank-sum test, or several joined (weighted Stouffer)."""

    parts: list[StratumRankSum]
    z: float
    p_value: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        if len(self.parts) == 1:
            return self.parts[0].to_dict()
        return {"strata": [p.to_dict() for p in self.parts], "z": self.z, "p_value": self.p_value,
                "method": self.method}


@dataclass
class ProbeFamily:
    """For reading only: the probes of all members (Bonferroni), and how many completed exactly."""

    p_value: float
    completed: int


@dataclass
class Combined:
    """The answer over all members: the pooled rank-sum test (when it exists it is one more member of
    the Holm family), and the probe family for reading."""

    n_members: int
    p_value: float | None = None
    rank_sum: PooledRankSum | None = None
    p_history: float | None = None
    probe_family: ProbeFamily | None = None
    family_size: int = 0
    p_holm: float | None = None
    detected: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"n_members": self.n_members, "p_value": self.p_value}
        if self.rank_sum is not None:
            d["ppl_rank_sum"] = self.rank_sum.to_dict()
            d["p_history"] = self.p_history
        if self.probe_family is not None:
            d["probe_family"] = asdict(self.probe_family)
        if self.p_holm is not None:
            d["p_holm"], d["detected"] = self.p_holm, self.detected
        d["family_size"] = self.family_size
        return d


@dataclass
class ControlSummary:
    """How the never-published control passphrases fared in one test."""

    n: int
    p_values: list[float]
    flagged: int                          # below the threshold
    completed: int | None = None          # probe: completed exactly
    ks_uniform_p: float | None = None     # ppl with >= 5 controls: KS test of uniformity

    def to_dict(self, with_p_values: bool = True) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        if not with_p_values:
            d.pop("p_values")
        return d


@dataclass
class Shown:
    """Which words of a member a run shows to whom (a disclosure)."""

    identifier: str
    endpoint: str
    via: str                 # the test
    words: list[int]         # 0-based indices of the passphrase words shown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DetectionResult:
    kind: str
    model: dict[str, Any]
    reference: dict[str, Any] | None
    settings: DetectionSettings
    subjects: list[SubjectResult] = field(default_factory=list)
    combined: Combined = field(default_factory=lambda: Combined(0))
    controls: dict[str, ControlSummary] = field(default_factory=dict)
    null_scores: dict[str, list[float]] = field(default_factory=dict)   # per stratum, for plots
    scoring_order: dict[str, list[int]] = field(default_factory=dict)  # per stratum: candidate scored j-th
    # per stratum, the nulls' target and reference scores (perplexity.ScoredSet): for callers that rank
    # against them otherwise (the study ranks the raw and the untouched NLL too); not serialised
    null_sets: dict[str, Any] = field(default_factory=dict, repr=False)
    disclosures: list[Shown] = field(default_factory=list)
    verdict: str = ""
    detected: bool = False
    warnings: list[str] = field(default_factory=list)
    started_at: str = ""
    seconds: float = 0.0
    status: str = "complete"

    def members(self) -> list[SubjectResult]:
        return [s for s in self.subjects if s.role == "member"]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "reference": self.reference,
                "settings": self.settings.to_dict(), "subjects": [s.to_dict() for s in self.subjects],
                "combined": self.combined.to_dict(),
                "controls": {t: c.to_dict() for t, c in self.controls.items()},
                "null_scores": self.null_scores, "scoring_order": self.scoring_order,
                "disclosures": [d.to_dict() for d in self.disclosures], "verdict": self.verdict,
                "detected": self.detected, "warnings": list(self.warnings), "started_at": self.started_at,
                "seconds": self.seconds, "status": self.status}
