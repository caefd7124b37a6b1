"""ghostsent.tagging.datatrove.GhostTagger in a real datatrove LocalPipelineExecutor run (2 tasks), against the
single-process tagger on the same ledger, and its manifests merged into the ledger."""
from __future__ import annotations

import gzip
import json

import pytest

pytest.importorskip("datatrove")
pytest.importorskip("pyarrow")

from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.readers import JsonlReader  # noqa: E402
from datatrove.pipeline.writers import JsonlWriter  # noqa: E402

from ghostsent.tagging.datatrove import GhostTagger  # noqa: E402
from ghostsent.ledger import Ledger  # noqa: E402
from ghostsent.ledger.manifest import merge_manifest  # noqa: E402
from ghostsent.tagging import JsonlOptions, tag_jsonl  # noqa: E402


def test_datatrove_step_matches_single_process_and_merges(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for part in range(2):  # two input files: one per task
        with open(src / f"p{part}.jsonl", "w") as f:
            for i in range(part * 40, part * 40 + 40):
                f.write(json.dumps({"id": f"d{i}", "text": f"Doc {i} begins. Middle {i}. Done.",
                                    "author": f"a{i % 3}"}) + "\n")
    led = tmp_path / "l.db"
    LocalPipelineExecutor(pipeline=[JsonlReader(str(src)),
                                    GhostTagger(str(led), str(tmp_path / "manifest"), owner_key="author",
                                                fraction=0.4, words=6, label="corpus"),
                                    JsonlWriter(str(tmp_path / "out"))],
                          tasks=2, workers=1, logging_dir=str(tmp_path / "logs")).run()
    got = {}
    for p in (tmp_path / "out").glob("*.jsonl.gz"):
        for line in gzip.open(p, "rt"):
            d = json.loads(line)
            got[d["id"]] = d["text"]
    assert len(got) == 80
    with Ledger(led) as l:
        m = merge_manifest(l, tmp_path / "manifest")
        assert len(m.files) == 2 and m.added > 0 and merge_manifest(l, tmp_path / "manifest").added == 0
        step_rows = sorted((i.identifier_id, i.document.split(":id=")[1], i.sha256_after) for i in l.insertions())
        # the single-process tagger with the same rule on the same ledger makes the same choices and bytes
        both = tmp_path / "all.jsonl"
        both.write_bytes((src / "p0.jsonl").read_bytes() + (src / "p1.jsonl").read_bytes())
        opts = JsonlOptions(owner_field="author", id_field="id", fraction=0.4, words=6)
        s = tag_jsonl(l, str(both), str(tmp_path / "single.jsonl"), opts)
        single_rows = sorted((i.identifier_id, i.document.split(":id=")[1], i.sha256_after)
                             for i in l.insertions()[len(step_rows):])
    assert s["new_identifiers"] == 0 and single_rows == step_rows and 0 < len(step_rows) < 80
    single = {d["id"]: d["text"] for d in map(json.loads, (tmp_path / "single.jsonl").read_text().splitlines())}
    assert got == single
