"""A tiny study grid on the real embedded model: the whole pipeline, every field, controls not flagged."""
from __future__ import annotations

import json

import pytest

from ghostsent.errors import InputError
from ghostsent.study.config import StudyConfig, validate
from ghostsent.study.runner import run_study

TINY = dict(corpus="builtin:pydoc", n_documents=10, min_words=60, max_words=70, repetitions=(1, 3), ids_per_cell=1,
            n_controls=3, words=(8,), n_nulls=100, alpha=0.01, ks=(2,), seq_len=128, batch_size=4, max_steps=2)


def test_grid_that_cannot_be_filled_is_refused_before_training():
    with pytest.raises(InputError, match="carrier documents"):
        validate(StudyConfig(**{**TINY, "repetitions": (5, 10)}))
    with pytest.raises(InputError, match="n_nulls 10 cannot give p") as e:
        validate(StudyConfig(**{**TINY, "n_nulls": 10}))
    assert e.value.hint == "nulls"  # the CLI names --nulls (cli.HINTS); the library names no flag
    with pytest.raises(InputError, match="position"):
        validate(StudyConfig(**{**TINY, "positions": ("middle",)}))


def test_corpus_too_small_is_refused(tmp_path):
    from ghostsent.study.runner import prepare_corpus

    (tmp_path / "a.txt").write_text("One short real sentence. " * 30)
    with pytest.raises(InputError, match=r"needs 10 \(n_documents\)") as e:
        prepare_corpus(StudyConfig(**{**TINY, "corpus": str(tmp_path)}))
    assert e.value.hint == "documents"


@pytest.mark.slow
def test_tiny_grid_runs_end_to_end_and_resumes(tmp_path, default_target):
    out = tmp_path / "study"
    cfg = StudyConfig(**TINY)
    run_study(cfg, out, progress=False, log=lambda m: None)
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["repetitions"] == [1, 3]
    assert {"python", "torch", "transformers"} <= set(data["versions"])
    run = data["runs"][0]
    assert run["train"]["steps"] == 2
    rows = run["rows"]
    assert len(rows) == 2 + 3 and {r["role"] for r in rows} == {"member", "control"}
    for r in rows:
        for t in ("probe", "ppl", "ppl_ref", "untouched_ppl", "rank", "rank_top20", "rank_chat20"):
            assert 0 < r[t]["p_value"] <= 1
        assert set(r["baselines"]) == {"loss", "zlib", "min_k", "min_k_pp"}
    s = run["summary"]
    for t in ("probe", "ppl", "ppl_ref", "rank", "rank_top20", "rank_chat20", "loss", "zlib", "min_k", "min_k_pp"):
        assert 0 <= s["roc"][t]["auc"] <= 1
    for t, cis in s["detection_ci95"].items():   # Wilson intervals around every rate
        for reps, (lo, hi) in cis.items():
            assert 0 <= lo <= s["detection_rate"][t][reps] <= hi <= 1
    assert "[" in (out / "results.md").read_text()
    # Never-inserted controls must not be flagged.
    assert all(v == 0 for v in s["control_false_positives"].values()), s["control_false_positives"]
    for f in ("results.md", "detection_w8-latter-half-none-en.png", "roc_w8-latter-half-none-en.png",
              "control_pvalues_w8-latter-half-none-en.png", "exposure_w8-latter-half-none-en.png"):
        assert (out / f).exists(), f
    members = [r for r in rows if r["role"] == "member"]
    assert sorted(len(m["documents"]) for m in members) == [1, 3]

    # Resume: the finished run is read back, not redone.
    before = (out / "runs" / run["key"] / "result.json").stat().st_mtime
    run_study(cfg, out, progress=False, log=lambda m: None)
    assert (out / "runs" / run["key"] / "result.json").stat().st_mtime == before
    with pytest.raises(InputError, match="another configuration"):
        run_study(StudyConfig(**{**TINY, "seed": 1}), out, progress=False, log=lambda m: None)


def test_available_memory_counts_reclaimable_cache_like_the_kernel():
    """The fine-tuning memory check reads MemAvailable (free + reclaimable cache): the free pages alone
    refused a run on a machine whose page cache was merely warm."""
    from ghostsent.study.runner import available_memory

    got = available_memory()
    with open("/proc/meminfo") as fh:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
    assert got is not None and abs(got - info["MemAvailable"]) < 256 << 20  # the kernel's figure, read now
    assert got >= info["MemFree"] - (256 << 20)
