"""Detection on the real embedded model: calibration when untouched, detection after real fine-tuning.

These are the tests that could refute ghostsent's core promise. The untouched model has never seen any
of these freshly drawn passphrases, so its p-values must look uniform and no probe may complete; after a
few steps of real fine-tuning on documents carrying one ghost sentence, both tests must find it.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from ghostsent.audit import DetectionSettings, Subject, run_detection
from ghostsent.corpus import load_corpus
from ghostsent.finetune import TrainConfig, finetune
from ghostsent.insert import insert
from ghostsent.passphrase import new_ghost
from ghostsent.stats import ks_uniform
from ghostsent.targets.hf import HFTarget
from ghostsent.wordlists import load_wordlist

pytestmark = pytest.mark.slow

WL = "en"


@pytest.fixture(scope="module")
def wordlist():
    return load_wordlist(WL)


def test_calibration_on_untouched_model(default_target, wordlist):
    """Fresh identifiers: perplexity p-values consistent with uniform, none significant after Holm,
    and no control probe completes."""
    rng = random.Random(1234)
    subjects = [Subject(f"fresh-{i}", "member", new_ghost(wordlist, 8, "post", rng), wordlist) for i in range(36)]
    res = run_detection(default_target, subjects, DetectionSettings(tests=("ppl",), n_nulls=300, controls=0, seed=99))
    ps = [r["ppl"]["p_value"] for r in res.members()]
    assert ks_uniform(ps) > 0.01, ps
    assert min(r["p_holm"] for r in res.members()) > 0.01
    assert not res.detected
    # Nobody sits at the extreme ends more than chance allows.
    assert sum(p <= 0.05 for p in ps) <= 6

    probe_subjects = subjects[:4]
    res = run_detection(default_target, probe_subjects,
                        DetectionSettings(tests=("probe",), ks=(2, 3), controls=2, seed=7))
    assert all(not r["probe"]["completed"] for r in res.subjects)
    assert min(r["probe"]["p_value"] for r in res.subjects) > 0.01
    assert res.controls["probe"]["completed"] == 0


@pytest.fixture(scope="module")
def tuned(default_target, wordlist):
    """The embedded model after a few real full fine-tuning steps on documents carrying one ghost."""
    rng = random.Random(42)
    ghost = new_ghost(wordlist, 8, "post", rng)
    docs = [d.text for d in load_corpus("builtin:pydoc", min_words=60, limit=8)]
    texts = []
    for i, text in enumerate(docs):
        words = text.split()[:90]
        text = " ".join(words)
        if i < 6:
            text, _ = insert(text, ghost.text, "latter-half", rng)
        texts.append(text)
    tr = finetune(default_target.model, default_target.tokenizer, texts,
                  TrainConfig(epochs=3, seq_len=192, batch_size=4, lr=3e-4, seed=0), progress=False)
    return ghost, HFTarget.from_model(tr.model, default_target.tokenizer, "test:tuned")


def test_positive_control_both_tests_detect_after_finetuning(tuned, default_target, wordlist):
    ghost, target = tuned
    settings = DetectionSettings(tests=("probe", "ppl"), ks=(2, 3), n_nulls=1000, controls=2, seed=5, modes=("raw",))
    member = [Subject("ghost", "member", ghost, wordlist)]
    res = run_detection(target, member, settings)
    m = res.members()[0]
    assert m["ppl"]["p_value"] < 1e-3, m["ppl"]
    assert m["probe"]["p_value"] < 1e-3, m["probe"]["records"]
    assert res.detected
    # controls are not flagged on the tuned model either
    assert res.controls["ppl"]["flagged"] == 0 and res.controls["probe"]["completed"] == 0

    # The untouched model must not detect it.
    res0 = run_detection(default_target, member, settings)
    m0 = res0.members()[0]
    assert m0["ppl"]["p_value"] > 1e-3 and m0["probe"]["p_value"] > 1e-3
    assert not res0.detected


def test_reference_model_score_detects_and_keeps_controls_calibrated(tuned, default_target, wordlist):
    """target − reference: the untouched model as reference still detects, controls stay unflagged."""
    ghost, target = tuned
    settings = DetectionSettings(tests=("ppl",), n_nulls=1000, controls=3, seed=11)
    res = run_detection(target, [Subject("ghost", "member", ghost, wordlist)], settings, reference=default_target)
    assert res.members()[0]["ppl"]["p_value"] < 1e-3
    assert res.controls["ppl"]["flagged"] == 0
