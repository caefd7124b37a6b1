"""ghostsent: insert ghost sentences into your text, then test whether a language model memorised them.

The library API follows the pipeline (see docs/architecture.md):

    from ghostsent import load_wordlist, Ledger, insert, load_target, run_detection
    wl = load_wordlist("en")
    with Ledger("ghostsent.db") as ledger:
        ident = ledger.new_identifier("me", wl, 12, "post")
    new_text, offset = insert(text, ident.ghost.text)

Names are imported lazily so that `import ghostsent` (and the CLI) does not load torch until a model is
actually needed.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "load_wordlist": "ghostsent.wordlists",
    "WordList": "ghostsent.wordlists",
    "Ghost": "ghostsent.passphrase",
    "new_ghost": "ghostsent.passphrase",
    "draw_words": "ghostsent.passphrase",
    "insert": "ghostsent.insert",
    "Ledger": "ghostsent.ledger",
    "Identifier": "ghostsent.ledger",
    "load_target": "ghostsent.targets",
    "run_probe": "ghostsent.detection.probe",
    "check_reply": "ghostsent.detection.probe",
    "check_replies": "ghostsent.detection.probe",
    "ppl_test": "ghostsent.detection.perplexity",
    "run_detection": "ghostsent.detection.engine",
    "run_session": "ghostsent.detection.session",
    "ModelChoice": "ghostsent.detection.session",
    "DetectionSettings": "ghostsent.detection.results",
    "Subject": "ghostsent.detection.subjects",
    "subjects_from_ledger": "ghostsent.detection.subjects",
    "write_report": "ghostsent.detection.report",
    "run_study": "ghostsent.study.runner",
    "StudyConfig": "ghostsent.study.config",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ghostsent' has no attribute {name!r}")
