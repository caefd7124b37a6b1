"""`ghostsent demo`: the whole loop in a few minutes on a laptop CPU, with nothing but defaults.

Tag a small real corpus with a new ghost sentence, fine-tune the embedded model on it briefly, run both
tests on the untouched and the tuned model, print a verdict table and write a full report. It works in a
temporary folder (its own throw-away ledger unless --ledger is given) and removes it afterwards; only the
report is kept.
"""
from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

DEMO_DOCS = 24
DEMO_CARRIERS = 10
DEMO_MAX_WORDS = 110
DEMO_NULLS = 1000
DEMO_ALPHA = 1e-3


def auto_corpus() -> str:
    """The KJV when Debian's bible-kjv is installed, else Python's own reference docs (always there)."""
    return "builtin:kjv" if shutil.which("bible") else "builtin:pydoc"


@dataclass
class DemoResult:
    identifier: str
    ghost_text: str
    rows: list[dict[str, Any]]
    report_dir: str
    seconds: float
    train: dict[str, Any]


def run_demo(
    out_dir: str | Path = "ghostsent-demo",
    corpus: str | None = None,
    ledger_path: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    seed: int | None = None,
    n_docs: int = DEMO_DOCS,
    n_carriers: int = DEMO_CARRIERS,
    n_nulls: int = DEMO_NULLS,
) -> DemoResult:
    from ghostsent.detection.engine import run_detection
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.detection.subjects import Subject
    from ghostsent.corpus import load_corpus
    from ghostsent.finetune import TrainConfig, finetune
    from ghostsent.insert import NoBoundaryError, insert
    from ghostsent.ledger import Ledger
    from ghostsent.detection.report import write_report
    from ghostsent.study import excerpt
    from ghostsent.targets import load_target
    from ghostsent.targets.hf import HFTarget
    from ghostsent.wordlists import load_wordlist

    t0 = time.time()
    rng = random.Random(seed) if seed is not None else random.SystemRandom()
    corpus = corpus or auto_corpus()
    docs = list(load_corpus(corpus, min_words=60))
    if len(docs) < n_docs:
        from ghostsent.errors import InputError

        raise InputError(f"corpus {corpus} has only {len(docs)} usable documents; the demo needs {n_docs}")
    docs = rng.sample(docs, n_docs)
    texts = [excerpt(d.text, DEMO_MAX_WORDS) for d in docs]
    work = Path(tempfile.mkdtemp(prefix="ghostsent-demo-"))
    try:
        wl = load_wordlist("en")
        with Ledger(ledger_path or work / "demo.db") as ledger:
            ident = ledger.new_identifier("demo", wl, 12, "document", rng=rng if seed is not None else None)
            placed = 0
            for i in range(len(texts)):
                if placed == n_carriers:
                    break
                try:
                    new, off = insert(texts[i], ident.ghost.text, "latter-half", rng)
                except NoBoundaryError:
                    continue
                ledger.add_insertion(ident.id, f"{corpus}:{docs[i].key}", hashlib.sha256(texts[i].encode()).hexdigest(),
                                     hashlib.sha256(new.encode()).hexdigest(), off, "latter-half")
                texts[i] = new
                placed += 1
            log(f"1/4 New ghost sentence {ident.id}: \"{ident.ghost.text}\"")
            log(f"    inserted into {placed} of {len(texts)} documents from {corpus}")
            log("2/4 Loading the embedded model (SmolLM2-135M-Instruct)...")
            base = load_target(None)
            log(f"3/4 Fine-tuning it on the tagged corpus (3 epochs, {sum(len(t.split()) for t in texts)} words)...")
            tr = finetune(base.model, base.tokenizer, texts, TrainConfig(epochs=3, seq_len=192, batch_size=4, seed=0),
                          progress=progress)
            tuned = HFTarget.from_model(tr.model, base.tokenizer, "default+demo-finetune")
            log("4/4 Testing the untouched and the fine-tuned model (last-k probe + perplexity test)...")
            settings = DetectionSettings(tests=("probe", "ppl"), ks=(2, 3, 4), n_nulls=n_nulls, controls=2,
                                         alpha=DEMO_ALPHA, seed=seed, modes=("raw",))
            member = [Subject(ident.id, "member", ident.ghost, wl, "demo")]
            rows = []
            out = Path(out_dir)
            for name, target in (("untouched", base), ("fine-tuned", tuned)):
                res = run_detection(target, member, settings, kind="demo", progress=progress)
                paths = write_report(res, out / name)
                m = res.members()[0]
                rows.append({"model": name, "probe_p": m.probe.p_value, "probe_completed": m.probe.completed,
                             "ppl_rank": m.ppl.rank.rank, "ppl_n": m.ppl.rank.n_nulls + 1, "ppl_p": m.ppl.p_value,
                             "detected": res.detected, "verdict": res.verdict, "report": paths["markdown"],
                             "controls_flagged": sum(c.flagged for c in res.controls.values())})
        return DemoResult(ident.id, ident.ghost.text, rows, str(out), round(time.time() - t0, 1),
                          {"steps": tr.steps, "tokens": tr.tokens_seen, "seconds": round(tr.seconds, 1)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
