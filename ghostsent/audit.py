"""Detection runs: test one or many identifiers against a model, with controls, corrections and a verdict.

`ghostsent probe`, `ppl-test` and `audit` all go through `run_detection`, so a single identifier and a
platform's thousands get the same statistics:
- per identifier: last-k probe p (Bonferroni over its probes) and perplexity rank p, combined by
  Bonferroni; Holm across identifiers;
- one combined answer: a rank-sum test of all member perplexity scores against the pooled nulls of their
  stratum (same word list, length and template), strata joined by Stouffer's method;
- negative controls: fresh never-published passphrases run through exactly the same tests.
"""
from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import numpy as np

from ghostsent import probe as probe_mod
from ghostsent.errors import LedgerError
from ghostsent.passphrase import Ghost, draw_words
from ghostsent.perplexity import rank_against, score_set
from ghostsent.stats import bonferroni, format_p, holm, ks_uniform, rank_sum_test, stouffer
from ghostsent.targets.base import Target
from ghostsent.wordlists import WordList, load_wordlist

DEFAULT_ALPHA = 1e-3
DEFAULT_CONTROLS = 5

NOT_PROVEN = (
    "A detection shows the model was trained on (or retrieves) text carrying the ghost sentence. It does "
    "not show which documents were used, how often, or whether the use was lawful. A non-detection does "
    "not prove the text was not used: a ghost seen only a few times may not be memorised."
)


def wordlist_for(ident: Any, override: str | None = None) -> WordList:
    """The identifier's exact word list; p-values are only valid for the list it was drawn from."""
    wl = load_wordlist(override or ident.wordlist_name)
    if wl.sha256 != ident.wordlist_sha256:
        raise LedgerError(
            f"identifier {ident.id}: word list {wl.name!r} has sha256 {wl.sha256[:12]}…, but the identifier "
            f"was drawn from {ident.wordlist_sha256[:12]}…; pass --wordlist with the original list"
        )
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
) -> DetectionResult:
    """Run the chosen tests on members and controls. Interrupting keeps what finished (status partial)."""
    t0 = time.time()
    rng = random.Random(settings.seed) if settings.seed is not None else None
    controls = make_controls(members, settings.controls, rng)
    res = DetectionResult(
        kind=kind,
        model=target.describe(),
        reference=reference.describe() if reference else None,
        settings=settings.to_dict(),
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    res.warnings.append(probe_mod.WARNING)
    everyone = [*members, *controls]
    rows: dict[str, dict[str, Any]] = {
        s.key: {"key": s.key, "role": s.role, "owner": s.owner, "ghost_text": s.ghost.text,
                "wordlist": s.wordlist.name, "vocab_size": s.wordlist.size}
        for s in everyone
    }
    try:
        if "ppl" in settings.tests:
            _run_ppl(target, reference, everyone, settings, rng, rows, res, progress)
        if "probe" in settings.tests:
            results = probe_mod.run_probes(
                target, [(s.ghost, s.wordlist.size) for s in everyone], settings.ks, settings.samples,
                settings.temperature, seed=settings.seed or 0, modes=settings.modes,
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
        scored = score_set(target, [s.ghost for s in subs] + nulls, reference, progress=progress)
        k = len(subs)
        sub_part, null_part = scored.split(k)
        res.null_scores[st] = null_part.score.tolist()
        for i, s in enumerate(subs):
            pr = rank_against(s.ghost, sub_part, i, null_part, {"stratum": st})
            rows[s.key]["ppl"] = pr.to_dict()


def _summarise(res: DetectionResult, settings: DetectionSettings) -> None:
    members = [r for r in res.subjects if r["role"] == "member"]
    controls = [r for r in res.subjects if r["role"] == "control"]
    for r in res.subjects:
        ps = [r[t]["p_value"] for t in ("probe", "ppl") if t in r]
        r["p_value"] = bonferroni(ps) if ps else None
    if members and members[0].get("p_value") is not None:
        for r, adj in zip(members, holm([r["p_value"] for r in members])):
            r["p_holm"] = adj
            r["detected"] = adj < settings.alpha
    for test in ("probe", "ppl"):
        cps = [r[test]["p_value"] for r in controls if test in r]
        if not cps:
            continue
        c: dict[str, Any] = {"n": len(cps), "p_values": cps, "flagged": sum(p < settings.alpha for p in cps)}
        if test == "probe":
            c["completed"] = sum(1 for r in controls if r["probe"]["completed"])
        if len(cps) >= 5:
            c["ks_uniform_p"] = ks_uniform(cps)
        res.controls[test] = c
    # Combined evidence for the owner / platform.
    comb: dict[str, Any] = {"n_members": len(members)}
    ppl_members = [r for r in members if "ppl" in r]
    if ppl_members:
        zs, ws, parts = [], [], []
        for st, nulls in res.null_scores.items():
            xs = [r["ppl"]["score"] for r in ppl_members if r["ppl"]["stratum"] == st]
            if not xs:
                continue
            rs = rank_sum_test(xs, nulls)
            parts.append({"stratum": st, "n_members": len(xs), "n_nulls": len(nulls), "z": rs.z,
                          "p_value": rs.p_value, "method": rs.method})
            zs.append(rs.z)
            ws.append(np.sqrt(len(xs)))
        if len(parts) == 1:
            comb["ppl_rank_sum"] = parts[0]
        elif parts:
            z, p = stouffer(zs, ws)
            comb["ppl_rank_sum"] = {"strata": parts, "z": z, "p_value": p, "method": "stouffer"}
    probe_members = [r for r in members if "probe" in r]
    if probe_members:
        comb["probe_family"] = {"p_value": bonferroni([r["probe"]["p_value"] for r in probe_members]),
                                "completed": sum(1 for r in probe_members if r["probe"]["completed"])}
    family = [v["p_value"] for k, v in comb.items() if isinstance(v, dict) and "p_value" in v]
    comb["p_value"] = bonferroni(family) if family else None
    res.combined = comb
    any_member = any(r.get("detected") for r in members)
    comb_det = comb["p_value"] is not None and comb["p_value"] < settings.alpha
    res.detected = bool(any_member or comb_det)
    model = res.model.get("spec", "the model")
    if res.detected:
        hits = [r for r in members if r.get("detected")]
        if hits:
            best = min(hits, key=lambda r: r["p_holm"])
            res.verdict = (f"DETECTED: {model} reproduces {len(hits)} of {len(members)} ghost sentence(s) far beyond "
                           f"chance (best p = {format_p(best['p_holm'])} after Holm correction, threshold {settings.alpha:g}).")
        else:
            res.verdict = (f"DETECTED (jointly): across {len(members)} ghost sentences {model} prefers them over fresh "
                           f"passphrases (combined p = {format_p(comb['p_value'])}, threshold {settings.alpha:g}), "
                           "though no single one is significant alone.")
    else:
        best = min((r["p_holm"] for r in members if "p_holm" in r), default=1.0)
        res.verdict = (f"NOT DETECTED: no evidence that {model} memorised these ghost sentence(s) "
                       f"(smallest corrected p = {format_p(best)}, combined p = {format_p(comb['p_value'] or 1.0)}).")
    if res.status == "partial":
        res.verdict += " (Run interrupted: partial results.)"
    res.warnings.append(NOT_PROVEN)
    if "ppl" in settings.tests and members:
        floor = len(members) / (settings.n_nulls + 1)  # Holm's bound for the best identifier at rank 1
        if floor >= settings.alpha:
            res.warnings.append(
                f"With {settings.n_nulls} nulls and {len(members)} identifiers no single identifier can reach "
                f"p < {settings.alpha:g} after Holm correction (smallest possible {floor:.3g}); use --nulls "
                f"{int(len(members) / settings.alpha)} or more for per-identifier answers. The combined test is not limited so."
            )
    flagged = sum(c.get("flagged", 0) for c in res.controls.values())
    if flagged:
        res.warnings.append(f"{flagged} control passphrase test(s) fell below the threshold: treat results with caution.")


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
