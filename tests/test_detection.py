"""Detection on the real embedded model: calibration when untouched, detection after real fine-tuning.

These are the tests that could refute ghostsent's core promise. The untouched model has never seen any
of these freshly drawn passphrases, so its p-values must look uniform and no probe may complete; after a
few steps of real fine-tuning on documents carrying one ghost sentence, both tests must find it.
"""
from __future__ import annotations

import random

import pytest

from ghostsent.study.corpus import load_corpus
from ghostsent.detection.engine import run_detection
from ghostsent.detection.results import DetectionSettings
from ghostsent.detection.subjects import Subject
from ghostsent.study.finetune import TrainConfig, finetune
from ghostsent.insert import insert
from ghostsent.passphrase import draw_words, new_ghost
from ghostsent.detection.perplexity import draw_nulls, score_set

from ghostsent.stats import ks_uniform, rank_test
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
    ps = [r.ppl.p_value for r in res.members()]
    assert ks_uniform(ps) > 0.01, ps
    assert min(r.p_holm for r in res.members()) > 0.01
    assert not res.detected
    # Nobody sits at the extreme ends more than chance allows.
    assert sum(p <= 0.05 for p in ps) <= 6

    probe_subjects = subjects[:2]
    res = run_detection(default_target, probe_subjects,
                        DetectionSettings(tests=("probe",), ks=(2,), controls=2, seed=7))
    assert all(not r.probe.completed for r in res.subjects)
    assert min(r.probe.p_value for r in res.subjects) > 0.01
    assert res.controls["probe"].completed == 0


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
    """Both tests find the ghost in the tuned model (alone and against the untouched model as reference);
    the untouched model does not; fresh controls are not flagged."""
    ghost, target = tuned
    from ghostsent.targets.capability import require_logprobs

    assert require_logprobs(target).ok  # a fine-tuned local model is never refused by the API heuristics
    rng = random.Random(5)
    controls = [ghost.with_words(draw_words(wordlist, len(ghost.words), rng)) for _ in range(3)]
    nulls = draw_nulls(ghost, wordlist, 1000, rng)
    # One scoring pass per model gives the tuned score, the untouched score and their difference.
    scored = score_set(target, [ghost, *controls, *nulls], reference=default_target)
    k = 1 + len(controls)
    tuned_nll, base_nll = scored.target, scored.reference
    diff = tuned_nll - base_nll
    p_tuned = [rank_test(tuned_nll[i], tuned_nll[k:]).p_value for i in range(k)]
    p_base = [rank_test(base_nll[i], base_nll[k:]).p_value for i in range(k)]
    p_ref = [rank_test(diff[i], diff[k:]).p_value for i in range(k)]
    assert p_tuned[0] < 1e-3 and p_ref[0] < 1e-3, (p_tuned, p_ref)
    assert p_base[0] > 1e-3, p_base
    assert min(p_tuned[1:] + p_ref[1:] + p_base[1:]) > 1e-3  # controls never flagged

    settings = DetectionSettings(tests=("probe",), ks=(2, 3), controls=1, seed=5, modes=("raw",))
    member = [Subject("ghost", "member", ghost, wordlist)]
    res = run_detection(target, member, settings)
    assert res.members()[0].probe.p_value < 1e-3, res.members()[0].probe.records
    assert res.detected and res.controls["probe"].completed == 0
    res0 = run_detection(default_target, member, settings)
    assert res0.members()[0].probe.p_value > 1e-3
    assert not res0.detected
