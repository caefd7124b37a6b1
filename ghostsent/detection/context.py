"""Context probes: show the model the text that came before a ghost in one of its documents.

A model trained on a document saw the ghost in context, so a probe that shows that context first asks
the way the model learned. The p-value stays valid: the text before the ghost was written without
knowing the passphrase (ghostsent inserts a ghost into existing text), so it is independent of the
held-out words, and which document and copy is used is chosen from the ledger's records alone (the
recorded insertion with the earliest offset in the first readable document, by insertion order) —
never by looking at the words. A copy whose text before it holds an earlier copy would reveal
everything, which is why the earliest recorded copy in a document is the one used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ghostsent.errors import InputError

MAX_CONTEXT_WORDS = 60    # enough for the model to recognise the passage, short enough for any prompt
READ_LIMIT = 50_000_000   # bytes: a document bigger than this is not read for a context


def _excerpt(text: str, max_words: int) -> str:
    """The last `max_words` words of `text` (a whole paragraph at most), whitespace kept inside lines."""
    para = text.rsplit("\n\n", 1)[-1]
    words = para.split()
    return " ".join(words[-max_words:])


def document_context(ledger: Any, identifier_id: str, max_words: int = MAX_CONTEXT_WORDS) -> tuple[str, str]:
    """(the text before the identifier's earliest recorded copy in one of its documents, that document).

    InputError (one line) when no recorded document can be read with the ghost at its recorded place."""
    ident = ledger.get(identifier_id)
    ghost_text = ident.ghost.text
    by_doc: dict[str, list[int]] = {}
    for ins in ledger.insertions(ident.id):
        by_doc.setdefault(ins.document, []).append(ins.offset)
    problems = []
    for doc, offsets in by_doc.items():
        path = Path(doc)
        try:
            if not path.is_file() or path.stat().st_size > READ_LIMIT:
                problems.append(f"{doc}: not a readable file")
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            problems.append(f"{doc}: {e.strerror}")
            continue
        first = min(offsets)
        at = text.find(ghost_text, max(0, first), first + len(ghost_text) + 16)
        if at < 0:
            problems.append(f"{doc}: the ghost is no longer at its recorded offset {first}")
            continue
        before = _excerpt(text[:at], max_words)
        if before:
            return before, doc
        problems.append(f"{doc}: no text before the ghost")
    detail = "; ".join(problems[:3]) if problems else "no insertions recorded"
    raise InputError(f"identifier {ident.id}: no document context available ({detail})")
