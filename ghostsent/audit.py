"""Detection runs: test one or many identifiers against a model, with controls, corrections and a verdict.

`ghostsent probe`, `ppl-test` and `audit` all go through `run_detection`, so a single identifier and a
platform's thousands get the same statistics:
- per identifier: last-k probe p (Bonferroni over its probes) and perplexity rank p, combined by
  Bonferroni, then corrected for the identifier's history of tests (its j-th test spends alpha/(j(j+1)));
- one combined answer (two or more identifiers): a rank-sum test of all member perplexity scores against
  the pooled nulls of their stratum (same word list, length and template; exact, or a Chernoff bound when
  too large), strata joined by a weighted Stouffer of their p-values;
- ONE family at level alpha: Holm over the identifiers and the combined answer, so running both kinds
  of test cannot double the false-detection rate;
- negative controls: fresh never-published passphrases run through exactly the same tests.
"""
from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ghostsent import probe as probe_mod
from ghostsent.errors import LedgerError
from ghostsent.passphrase import Ghost, draw_words
from ghostsent.perplexity import rank_against, score_set
from ghostsent.stats import (bonferroni, combine_strata, fit_tail, format_p, history_weight, holm, ks_uniform,
                             rank_sum_test)
from ghostsent.targets.base import Target
from ghostsent.wordlists import WordList, find_wordlist, load_wordlist

DEFAULT_ALPHA = 1e-3
DEFAULT_CONTROLS = 5

NOT_PROVEN = (
    "A detection shows the model was trained on (or retrieves) text carrying the ghost sentence. It does "
    "not show which documents were used, how often, or whether the use was lawful. A non-detection does "
    "not prove the text was not used: a ghost seen only a few times may not be memorised."
)


def wordlist_for(ident: Any, override: str | None = None) -> WordList:
    """The identifier's exact word list; p-values are only valid for the list it was drawn from. Found by
    the recorded SHA-256 among the shipped and legacy lists (so identifiers drawn from an older version
    of a shipped list still test), else by the recorded name or path, or `override`."""
    wl = load_wordlist(override) if override else find_wordlist(ident.wordlist_sha256, ident.wordlist_name)
    if wl.sha256 != ident.wordlist_sha256:
        raise LedgerError(
            f"identifier {ident.id}: word list {wl.name!r} has sha256 {wl.sha256[:12]}…, but the identifier "
            f"was drawn from {ident.wordlist_sha256[:12]}…; the original list is needed", hint="wordlist")
    return wl


@dataclass
class Subject:
    """One thing under test: a ledger identifier (role member) or a fresh control passphrase."""

    key: str
    role: str            # "member" or "control"
    ghost: Ghost
    wordlist: WordList
    owner: str | None = None


@dataclass
class DetectionSettings:
    tests: tuple[str, ...] = ("probe", "ppl")
    ks: tuple[int, ...] = probe_mod.DEFAULT_KS
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
class DetectionResult:
    kind: str
    model: dict[str, Any]
    reference: dict[str, Any] | None
    settings: dict[str, Any]
    subjects: list[dict[str, Any]] = field(default_factory=list)
    combined: dict[str, Any] = field(default_factory=dict)
    controls: dict[str, Any] = field(default_factory=dict)
    null_scores: dict[str, list[float]] = field(default_factory=dict)   # per stratum, for plots
    scoring_order: dict[str, list[int]] = field(default_factory=dict)  # per stratum: candidate scored j-th
    disclosures: list[dict[str, Any]] = field(default_factory=list)    # words shown, per member and endpoint
    verdict: str = ""
    detected: bool = False
    warnings: list[str] = field(default_factory=list)
    started_at: str = ""
    seconds: float = 0.0
    status: str = "complete"

    def members(self) -> list[dict[str, Any]]:
        return [s for s in self.subjects if s["role"] == "member"]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _stratum(s: Subject) -> str:
    return f"{s.wordlist.sha256[:12]}|{len(s.ghost.words)}|{s.ghost.template}"


def endpoint(target: Target) -> str:
    return target.endpoint()


def disclosures(target: Target, reference: Target | None, members: Sequence[Subject],
                settings: DetectionSettings) -> list[dict[str, Any]]:
    """Which words of each member a run shows to whom: a probe shows all but the last min(k) words, a
    perplexity test every word (to the reference model too)."""
    out = []
    for s in members:
        n = len(s.ghost.words)
        for test in settings.tests:
            words = list(range(n)) if test == "ppl" else list(range(n - min(settings.ks)))
            for t in (target, reference) if test == "ppl" else (target,):
                if t is not None:
                    out.append({"identifier": s.key, "endpoint": endpoint(t), "via": test, "words": words})
    return out


def make_controls(subjects: Sequence[Subject], n: int, rng: random.Random | None) -> list[Subject]:
    """n fresh passphrases per stratum of the members, drawn exactly like them and never published."""
    out: list[Subject] = []
    seen: dict[str, Subject] = {}
    for s in subjects:
        seen.setdefault(_stratum(s), s)
    for st, s in seen.items():
        for i in range(n):
            g = s.ghost.with_words(draw_words(s.wordlist, len(s.ghost.words), rng))
            out.append(Subject(f"control-{len(out) + 1}", "control", g, s.wordlist))
    return out


def run_detection(
    target: Target,
    members: Sequence[Subject],
    settings: DetectionSettings,
    reference: Target | None = None,
    kind: str = "audit",
    progress: bool = False,
    on_subject: Callable[[dict[str, Any]], None] | None = None,
    test_numbers: Mapping[str, int] | None = None,
) -> DetectionResult:
    """Run the chosen tests on members and controls. Interrupting keeps what finished (status partial).

    `test_numbers[key]` says which test of its identifier this is (1 = first; from the ledger, see
    ghostsent.history); a member without one is treated as tested only this once.
    """
    t0 = time.time()
    rng = random.Random(settings.seed) if settings.seed is not None else None
    controls = make_controls(members, settings.controls, rng)
    res = DetectionResult(
        kind=kind,
        model=target.describe(),
        reference=reference.describe() if reference else None,
        settings=settings.to_dict(),
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        disclosures=disclosures(target, reference, members, settings),
    )
    res.warnings.append(probe_mod.WARNING)
    everyone = [*members, *controls]
    rows: dict[str, dict[str, Any]] = {
        s.key: {"key": s.key, "role": s.role, "owner": s.owner, "ghost_text": s.ghost.text,
                "wordlist": s.wordlist.name, "vocab_size": s.wordlist.size}
        for s in everyone
    }
    for s in members:
        rows[s.key]["test_number"] = int((test_numbers or {}).get(s.key, 0)) or None
    try:
        if "ppl" in settings.tests:
            _run_ppl(target, reference, everyone, settings, rng, rows, res, progress)
        if "probe" in settings.tests:
            results = probe_mod.run_probes(
                target, [(s.ghost, s.wordlist.size) for s in everyone], settings.ks, settings.samples,
                settings.temperature, seed=settings.seed or 0, modes=settings.modes, rng=rng,
            )
            for s, pr in zip(everyone, results):
                rows[s.key]["probe"] = pr.to_dict()
                if on_subject:
                    on_subject(rows[s.key])
    except KeyboardInterrupt:
        res.status = "partial"
    res.subjects = list(rows.values())
    _summarise(res, settings)
    res.seconds = round(time.time() - t0, 2)
    return res


def _run_ppl(target, reference, everyone, settings, rng, rows, res, progress) -> None:
    by_stratum: dict[str, list[Subject]] = defaultdict(list)
    for s in everyone:
        by_stratum[_stratum(s)].append(s)
    for st, subs in by_stratum.items():
        # One null set per stratum, shared by every identifier in it: each p-value stays exact (its
        # identifier is exchangeable with the nulls) and Holm/rank-sum hold under the dependence.
        base = subs[0]
        nulls = [base.ghost.with_words(draw_words(base.wordlist, len(base.ghost.words), rng)) for _ in range(settings.n_nulls)]
        scored = score_set(target, [s.ghost for s in subs] + nulls, reference, progress=progress, rng=rng)
        k = len(subs)
        sub_part, null_part = scored.split(k)
        res.null_scores[st] = null_part.score.tolist()
        res.scoring_order[st] = scored.order
        position = {c: j for j, c in enumerate(scored.order)}
        tail = fit_tail(null_part.score)
        for i, s in enumerate(subs):
            pr = rank_against(s.ghost, sub_part, i, null_part, {"stratum": st, "scored_at": position[i]}, tail)
            rows[s.key]["ppl"] = pr.to_dict()


def _weight(r: dict[str, Any]) -> float:
    return history_weight(r["test_number"]) if r.get("test_number") else 1.0


def _summarise(res: DetectionResult, settings: DetectionSettings) -> None:
    members = [r for r in res.subjects if r["role"] == "member"]
    for r in res.subjects:
        ps = [r[t]["p_value"] for t in ("probe", "ppl") if t in r]
        r["p_value"] = bonferroni(ps) if ps else None
        if ps:
            r["evidence"] = min((t for t in ("probe", "ppl") if t in r), key=lambda t: r[t]["p_value"])
    for r in members:
        if r["p_value"] is not None:
            r["p_history"] = min(1.0, r["p_value"] / _weight(r))
    _controls(res, settings)
    res.combined = _combined(members, res.null_scores, settings)
    _family(res, members, settings)
    res.verdict = _verdict(res, members, settings)
    _warnings(res, members, settings)


def _controls(res: DetectionResult, settings: DetectionSettings) -> None:
    controls = [r for r in res.subjects if r["role"] == "control"]
    for test in ("probe", "ppl"):
        cps = [r[test]["p_value"] for r in controls if test in r]
        if not cps:
            continue
        c: dict[str, Any] = {"n": len(cps), "p_values": cps, "flagged": sum(p < settings.alpha for p in cps)}
        if test == "probe":
            c["completed"] = sum(1 for r in controls if r["probe"]["completed"])
        elif len(cps) >= 5:
            # Calibration only where it means something: rank p-values are uniform under H0; probe
            # p-values are a bound that is almost always 1, so a KS test on them says nothing.
            c["ks_uniform_p"] = ks_uniform(cps)
        res.controls[test] = c


def _combined(members: list[dict[str, Any]], null_scores: dict[str, list[float]],
              settings: DetectionSettings) -> dict[str, Any]:
    """The joint perplexity answer over two or more identifiers, and (for reading) the probe family."""
    comb: dict[str, Any] = {"n_members": len(members), "p_value": None}
    ppl_members = [r for r in members if "ppl" in r]
    if len(ppl_members) >= 2:
        parts = []
        for st, nulls in null_scores.items():
            xs = [r["ppl"]["score"] for r in ppl_members if r["ppl"]["stratum"] == st]
            if xs:
                rs = rank_sum_test(xs, nulls)
                parts.append({"stratum": st, "n_members": len(xs), "n_nulls": len(nulls), "z": rs.z,
                              "p_value": rs.p_value, "method": rs.method, "non_finite": rs.non_finite})
        if len(parts) == 1:
            comb["ppl_rank_sum"] = parts[0]
        elif parts:
            z, p = combine_strata([x["p_value"] for x in parts], [x["n_members"] ** 0.5 for x in parts])
            comb["ppl_rank_sum"] = {"strata": parts, "z": z, "p_value": p,
                                    "method": "weighted Stouffer of the strata's p-values"}
        if "ppl_rank_sum" in comb:
            comb["p_value"] = comb["ppl_rank_sum"]["p_value"]
            comb["p_history"] = min(1.0, comb["p_value"] / min(_weight(r) for r in ppl_members))
    probe_members = [r for r in members if "probe" in r]
    if probe_members:
        comb["probe_family"] = {"p_value": bonferroni([r["probe"]["p_value"] for r in probe_members]),
                                "completed": sum(1 for r in probe_members if r["probe"]["completed"])}
    return comb


def _family(res: DetectionResult, members: list[dict[str, Any]], settings: DetectionSettings) -> None:
    """One Holm family at level alpha: every identifier, plus the combined answer when there is one."""
    tested = [r for r in members if r.get("p_history") is not None]
    family = [r["p_history"] for r in tested]
    comb = res.combined
    if comb.get("p_history") is not None:
        family.append(comb["p_history"])
    adjusted = holm(family) if family else []
    for r, adj in zip(tested, adjusted):
        r["p_holm"] = adj
        r["detected"] = adj < settings.alpha
    if comb.get("p_history") is not None:
        comb["p_holm"] = adjusted[-1]
        comb["detected"] = adjusted[-1] < settings.alpha
    comb["family_size"] = len(family)
    res.detected = any(a < settings.alpha for a in adjusted)


def _verdict(res: DetectionResult, members: list[dict[str, Any]], settings: DetectionSettings) -> str:
    model = res.model.get("spec", "the model")
    comb = res.combined
    hits = [r for r in members if r.get("detected")]
    a = f"threshold {settings.alpha:g}"
    if hits:
        best = min(hits, key=lambda r: r["p_holm"])
        by_probe = [r for r in hits if r.get("evidence") == "probe"]
        if len(by_probe) == len(hits):
            what = f"reproduces held-out words of {len(hits)} of {len(members)} ghost sentence(s) far beyond chance"
        elif not by_probe:
            what = (f"ranks {len(hits)} of {len(members)} ghost sentence(s) as more likely than fresh passphrases "
                    "drawn the same way (perplexity rank test)")
        else:
            what = (f"reproduces held-out words of {len(by_probe)} and ranks {len(hits) - len(by_probe)} more as "
                    f"more likely than fresh passphrases, of {len(members)} ghost sentence(s)")
        text = f"DETECTED: {model} {what} (best p = {format_p(best['p_holm'])} after corrections, {a})."
    elif comb.get("detected"):
        text = (f"DETECTED (jointly): across {len(members)} ghost sentences {model} prefers them over fresh "
                f"passphrases (combined p = {format_p(comb['p_holm'])} after corrections, {a}), "
                "though no single one is significant alone.")
    else:
        best = min((r["p_holm"] for r in members if "p_holm" in r), default=1.0)
        joint = f", combined p = {format_p(comb['p_holm'])}" if "p_holm" in comb else ""
        text = (f"NOT DETECTED: no evidence that {model} memorised these ghost sentence(s) "
                f"(smallest corrected p = {format_p(best)}{joint}).")
    return text + (" (Run interrupted: partial results.)" if res.status == "partial" else "")


def _warnings(res: DetectionResult, members: list[dict[str, Any]], settings: DetectionSettings) -> None:
    res.warnings.append(NOT_PROVEN)
    retests = [r for r in members if (r.get("test_number") or 1) > 1]
    if retests:
        worst = max(r["test_number"] for r in retests)
        res.warnings.append(
            f"{len(retests)} identifier(s) had been tested before (up to test {worst}): the j-th test of an "
            "identifier is held to alpha/(j(j+1)), so re-testing cannot manufacture significance "
            "(docs/statistics.md, section 4).")
    floor = ppl_floor(res, members, settings)
    if floor is not None and floor[0] >= settings.alpha:
        family = res.combined.get("family_size") or len(members)
        factors = ([f"Holm over {family} tests"] if family > 1 else []) + \
            (["both the probe and the perplexity test"] if len(settings.tests) > 1 else []) + ["the history share"]
        res.warnings.append(
            f"With {settings.n_nulls} nulls no single identifier can reach p < {settings.alpha:g} after the "
            f"corrections ({', '.join(factors)}): the smallest possible is {floor[0]:.3g}; use --nulls {floor[1]} "
            "or more for per-identifier answers." + (" The combined test is not limited so." if "p_holm" in res.combined else ""))
    bad = sum(1 for r in res.subjects if "ppl" in r and not r["ppl"]["ghost_finite"])
    nonfinite = sum(int(np.sum(~np.isfinite(np.asarray(v, dtype=float)))) for v in res.null_scores.values())
    if bad or nonfinite:
        res.warnings.append(
            f"Non-finite scores (NaN/inf): {nonfinite} null(s), each counted as beating every ghost, and {bad} "
            "identifier/control score(s), each given p = 1. Check the model's numeric precision or the API.")
    flagged = sum(c.get("flagged", 0) for c in res.controls.values())
    if flagged:
        res.warnings.append(f"{flagged} control passphrase test(s) fell below the threshold: treat results with caution.")


def ppl_floor(res: DetectionResult, members: list[dict[str, Any]],
              settings: DetectionSettings) -> tuple[float, int] | None:
    """(smallest corrected p any identifier could reach with these nulls, nulls needed to go below alpha)."""
    if "ppl" not in settings.tests or not members:
        return None
    factor = res.combined.get("family_size") or len(members)
    factor *= len(settings.tests) / max(_weight(r) for r in members)
    floor = factor / (settings.n_nulls + 1)
    return floor, int(math.ceil(factor / settings.alpha))


def subjects_from_ledger(idents: Sequence[Any], wordlist_override: str | None = None) -> list[Subject]:
    return [Subject(i.id, "member", i.ghost, wordlist_for(i, wordlist_override), i.owner) for i in idents]


def store(ledger: Any, res: DetectionResult) -> int:
    """Write the run and every prompt, reply, score and p-value into the ledger, in one transaction."""
    summary = {"verdict": res.verdict, "detected": res.detected, "combined": res.combined,
               "controls": {k: {kk: vv for kk, vv in v.items() if kk != "p_values"} for k, v in res.controls.items()},
               "seconds": res.seconds}
    with ledger.transaction():
        run_id = ledger.add_run(res.kind, res.model, {**res.settings, "reference": res.reference}, summary, status=res.status)
        records = []
        for r in res.subjects:
            ident = r["key"] if r["role"] == "member" else None
            if "ppl" in r:
                records.append({"identifier_id": ident, "role": r["role"], "test": "ppl", "prompt": None, "reply": None,
                                "score": r["ppl"]["score"], "p_value": r["ppl"]["p_value"],
                                "details": {k: v for k, v in r["ppl"].items() if k != "null_scores"} | {"ghost_text": r["ghost_text"]}})
            if "probe" in r:
                for pr in r["probe"]["records"]:
                    records.append({"identifier_id": ident, "role": r["role"], "test": "probe",
                                    "prompt": pr["prompt"] if isinstance(pr["prompt"], str) else _json(pr["prompt"]),
                                    "reply": pr["reply"], "score": float(pr["matches"]), "p_value": pr["p_value"],
                                    "details": {"k": pr["k"], "mode": pr["mode"], "places": pr["places"],
                                                "held_out": pr["held_out"], "ghost_text": r["ghost_text"]}})
        ledger.add_run_records(run_id, records)
    return run_id


def _json(x: Any) -> str:
    import json

    return json.dumps(x, ensure_ascii=False)
