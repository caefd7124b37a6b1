"""Where `ghostsent survive` gets its documents: a folder, a JSONL corpus, or the ledger's own insertions.

Ghosts come from the ledger (every identifier, or one owner's). A document is tagged with every ghost
whose text (as insertion writes it) it contains; its untagged twin is the text with that inserted span
removed, so filters can be compared with and without the ghost. Reports name ghosts by identifier id,
never by passphrase.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ghostsent.errors import InputError
from ghostsent.survive.screen import as_inserted
from ghostsent.survive.stages import Doc

TEXT_SUFFIXES = (".txt", ".md", ".markdown")


def ghosts_from_ledger(ledger: Any, owner: str | None = None) -> dict[str, str]:
    idents = ledger.identifiers(owner)
    if not idents:
        raise InputError(f"no identifiers{' for owner ' + repr(owner) if owner else ''} in {ledger.path}")
    return {i.id: as_inserted(i.text) for i in idents}


def untag(text: str, ghost: str) -> str:
    """`text` without the inserted span of `ghost` (the ghost and the one space insertion added)."""
    i = text.find(ghost)
    if i < 0:
        return text
    j = i + len(ghost)
    if i > 0 and text[i - 1] == " ":
        return text[:i - 1] + text[j:]
    if text[j:j + 1] == " ":
        return text[:i] + text[j + 1:]
    return text[:i] + text[j:]


def make_doc(doc_id: str, text: str, ghosts: dict[str, str], lang: str) -> Doc:
    found = tuple(g for g, t in ghosts.items() if t in text)
    twin = None
    if found:
        twin = text
        for g in found:
            twin = untag(twin, ghosts[g])
    return Doc(doc_id, text, found, twin, lang)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 at byte {e.start}") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


def _jsonl_records(path: Path, text_field: str) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="strict") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise InputError(f"{path}, line {n}: not valid JSON ({e})") from None
            text = obj.get(text_field) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                raise InputError(f"{path}, line {n}: missing text field {text_field!r}")
            yield n, text


def documents_from_source(source: Path, ghosts: dict[str, str], text_field: str = "text",
                          lang: str = "en") -> Callable[[], Iterator[Doc]]:
    """A folder of text/Markdown files (recursive, sorted) or a JSONL file, as a re-readable stream."""
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise InputError(f"{source}: no {', '.join(TEXT_SUFFIXES)} files")
        return lambda: (make_doc(str(p.relative_to(source)), _read_text(p), ghosts, lang) for p in files)
    if source.is_file():
        return lambda: (make_doc(f"{source.name}:line {n}", t, ghosts, lang)
                        for n, t in _jsonl_records(source, text_field))
    raise InputError(f"{source}: no such file or folder")


@dataclass(frozen=True)
class _Ref:
    file: Path
    line: int | None  # None: a whole file


def _parse_document(name: str) -> _Ref:
    head, sep, tail = name.rpartition(":line ")
    if sep and tail.isdigit():
        return _Ref(Path(head), int(tail))
    return _Ref(Path(name), None)


def documents_from_ledger(ledger: Any, ghosts: dict[str, str], owner: str | None, text_field: str = "text",
                          lang: str = "en") -> Callable[[], Iterator[Doc]]:
    """The documents the ledger says were tagged (files, and `IN.jsonl:line N` records), each once."""
    refs = sorted({_parse_document(i.document) for g in ghosts for i in ledger.insertions(g)},
                  key=lambda r: (str(r.file), r.line or 0))
    if not refs:
        raise InputError(f"the ledger has no insertions{' for owner ' + repr(owner) if owner else ''}")
    for r in refs:
        if not r.file.is_file():
            raise InputError(f"{r.file}: recorded in the ledger but missing (moved or deleted?)")

    def read() -> Iterator[Doc]:
        by_file: dict[Path, set[int]] = {}
        for r in refs:
            if r.line is None:
                yield make_doc(str(r.file), _read_text(r.file), ghosts, lang)
            else:
                by_file.setdefault(r.file, set()).add(r.line)
        for f, lines in by_file.items():
            for n, t in _jsonl_records(f, text_field):
                if n in lines:
                    doc = make_doc(f"{f.name}:line {n}", t, ghosts, lang)
                    if not doc.ghosts:  # tag-jsonl records its INPUT's line numbers
                        raise InputError(f"{f}, line {n}: holds no ghost; the ledger names tag-jsonl's input file, "
                                         "so pass the tagged output (OUT.jsonl) as SOURCE")
                    yield doc

    return read


def survive_corpus(ledger: Any, source: Path | None, owner: str | None = None, text_field: str = "text",
                   lang: str = "en", tokenizer: str = "bpe", groups=None, log=None):
    """`ghostsent survive` in one call: documents and ghosts in, SurvivalReport out."""
    from ghostsent.survive.pipeline import STAGE_GROUPS, default_stages, run_survival

    ghosts = ghosts_from_ledger(ledger, owner)
    docs = documents_from_ledger(ledger, ghosts, owner, text_field, lang) if source is None else \
        documents_from_source(source, ghosts, text_field, lang)
    tok = load_tokenizer(tokenizer)
    stages = default_stages(lang, tok, groups or STAGE_GROUPS)
    settings = {"source": str(source) if source else f"ledger insertions ({owner or 'all owners'})",
                "lang": lang, "tokenizer": tok.name, "stages": [s.name for s in stages]}
    return run_survival(docs(), ghosts, stages, log=log, settings=settings)


def load_tokenizer(name: str):
    """`bpe`: the embedded model's BPE tokenizer; `regex`: GPT-2's pre-tokenizer (no model needed)."""
    from ghostsent.survive.stages import embedded_bpe, regex_tokenizer

    if name == "regex":
        return regex_tokenizer()
    if name == "bpe":
        return embedded_bpe()
    raise InputError(f"unknown tokenizer {name!r} (choose bpe or regex)")
