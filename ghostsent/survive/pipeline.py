"""Run documents through the survival pipeline and count what comes out.

Documents stream from one spill file (JSONL in a temp folder) to the next, so memory holds one document
at a time plus whatever a deduplication stage itself needs (hash sets, the token array of the suffix
array). Per stage the report says: documents in and kept, tagged documents in and kept, ghost copies in
and kept, which ghosts lost their last copy, and for filters how many untagged twins passed and how many
pages were dropped only because of their ghost.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ghostsent.survive.stages import (Doc, ExactDocument, ExactSubstring, Extract, LineDedup, MinHash, Normalise,
                                      SentenceSpans, Stage, paragraph_dedup, standard_filters)

STAGE_GROUPS = ("extract", "filters", "dedup", "normalise")


@dataclass
class StageReport:
    name: str
    kind: str
    library: str
    docs_in: int
    docs_kept: int
    tagged_in: int
    tagged_kept: int
    copies_in: int
    copies_kept: int
    ghosts_in: int
    ghosts_lost: list[str]
    seconds: float
    side_branch: bool = False
    untagged_kept: int | None = None           # filters: tagged documents whose untagged twin passed
    dropped_because_of_ghost: int | None = None  # ... and that were dropped with their ghost
    copies_where_untagged_kept: int | None = None  # ghost copies kept in documents whose twin passed
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def copy_share(self) -> float | None:
        return self.copies_kept / self.copies_in if self.copies_in else None

    @property
    def filter_share(self) -> float | None:
        """Filters: the share of ghost copies kept where the untagged document passed (goal >= 99%)."""
        if not self.untagged_kept or self.copies_where_untagged_kept is None:
            return None
        return self.copies_where_untagged_kept / self.untagged_kept


@dataclass
class SurvivalReport:
    stages: list[StageReport]
    documents: int
    tagged_documents: int
    ghosts: int
    copies: int
    settings: dict
    seconds: float = 0.0
    final_copies: dict[str, int] = field(default_factory=dict)  # per ghost, after the last main-line stage

    @property
    def losses(self) -> list[StageReport]:
        """Stages that lost a ghost copy (what --exit-code reacts to)."""
        return [s for s in self.stages if s.copies_kept < s.copies_in]

    def to_dict(self) -> dict:
        d = asdict(self)
        for s, sd in zip(self.stages, d["stages"]):
            sd["copy_share"] = s.copy_share
            sd["filter_share"] = s.filter_share
        d["losses"] = [s.name for s in self.losses]
        return d


def default_stages(lang: str = "en", tokenizer=None, groups: Iterable[str] = STAGE_GROUPS) -> list[Stage]:
    """The pipeline: extraction, FineWeb's filters (+ C4 bad words), deduplication, normalisation."""
    groups = set(groups)
    stages: list[Stage] = []
    if "extract" in groups:
        stages += [Extract(extractor="resiliparse"), Extract()]
    if "filters" in groups:
        stages += standard_filters(lang)
    if "dedup" in groups:
        stages += [ExactDocument(), MinHash(lang=lang), SentenceSpans(lang=lang), LineDedup(), paragraph_dedup(),
                   ExactSubstring(threshold=50, tokenizer=tokenizer), ExactSubstring(threshold=30, tokenizer=tokenizer)]
    if "normalise" in groups:
        stages += [Normalise(how=h) for h in ("nfkc", "ftfy", "quotes", "whitespace", "lowercase")]
    return stages


def _write(path: Path, docs: Iterable[Doc]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps(d.to_json(), ensure_ascii=False) + "\n")


def _reader(path: Path) -> Callable[[], Iterator[Doc]]:
    def read() -> Iterator[Doc]:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                yield Doc.from_json(json.loads(line))
    return read


@dataclass
class _Tally:
    docs: int = 0
    tagged: int = 0
    copies: int = 0
    twin_copies: int = 0  # copies in documents that still carry their untagged twin
    per_ghost: dict[str, int] = field(default_factory=dict)


def _tally(docs: Iterable[Doc], ghosts: dict[str, str], out: Path | None) -> _Tally:
    """Count documents and ghost copies found in them (writing them to `out` on the way)."""
    t = _Tally()
    fh = open(out, "w", encoding="utf-8") if out is not None else None
    try:
        for d in docs:
            t.docs += 1
            found = [g for g in d.ghosts if ghosts[g] in d.text]
            t.tagged += bool(d.ghosts)
            t.copies += len(found)
            t.twin_copies += len(found) if d.twin is not None else 0
            for g in found:
                t.per_ghost[g] = t.per_ghost.get(g, 0) + 1
            if fh is not None:
                fh.write(json.dumps(d.to_json(), ensure_ascii=False) + "\n")
    finally:
        if fh is not None:
            fh.close()
    return t


def run_survival(docs: Iterable[Doc], ghosts: dict[str, str], stages: list[Stage],
                 log: Callable[[str], None] | None = None, settings: dict | None = None,
                 sink: list | None = None) -> SurvivalReport:
    """Run `docs` (with `ghosts`: id -> ghost text as inserted) through `stages` and report. `sink`, if
    given, receives the documents the last main-line stage kept (what a model would be trained on)."""
    t0 = time.perf_counter()
    ghosts = dict(ghosts)
    with tempfile.TemporaryDirectory(prefix="ghostsent-survive-") as tmp:
        cur = Path(tmp) / "in.jsonl"
        start = _tally(docs, ghosts, cur)
        before = start
        reports = []
        for i, stage in enumerate(stages):
            if log:
                log(f"{stage.name} ...")
            t1 = time.perf_counter()
            out = Path(tmp) / f"s{i}.jsonl"
            after = _tally(stage.run(_reader(cur)), _matchers(ghosts, stage), out)
            reports.append(_report(stage, before, after, time.perf_counter() - t1))
            if stage.side_branch:
                continue
            ghosts = _matchers(ghosts, stage)
            cur, before = out, after
        if sink is not None:
            sink.extend(_reader(cur)())
    return SurvivalReport(reports, start.docs, start.tagged, len(ghosts), start.copies, settings or {},
                          round(time.perf_counter() - t0, 2), dict(before.per_ghost))


def _matchers(ghosts: dict[str, str], stage: Stage) -> dict[str, str]:
    fn = getattr(stage, "ghost_transform", None)
    return {k: fn(v) for k, v in ghosts.items()} if fn else ghosts


def _report(stage: Stage, before: _Tally, after: _Tally, seconds: float) -> StageReport:
    lost = sorted(g for g, n in before.per_ghost.items() if n and not after.per_ghost.get(g))
    is_filter = stage.kind in ("filter", "extract")
    return StageReport(
        name=stage.name, kind=stage.kind, library=stage.library, docs_in=before.docs, docs_kept=after.docs,
        tagged_in=before.tagged, tagged_kept=after.tagged, copies_in=before.copies, copies_kept=after.copies,
        ghosts_in=sum(1 for n in before.per_ghost.values() if n), ghosts_lost=lost, seconds=round(seconds, 2),
        side_branch=stage.side_branch,
        untagged_kept=stage.counters.get("untagged_kept", 0) if is_filter else None,
        dropped_because_of_ghost=stage.counters.get("dropped_because_of_ghost", 0) if is_filter else None,
        copies_where_untagged_kept=after.twin_copies if is_filter else None,
        counters={k: v for k, v in stage.counters.items() if k not in ("untagged_kept", "dropped_because_of_ghost")},
    )


TRAINING_GROUPS = ("extract", "filters", "dedup")


def through_pipeline(texts: list[str], originals: list[str], carriers: dict[int, tuple[str, str]], lang: str = "en",
                     tokenizer=None, log: Callable[[str], None] | None = None, keep_ids: bool = False
                     ) -> tuple[list[str], SurvivalReport]:
    """What a pipeline would keep of a training corpus (`study --pipeline default`): `texts[i]` carries
    the ghost `carriers[i] = (id, ghost text as inserted)`, `originals[i]` is it untagged. Returns the
    kept texts (extraction, filters and dedup; normalisation only checks matching), or with `keep_ids`
    the indices (as strings) of the kept documents, and the report."""
    ghosts = {gid: g for gid, g in carriers.values()}
    docs = (Doc(str(i), t, (carriers[i][0],) if i in carriers else (), originals[i] if i in carriers else None, lang)
            for i, t in enumerate(texts))
    kept: list[Doc] = []
    report = run_survival(docs, ghosts, default_stages(lang, tokenizer, TRAINING_GROUPS), log=log, sink=kept)
    return [d.id if keep_ids else d.text for d in kept], report
