"""A datatrove PipelineStep that tags documents as they flow through a corpus-preparation pipeline.

    from ghostsent.tagging.datatrove import GhostTagger
    LocalPipelineExecutor(pipeline=[JsonlReader("in/"), GhostTagger("ghostsent.db", "manifest/",
                                    owner_key="author", fraction=0.1), JsonlWriter("out/")], tasks=8).run()
    # then: ghostsent ledger merge manifest/ --ledger ghostsent.db

Each task uses the same rule as every other front end (ghostsent.tagging.core.tag_record, keyed by the
ledger's selection secret and the document id), so tasks need no coordination. The owner is
`document.metadata[owner_key]`, the record key `document.id`. Identifiers of new owners are drawn in the
ledger (one short transaction each; safe for processes on one machine, or a PostgreSQL ledger). Each
task writes its insertions to `manifest/<rank>.parquet` (atomically, at the end of the task); the ledger
gets them with `ghostsent ledger merge`. Only the stateless rules are available here: every document, or
`fraction`; `max_per_owner` needs a pass over the whole corpus first (use `ghostsent tag`, or Spark).
"""
from __future__ import annotations

import os
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from ghostsent.tagging.core import TAGGED, BadRecord, RecordRules, TagPolicy, tag_record
from ghostsent.tagging.jsonl import JsonlOptions, LedgerGhosts, job_selection


class GhostTagger(PipelineStep):
    """Insert each owner's ghost into their documents; write the insertions as a manifest per task."""

    name = "👻 ghostsent tagger"
    type = "✍️ - TAGGER"

    def __init__(self, ledger: str, manifest_dir: str, owner_key: str = "owner", fraction: float | None = None,
                 position: str = "latter-half", words: int = 12, wordlist: str = "en", label: str = "datatrove",
                 seed: int | None = None) -> None:
        super().__init__()
        self.ledger_path, self.manifest_dir, self.label = str(ledger), str(manifest_dir), label
        self.opts = JsonlOptions(text_field="text", owner_field=f"metadata.{owner_key}", id_field="id",
                                 fraction=fraction, words=words, wordlist=wordlist, position=position, seed=seed)
        self.opts.validate()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from ghostsent.ledger import open_ledger
        from ghostsent.ledger.manifest import write_manifest

        wordlist = self.opts.validate()
        pending: list[tuple] = []
        with open_ledger(self.ledger_path, create=True) as led:
            ghosts = LedgerGhosts(led, self.opts, wordlist)
            rules = RecordRules(TagPolicy("text", self.opts.owner_field, "id", self.opts.position, None,
                                          self.opts.fraction), job_selection(led, self.opts))
            for doc in data or ():
                with self.track_time():
                    self._tag(doc, rules, ghosts, pending)
                yield doc
            os.makedirs(self.manifest_dir, exist_ok=True)
            write_manifest(pending, os.path.join(self.manifest_dir, f"{rank:05d}.parquet"),
                           {"job": self.label, "rank": rank, "selection": rules.selection.rule()})

    def _tag(self, doc: Any, rules: RecordRules, ghosts: LedgerGhosts, pending: list) -> None:
        record = {"text": doc.text, "id": doc.id, "metadata": doc.metadata}
        try:
            rt = tag_record(record, ghosts, rules, 0)
        except BadRecord:
            self.stat_update("bad")
            return
        self.stat_update(rt.tag.status)
        if rt.tag.status == TAGGED:
            doc.text = rt.tag.new_text
            pending.append(rt.tag.insertion(rt.ghost.identifier_id, f"{self.label}:id={doc.id}", self.opts.position))
