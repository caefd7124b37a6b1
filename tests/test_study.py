"""A tiny study grid on the real embedded model: the whole pipeline, every field, controls not flagged."""
from __future__ import annotations

import json

import pytest

from ghostsent.errors import InputError
from ghostsent.study.config import StudyConfig, validate
from ghostsent.study.results import RANK_TESTS
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
        for t in ("probe", "ppl", "ppl_ref", "untouched_ppl", *RANK_TESTS):
            assert 0 < r[t]["p_value"] <= 1
        assert set(r["baselines"]) == {"loss", "zlib", "min_k", "min_k_pp"}
        assert r["rank"]["combiner"] == "fisher"
        assert all(r[t]["combiner"].startswith("truncated-product") for t in ("rank_top20", "rank_chat20", "rank_prefill20"))
        assert all(r[t]["combiner"] == "binomial-hits" for t in ("rank_text", "rank_text_prefill", "rank_text_chat"))
        for t in ("rank_chat20", "rank_text", "rank_text_prefill", "rank_text_chat"):   # replies read
            assert len(r[t]["reply_positions"]) == len(r[t]["at_or_above"])
    s = run["summary"]
    for t in ("probe", "ppl", "ppl_ref", *RANK_TESTS, "loss", "zlib", "min_k", "min_k_pp"):
        assert 0 <= s["roc"][t]["auc"] <= 1
    for t, cis in s["detection_ci95"].items():   # Wilson intervals around every rate
        for reps, (lo, hi) in cis.items():
            assert 0 <= lo <= s["detection_rate"][t][reps] <= hi <= 1
    assert "[" in (out / "results.md").read_text()
    # Never-inserted controls must not be flagged.
    assert all(v == 0 for v in s["control_false_positives"].values()), s["control_false_positives"]
    for f in ("results.md", "detection_w8-latter-half-post-en.png", "roc_w8-latter-half-post-en.png",
              "control_pvalues_w8-latter-half-post-en.png", "exposure_w8-latter-half-post-en.png"):
        assert (out / f).exists(), f
    members = [r for r in rows if r["role"] == "member"]
    assert sorted(len(m["documents"]) for m in members) == [1, 3]

    # Resume: the finished run is read back, not redone.
    before = (out / "runs" / run["key"] / "result.json").stat().st_mtime
    run_study(cfg, out, progress=False, log=lambda m: None)
    assert (out / "runs" / run["key"] / "result.json").stat().st_mtime == before
    # A run killed after training (no result.json) reuses the checkpoint, and its wall time still counts
    # the training an earlier invocation did.
    (out / "runs" / run["key"] / "result.json").unlink()
    logged: list[str] = []
    again = run_study(cfg, out, progress=False, log=logged.append)["runs"][0]
    assert any("reusing trained checkpoint" in m for m in logged)
    assert again["seconds"] >= again["train"]["seconds"] > 0
    assert [x["ghost_text"] for x in again["rows"]] == [x["ghost_text"] for x in rows]
    with pytest.raises(InputError, match="another configuration"):
        run_study(StudyConfig(**{**TINY, "seed": 1}), out, progress=False, log=lambda m: None)


def test_results_of_runs_before_the_combiners_still_load():
    """docs/survival/study-none was written before the word-rank combiners were recorded: it loads, the
    stored p-values stay as they were, and the missing combiner reads as None (Fisher's product then)."""
    from pathlib import Path

    from ghostsent.study.results import StudyRow, summarise

    path = Path(__file__).resolve().parent.parent / "docs" / "survival" / "study-none" / "results.json"
    data = json.loads(path.read_text())
    raw = data["runs"][0]["rows"]
    rows = [StudyRow.from_dict(r) for r in raw]
    assert rows[0].ranks["rank_chat20"].combiner is None
    assert rows[0].ranks["rank_top20"].p_value == raw[0]["rank_top20"]["p_value"]
    assert "combiner" not in rows[0].to_dict()["rank"]
    assert summarise(StudyConfig(**data["config"]), rows)["detection_rate"]["rank"]


# --- the dilution axis ------------------------------------------------------------------------------------

def test_dilution_plants_the_same_ghosts_in_the_same_documents_of_a_d_times_larger_corpus(tmp_path):
    from ghostsent.ledger import Ledger
    from ghostsent.study.config import run_key
    from ghostsent.study.runner import prepare_corpus, training_corpus

    cfg = StudyConfig(**{**TINY, "dilutions": (1, 3)})
    docs = prepare_corpus(cfg)
    assert len(docs) == 30 and len({d.key for d in docs}) == 30
    assert docs[:10] == prepare_corpus(StudyConfig(**TINY))     # the carriers' corpus is the undiluted one
    got = {}
    for run in cfg.runs():
        with Ledger(tmp_path / f"{run_key(run)}.db") as ledger:
            members, controls, texts, used = training_corpus(cfg, run, docs, ledger)
        got[run["dilution"]] = (members, controls, texts, used)
        assert len(texts) == len(used) == 10 * run["dilution"]
    (m1, c1, t1, u1), (m3, c3, t3, u3) = got[1], got[3]
    assert [m.ghost.text for m in m1] == [m.ghost.text for m in m3]            # the same ghosts ...
    assert [m.documents for m in m1] == [m.documents for m in m3]              # ... in the same documents
    assert [c.ghost.text for c in c1] == [c.ghost.text for c in c3]
    assert t3[:10] == t1 and u3[:10] == u1                                     # the same tagged carriers
    carriers = {k for m in m3 for k in m.documents}
    assert carriers <= {d.key for d in u1} and all(d.text in t3 for d in u3[10:])  # extras untouched
    assert [run_key(r) for r in cfg.runs()] == ["w8-latter-half-post-en", "w8-latter-half-post-en-d3"]


def test_undiluted_configuration_and_run_names_are_unchanged():
    """A study folder (config.json) and its checkpoints (runs/<run_key>) written before the axis existed
    must still be reused."""
    from ghostsent.study.config import run_key

    d = StudyConfig().to_dict()
    assert "dilutions" not in d and StudyConfig(dilutions=(1, 10)).to_dict()["dilutions"] == [1, 10]
    assert run_key({"words": 12, "position": "latter-half", "template": "none", "wordlist": "en"}) == \
        run_key(StudyConfig(templates=("none",)).runs()[0]) == "w12-latter-half-none-en"
    # the study's default template is the product's (what `new`/`insert`/`tag` draw)
    assert run_key(StudyConfig().runs()[0]) == "w12-latter-half-post-en"
    assert run_key(StudyConfig(templates=("natural",)).runs()[0]) == "w12-latter-half-natural-en"
    assert run_key(StudyConfig(templates=("Mine: {words}.",)).runs()[0]) == "w12-latter-half-custom-en"


def test_study_wall_time_is_the_sum_of_its_runs(tmp_path):
    """Runs computed by different invocations (a resumed or grown folder) add up; a folder whose runs
    predate per-run times keeps the time of the invocation that completed it (timing.json)."""
    from ghostsent.study.runner import study_seconds

    assert study_seconds(tmp_path, [{"seconds": 3713.0}, {"seconds": 1548}]) == 5261.0
    assert json.loads((tmp_path / "timing.json").read_text()) == {"seconds": 5261.0}
    old = tmp_path / "old"
    old.mkdir()
    (old / "timing.json").write_text(json.dumps({"seconds": 100.0}))
    assert study_seconds(old, [{"seconds": 5.0}, {}]) == 100.0
    assert study_seconds(old, [{"seconds": 5.0}, {"seconds": 7.0}]) == 12.0


def test_bad_dilutions_are_refused_before_any_model_loads(tmp_path):
    from ghostsent.study.runner import prepare_corpus

    for bad in ((0,), (), (2, 2)):
        with pytest.raises(InputError, match="dilutions") as e:
            validate(StudyConfig(**{**TINY, "dilutions": bad}))
        assert e.value.hint == "dilution"
    with pytest.raises(InputError, match="dilution 100000 x 10 documents") as e:
        prepare_corpus(StudyConfig(**{**TINY, "dilutions": (1, 100000)}))
    assert e.value.hint == "dilution_documents"


def test_study_cli_refuses_a_dilution_the_corpus_cannot_supply(tmp_path):
    from proc import gs

    out = gs("study", "--corpus", "builtin:pydoc", "--documents", "10", "--min-words", "60", "--max-words", "70",
             "--repetitions", "1,3", "--ids-per-cell", "1", "--controls", "3", "--words", "8", "--nulls", "100",
             "--alpha", "0.01", "--k", "2", "--dilution", "1,100000", "--out", tmp_path / "s", timeout=120)
    assert out.returncode == 3, out.stderr
    [line] = out.stderr.decode().strip().splitlines()
    assert line.startswith("Error: ") and "--dilution or --documents" in line, line
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_tiny_diluted_study_end_to_end(tmp_path, default_target):
    """Two dilutions of one run at tiny scale (1 training step): both runs, the same ghosts, a 2x corpus,
    the axis in results.json, results.md and a plot; the local rank test uses the leading-token rule (the
    refinement is opt-in) and says so; old rows still load."""
    from ghostsent.study.results import StudyRow, markdown

    out = tmp_path / "study"
    run_study(StudyConfig(**{**TINY, "max_steps": 1, "dilutions": (1, 2)}), out, progress=False, log=lambda m: None)
    data = json.loads((out / "results.json").read_text())
    r1, r2 = data["runs"]
    assert (r1["key"], r2["key"]) == ("w8-latter-half-post-en", "w8-latter-half-post-en-d2")
    assert (r1["documents"], r2["documents"]) == (10, 20) and data["config"]["dilutions"] == [1, 2]
    assert [x["ghost_text"] for x in r1["rows"]] == [x["ghost_text"] for x in r2["rows"]]
    assert [x["documents"] for x in r1["rows"]] == [x["documents"] for x in r2["rows"]]
    rank = r1["rows"][0]["rank"]
    assert rank["refined"] is False and len(rank["at_or_above"]) == 8  # 8 words after a prefix: all tested
    md = (out / "results.md").read_text()
    assert "## Dilution" in md and "Dilution 2×: 20 training documents" in md and "full-word scores" not in md
    assert (out / "dilution_w8-latter-half-post-en.png").stat().st_size > 0
    # A result.json written before the refinement and the axis (no refined/candidates, no dilution) loads.
    old = json.loads(json.dumps(r1))
    for row in old["rows"]:
        for t in ("rank", "rank_top20", "rank_chat20"):
            row[t].pop("refined", None)
            row[t].pop("candidates", None)
    rows = [StudyRow.from_dict(x) for x in old["rows"]]
    assert rows[0].ranks["rank"].refined is None and "refined" not in rows[0].to_dict()["rank"]
    old["run"].pop("dilution")
    old.pop("documents")
    cfg = dict(data["config"])
    cfg.pop("dilutions")
    assert "## Run `w8-latter-half-post-en`" in markdown({**data, "config": cfg, "runs": [old]})


def test_available_memory_counts_reclaimable_cache_like_the_kernel():
    """The fine-tuning memory check reads MemAvailable (free + reclaimable cache): the free pages alone
    refused a run on a machine whose page cache was merely warm."""
    from ghostsent.study.runner import available_memory

    got = available_memory()
    with open("/proc/meminfo") as fh:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
    assert got is not None and abs(got - info["MemAvailable"]) < 256 << 20  # the kernel's figure, read now
    assert got >= info["MemFree"] - (256 << 20)


@pytest.mark.slow
def test_tiny_natural_run_ranks_each_identifier_against_nulls_of_its_own_lead_in(tmp_path, default_target,
                                                                                   monkeypatch):
    """`natural` draws a lead-in per identifier, so a run has one null stratum per lead-in; every row's
    raw and untouched ranks must come from the nulls that share its prefix."""
    from ghostsent.passphrase import natural_templates
    from ghostsent.study import runner

    seen: list[tuple[str, str]] = []
    real_row = runner._row

    def spy(p, r, nulls, sc, rank_test):
        seen.append((p.ghost.prefix, r.ppl.stratum.split("|", 2)[2]))
        assert len(nulls.target) == 20
        return real_row(p, r, nulls, sc, rank_test)

    monkeypatch.setattr(runner, "_row", spy)
    cfg = StudyConfig(**{**TINY, "templates": ("natural",), "repetitions": (1,), "n_controls": 2, "n_nulls": 20,
                         "alpha": 0.05, "max_steps": 1})
    res = run_study(cfg, tmp_path / "study", progress=False, log=lambda m: None)
    rows = res["runs"][0]["rows"]
    assert res["runs"][0]["key"] == "w8-latter-half-natural-en" and len(rows) == 3
    pool = set(natural_templates())
    templates = [next(t for t in pool if r["ghost_text"].startswith(t.split("{words}")[0])) for r in rows]
    assert len(set(templates)) >= 2   # (seeded: the three identifiers drew different lead-ins)
    assert [prefix for prefix, _ in seen] == [t.split("{words}")[0].rstrip() for t in templates]
    assert all(stratum.startswith(prefix) for prefix, stratum in seen)  # each row's own stratum's nulls
    for r in rows:
        assert 1 <= r["ppl"]["rank"] <= 21 and 1 <= r["untouched_ppl"]["rank"] <= 21
