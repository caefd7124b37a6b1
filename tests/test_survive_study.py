"""`ghostsent study --pipeline default`: the study trains on what the survival pipeline keeps."""
from __future__ import annotations

import json
import random
import shutil

import pytest

pytest.importorskip("datatrove")

from ghostsent.study.corpus import load_corpus  # noqa: E402
from ghostsent.errors import InputError  # noqa: E402
from ghostsent.insert import insert  # noqa: E402
from ghostsent.study.config import StudyConfig, validate  # noqa: E402
from ghostsent.survive.pipeline import through_pipeline  # noqa: E402
from ghostsent.survive.stages import regex_tokenizer  # noqa: E402

TINY = dict(corpus="builtin:pydoc", n_documents=10, min_words=60, max_words=70, repetitions=(1, 3), ids_per_cell=1,
            n_controls=3, words=(8,), n_nulls=100, alpha=0.01, ks=(2,), seq_len=128, batch_size=4, max_steps=2)


def test_config_keeps_old_studies_resumable_and_checks_the_name():
    assert "pipeline" not in StudyConfig(**TINY).to_dict()  # a study folder from before still matches
    assert StudyConfig(**TINY, pipeline="default").to_dict()["pipeline"] == "default"
    with pytest.raises(InputError, match="unknown pipeline 'bogus'") as e:
        validate(StudyConfig(**TINY, pipeline="bogus"))
    assert e.value.hint == "pipeline"


def test_through_pipeline_returns_the_kept_documents_with_their_ghosts():
    if shutil.which("bible") is None:
        pytest.skip("needs Debian's bible-kjv (CI installs it)")
    originals = [d.text for d in load_corpus("builtin:kjv", min_words=100, limit=30)]
    rng = random.Random(5)
    ghosts = {"a": "quiet garden lantern morning river.", "b": "copper meadow signal harbour violet."}
    carriers = {3: ("a", ghosts["a"]), 9: ("a", ghosts["a"]), 17: ("b", ghosts["b"])}
    texts = list(originals)
    for i, (_, g) in carriers.items():
        texts[i] = insert(texts[i], g, rng=rng)[0]
    texts.append(texts[0])  # an exact duplicate page: dedup keeps one
    originals.append(originals[0])
    kept, report = through_pipeline(texts, originals, carriers, tokenizer=regex_tokenizer())
    assert 0 < len(kept) < len(texts)
    assert [s.kind for s in report.stages if s.kind == "normalise"] == []  # training text is not normalised
    assert report.copies == 3
    for gid, g in ghosts.items():  # the counts the report gives are the copies in the kept texts
        assert report.final_copies.get(gid, 0) == sum(g in t for t in kept)


def test_study_plants_then_trains_on_what_the_pipeline_keeps(tmp_path):
    """The study's own planting, then pipeline_texts (the step run_one takes before fine-tuning when
    --pipeline is set): the survival report lands next to the run, the kept texts carry the ghosts."""
    from ghostsent.ledger import Ledger
    from ghostsent.study.runner import pipeline_texts, plant, prepare_corpus

    cfg = StudyConfig(**TINY, pipeline="default")
    docs = prepare_corpus(cfg)
    run = cfg.runs()[0]
    with Ledger(tmp_path / "l.db") as led:
        members, _, texts = plant(cfg, run, docs, led)
    logs: list[str] = []
    kept = pipeline_texts(cfg, members, docs, texts, tmp_path, logs.append)
    survival = json.loads((tmp_path / "survival.json").read_text())
    assert survival["copies"] == 1 + 3 and survival["documents"] == len(texts)
    assert len(kept) == survival["stages"][-1]["docs_kept"]
    for m in members:
        ghost = m.ghost.text
        assert survival["final_copies"].get(m.id, 0) == sum(ghost in t for t in kept)
    assert logs and logs[0].startswith("pipeline kept ")


def test_screen_is_checked_and_old_configs_still_match():
    assert "screen" not in StudyConfig(**TINY).to_dict()
    assert StudyConfig(**TINY, screen="pipeline").to_dict()["screen"] == "pipeline"
    with pytest.raises(InputError, match="unknown corpus screen 'some'") as e:
        validate(StudyConfig(**TINY, screen="some"))
    assert e.value.hint == "screen"


def test_pipeline_screen_keeps_only_pages_the_pipeline_keeps_untagged(tmp_path, monkeypatch):
    """--screen pipeline: the study's corpus is drawn from pages whose untagged text survives the
    pipeline (so both arms of a --pipeline comparison train on the same pages); the order stays the
    seeded one, the result is cached, and too few surviving pages is a clear error."""
    if shutil.which("bible") is None:
        pytest.skip("needs Debian's bible-kjv (CI installs it)")
    from ghostsent.study import runner
    from ghostsent.study.corpus import Document

    cfg = StudyConfig(**{**TINY, "corpus": "builtin:kjv", "min_words": 100, "max_words": 160, "n_documents": 8},
                      screen="pipeline")
    plain = runner.prepare_corpus(StudyConfig(**{**cfg.__dict__, "screen": "none", "n_documents": 30}))
    seen: list[list[str]] = []

    def screen(cands):  # the real screen, on a poisoned copy of the candidates
        cands = list(cands)
        cands[0] = Document(cands[0].key, cands[0].text + " Lorem ipsum dolor sit amet.", cands[0].owner)
        cands[2] = Document(cands[2].key, "{ " + cands[2].text, cands[2].owner)
        seen.append([c.key for c in cands])
        return runner.pipeline_screen(cfg, cands, tmp_path, logs.append)

    logs: list[str] = []
    docs = runner.prepare_corpus(cfg, screen)
    assert len(docs) == 8 and len(seen[0]) > 30
    keys = [d.key for d in docs]
    assert plain[0].key not in keys and plain[2].key not in keys  # dropped for their own text
    assert keys == [k for k in seen[0] if k in keys]  # the seeded order is kept
    assert logs and "survive the pipeline untagged" in logs[0]
    assert runner.prepare_corpus(cfg, screen) == docs and len(logs) == 1  # cached
    with pytest.raises(InputError, match="survive the pipeline untagged") as e:
        runner.prepare_corpus(cfg, lambda cands: list(range(5)))
    assert e.value.hint == "documents"
