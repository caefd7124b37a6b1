"""The study's typed rows (one per identifier of a run), the summary over a run, and results.md.

A row is built from the detection engine's SubjectResult (runner.py) plus the baselines; `to_dict()`
is the result.json shape (unchanged since 0.1, so finished runs are read back with `from_dict`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ghostsent.study import baselines
from ghostsent.stats import wilson_interval
from ghostsent.detection.rank import REFINE_CAP
from ghostsent.study.config import StudyConfig, base_key

TESTS = ("probe", "ppl", "ppl_ref")
# The word-rank test four ways on the same identifiers: the whole distribution (local), and what an
# OpenAI-compatible server running the tuned model shows with top-20 log-probabilities over
# /v1/completions (HFTarget.top_next_tokens), over chat, echo-aligned (HFTarget.top_reply_tokens), and over
# chat with the shown text prefilled as the assistant's reply (HFTarget.top_next_tokens on a conversation
# ending with an assistant message): the same model, in-process; each with its mode's combiner (rank.COMBINERS).
# And three text-only ways (no log-probabilities: the next word of a greedy reply, raw, prefilled, chat).
RANK_TESTS = {"rank": ("local", None), "rank_top20": ("completions", 20), "rank_chat20": ("chat", 20),
              "rank_prefill20": ("prefill", 20), "rank_text": ("text", None), "rank_text_prefill": ("text-prefill", None),
              "rank_text_chat": ("text-chat", None)}


@dataclass
class RankOutcome:
    """One identifier's word-rank test in the study."""

    p_value: float
    at_or_above: list[int]
    first_place: int
    combiner: str | None = None                 # None: a run before issue 10's combiners (Fisher's product)
    reply_positions: list[int] | None = None    # chat: the reply token scored at each position
    refined: bool | None = None                 # local mode: full-word scores (absent in older runs)
    candidates: list[int] | None = None         # refined: per position, the words that could count

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"p_value": self.p_value, "at_or_above": list(self.at_or_above),
                             "first_place": self.first_place}
        if self.combiner is not None:
            d["combiner"] = self.combiner
        if self.reply_positions is not None:
            d["reply_positions"] = list(self.reply_positions)
        if self.refined is not None:
            d |= {"refined": self.refined, "candidates": list(self.candidates or [])}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RankOutcome":
        return cls(d["p_value"], d["at_or_above"], d["first_place"], d.get("combiner"), d.get("reply_positions"),
                   d.get("refined"), d.get("candidates"))


BASELINES = ("loss", "zlib", "min_k", "min_k_pp")


@dataclass
class Ranked:
    """A score ranked among the run's nulls: `score` is an NLL (ppl, untouched_ppl) or a difference of
    NLLs (ppl_ref, named `score` in JSON)."""

    score: float
    rank: int
    p_value: float
    exposure_bits: float | None = None

    def to_dict(self, score_name: str) -> dict[str, Any]:
        d = {score_name: self.score, "rank": self.rank, "p_value": self.p_value}
        if self.exposure_bits is not None:
            d["exposure_bits"] = self.exposure_bits
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], score_name: str) -> "Ranked":
        return cls(d[score_name], d["rank"], d["p_value"], d.get("exposure_bits"))


@dataclass
class ProbeOutcome:
    p_value: float
    completed: bool
    best_matches: list[int]
    replies: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"p_value": self.p_value, "completed": self.completed, "best_matches": list(self.best_matches),
                "replies": self.replies}


# JSON name of each ranked test's score
_SCORE_NAME = {"ppl": "nll", "ppl_ref": "score", "untouched_ppl": "nll"}


@dataclass
class StudyRow:
    """One identifier of a run: a member (inserted `repetitions` times) or a never-inserted control."""

    id: str
    role: str
    repetitions: int
    ghost_text: str
    documents: list[str]
    probe: ProbeOutcome
    ppl: Ranked                 # the tuned model's NLL among the nulls'
    ppl_ref: Ranked             # tuned minus untouched NLL among the nulls'
    untouched_ppl: Ranked       # the untouched model (calibration: never trained on the ghosts)
    baselines: dict[str, float]
    ranks: dict[str, RankOutcome] = field(default_factory=dict)   # word-rank tests (absent in older runs)

    def p_value(self, test: str) -> float:
        return self.ranks[test].p_value if test in RANK_TESTS else getattr(self, test).p_value

    def member_score(self, test: str) -> float:
        """Higher = more likely a member, for ROC curves."""
        if test == "probe" or test in RANK_TESTS:
            return -float(np.log10(max(self.p_value(test), 1e-300)))
        if test in ("ppl", "ppl_ref"):
            return -getattr(self, test).score
        return float(self.baselines[test])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "repetitions": self.repetitions, "ghost_text": self.ghost_text,
                "documents": list(self.documents), "probe": self.probe.to_dict(),
                **{t: getattr(self, t).to_dict(n) for t, n in _SCORE_NAME.items()},
                **{t: r.to_dict() for t, r in self.ranks.items()},
                "baselines": dict(self.baselines)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudyRow":
        p = d["probe"]
        ranked = {t: Ranked.from_dict(d[t], n) for t, n in _SCORE_NAME.items()}
        return cls(d["id"], d["role"], d["repetitions"], d["ghost_text"], d["documents"],
                   ProbeOutcome(p["p_value"], p["completed"], p["best_matches"], p.get("replies", [])),
                   baselines=d["baselines"], **ranked,
                   ranks={t: RankOutcome.from_dict(d[t]) for t in RANK_TESTS if t in d})


def tests_in(rows: Sequence[StudyRow]) -> tuple[str, ...]:
    """The tests these rows have (a run finished by an older version lacks the word-rank tests)."""
    return TESTS + tuple(t for t in RANK_TESTS if rows and t in rows[0].ranks)


def summarise(cfg: StudyConfig, rows: Sequence[StudyRow]) -> dict[str, Any]:
    """Detection rates by repetitions, control false positives, ROC curves and exposure of one run."""
    members = [r for r in rows if r.role == "member"]
    controls = [r for r in rows if r.role == "control"]
    tests = tests_in(rows)
    out: dict[str, Any] = {"detection_rate": {}, "detection_ci95": {}, "control_false_positives": {},
                           "smallest_repetitions": {}, "roc": {}, "exposure_by_repetitions": {}}
    for t in tests:
        rate, ci = {}, {}
        for reps in cfg.repetitions:
            cell = [r for r in members if r.repetitions == reps]
            hits = sum(r.p_value(t) < cfg.alpha for r in cell)
            rate[str(reps)] = hits / len(cell)
            ci[str(reps)] = list(wilson_interval(hits, len(cell)))
        out["detection_rate"][t] = rate
        out["detection_ci95"][t] = ci
        out["control_false_positives"][t] = sum(r.p_value(t) < cfg.alpha for r in controls)
        # The smallest count from which every cell at and above it detected every identifier: what a
        # user can rely on. (A single fully detected cell below a failing one does not count.)
        reps_sorted = sorted(cfg.repetitions)
        ok = [r for i, r in enumerate(reps_sorted) if all(rate[str(x)] == 1.0 for x in reps_sorted[i:])]
        out["smallest_repetitions"][t] = ok[0] if ok else None
        full = [reps for reps in reps_sorted if rate[str(reps)] == 1.0]
        out.setdefault("first_fully_detected", {})[t] = full[0] if full else None
    out["control_false_positives"]["untouched_ppl"] = sum(r.untouched_ppl.p_value < cfg.alpha for r in members + controls)
    for t in tests + BASELINES:
        m = [r.member_score(t) for r in members]
        c = [r.member_score(t) for r in controls]
        fpr, tpr, _ = baselines.roc_curve(m, c)
        out["roc"][t] = {"auc": baselines.roc_auc(m, c), "tpr_at_1pct_fpr": baselines.tpr_at_fpr(m, c, 0.01),
                         "fpr": list(map(float, fpr)), "tpr": list(map(float, tpr))}
    for t in ("ppl", "ppl_ref"):
        out["exposure_by_repetitions"][t] = {
            str(reps): float(np.mean([getattr(r, t).exposure_bits for r in members if r.repetitions == reps]))
            for reps in cfg.repetitions
        }
    out["control_p_values"] = {t: [r.p_value(t) for r in controls] for t in tests}
    return out


def markdown(study: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """results.md: the configuration, then per run its detection rates, ROC figures and calibration."""
    cfg = study["config"]
    alpha = cfg["alpha"]
    lr = cfg["lr"] or next((r["train"].get("config", {}).get("lr") for r in study["runs"]), None)
    L = ["# ghostsent memorization study", "",
         f"Model `{study['model'].get('spec')}` fine-tuned ({cfg['method']}, lr {lr:g}, "
         f"{cfg['epochs']} epoch(s), seq_len {cfg['seq_len']}, batch {cfg['batch_size']}) on {study['corpus']['documents']} "
         f"documents from `{cfg['corpus']}` ({study['corpus']['min_words']}–{study['corpus']['max_words']} words). "
         f"{cfg['ids_per_cell']} identifiers per repetition count, {cfg['n_controls']} never-inserted controls, "
         f"{cfg['n_nulls']} nulls, threshold p < {alpha:g}. Total {study['seconds'] / 60:.1f} min (the runs' wall times added up).", ""]
    names = {"probe": "last-k probe", "ppl": "perplexity test", "ppl_ref": "perplexity test − reference",
             "rank": "word-rank (whole distribution)", "rank_top20": "word-rank (completions, top-20)",
             "rank_chat20": "word-rank (chat, top-20)", "rank_prefill20": "word-rank (chat prefill, top-20)",
             "rank_text": "word-by-word text (raw, no log-probs)", "rank_text_prefill": "word-by-word text (chat prefill)",
             "rank_text_chat": "word-by-word text (chat, echo-aligned)",
             "loss": "LOSS", "zlib": "zlib ratio", "min_k": "Min-K% (20%)", "min_k_pp": "Min-K%++ (20%)"}
    for res in study["runs"]:
        s = res["summary"]
        d = res["run"].get("dilution", 1)
        L += [f"## Run `{res['key']}`", ""]
        if len(cfg.get("dilutions", [1])) > 1 or d != 1:
            L += [f"Dilution {d}×: {res.get('documents', '?')} training documents, the same ghosts in the same "
                  f"carriers as every other dilution of `{base_key(res['run'])}`.", ""]
        L += [f"Training: {res['train'].get('steps')} steps, {res['train'].get('tokens_seen')} tokens, "
              f"{res['train'].get('seconds')} s" + (f"; the run's wall time {res['seconds'] / 60:.1f} min" if res.get("seconds")
                                                   else "") + ".", "",
              "Detection rate at p < %g by repetitions [Wilson 95%% interval]:" % alpha, "",
              "| test | " + " | ".join(f"{r}×" for r in cfg["repetitions"]) + " | all detected from | control FPs |",
              "|---|" + "---|" * len(cfg["repetitions"]) + "---|---|"]
        for t in s["detection_rate"]:
            rate, ci = s["detection_rate"][t], s.get("detection_ci95", {}).get(t, {})
            L.append(f"| {names[t]} | " + " | ".join(_cell(rate[str(r)], ci.get(str(r))) for r in cfg["repetitions"])
                     + f" | {s['smallest_repetitions'][t] or '—'} | {s['control_false_positives'][t]}/{cfg['n_controls']} |")
        L += ["", "Members vs controls, all repetitions pooled:", "", "| test | ROC AUC | TPR at 1% FPR |", "|---|---|---|"]
        for t in s["roc"]:
            L.append(f"| {names[t]} | {s['roc'][t]['auc']:.3f} | {s['roc'][t]['tpr_at_1pct_fpr']:.2f} |")
        L += ["", f"Untouched model (calibration): {s['control_false_positives']['untouched_ppl']} of "
                  f"{len(res['rows'])} identifiers below p < {alpha:g}.", ""]
        refined = [r["rank"].get("refined") for r in res["rows"] if "rank" in r]
        if refined and all(refined):
            L += [f"Word-rank (whole distribution): full-word scores (multi-token refinement, at most "
                  f"{REFINE_CAP} per position).", ""]
    L += dilution_table(study)
    L += [f"![{p}]({p})" for p in plots]
    L += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in study["versions"].items())]
    return "\n".join(L) + "\n"


def dilution_table(study: dict[str, Any]) -> list[str]:
    """Per run (all dilutions of it side by side): from how many repetitions each test detects every
    ghost, and its ROC AUC. Empty when the study has one dilution."""
    dils = study["config"].get("dilutions", [1])
    if len(dils) < 2:
        return []
    groups: dict[str, dict[int, Any]] = {}
    for res in study["runs"]:
        groups.setdefault(base_key(res["run"]), {})[res["run"].get("dilution", 1)] = res["summary"]
    L = ["## Dilution", "", "The same ghosts in a corpus d times larger: all detected from (repetitions) / ROC AUC.", ""]
    for key, by_d in groups.items():
        ds = sorted(by_d)
        L += [f"`{key}`:", "", "| test | " + " | ".join(f"{d}×" for d in ds) + " |", "|---|" + "---|" * len(ds)]
        for t in by_d[ds[0]]["detection_rate"]:
            L.append(f"| {t} | " + " | ".join(f"{by_d[d]['smallest_repetitions'].get(t) or '—'} / "
                                             f"{by_d[d]['roc'][t]['auc']:.3f}" for d in ds) + " |")
        L.append("")
    return L


def _cell(rate: float, ci: Sequence[float] | None) -> str:
    return f"{rate:.0%}" + (f" [{ci[0]:.0%}–{ci[1]:.0%}]" if ci else "")
