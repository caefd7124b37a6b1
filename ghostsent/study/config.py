"""The study's configuration: the grid (StudyConfig), the name of each run, and every check that can be
made before a model is loaded or trained."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from ghostsent.errors import InputError
from ghostsent.passphrase import DEFAULT_TEMPLATE, NATURAL, TEMPLATES, resolve_template

SCREENS = ("none", "pipeline")


@dataclass
class StudyConfig:
    corpus: str = "builtin:kjv"
    text_field: str = "text"
    owner_field: str | None = None
    min_words: int = 100
    max_words: int | None = 160      # documents are cut to an excerpt of at most this many words
    n_documents: int = 500           # documents in the training corpus (carriers + untouched ones)
    repetitions: tuple[int, ...] = (1, 2, 3, 5, 10, 20)
    ids_per_cell: int = 10           # enough for a detection rate with a useful Wilson interval
    n_controls: int = 40             # never-inserted identifiers per run
    words: tuple[int, ...] = (12,)
    positions: tuple[str, ...] = ("latter-half",)
    templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)  # what `new` and `tag` draw by default
    wordlists: tuple[str, ...] = ("en",)
    model: str | None = None         # default = the embedded model
    gguf: str | None = None
    method: str = "full"             # or "lora"
    lr: float | None = None
    epochs: int = 2                  # each document is seen twice; repetitions count documents
    seq_len: int = 256
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int | None = None
    n_nulls: int = 1000
    ks: tuple[int, ...] = (2, 3, 4)
    probe_modes: tuple[str, ...] = ("raw",)
    alpha: float = 1e-3
    seed: int = 0
    pipeline: str | None = None      # "default": train on what `ghostsent survive`'s stages keep
    screen: str = "none"             # "pipeline": the corpus holds only pages the pipeline keeps untagged
    device: str | None = None        # None: CUDA when present, else CPU (training and detection)
    # Dilution axis: a run with dilution d trains on the same carriers and ghosts plus (d-1) x n_documents
    # untouched documents, so the ghosts are d times rarer in the corpus.
    dilutions: tuple[int, ...] = (1,)

    def runs(self) -> list[dict[str, Any]]:
        return [
            {"words": w, "position": p, "template": t, "wordlist": wl, "dilution": d}
            for w, p, t, wl, d in product(self.words, self.positions, self.templates, self.wordlists, self.dilutions)
        ]

    def carriers_needed(self) -> int:
        return self.ids_per_cell * sum(self.repetitions)

    def documents_needed(self) -> int:
        """Documents the corpus must supply: n_documents for the carriers, more for the largest dilution."""
        return self.n_documents * max(self.dilutions)

    def to_dict(self) -> dict[str, Any]:
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}
        if d["pipeline"] is None:
            del d["pipeline"]  # studies run before the option existed keep their configuration
        if d["screen"] == "none":
            del d["screen"]  # likewise
        if d.get("device") is None:
            d.pop("device", None)
        if d["dilutions"] == [1]:
            del d["dilutions"]  # likewise: an undiluted study's configuration (and folder) is unchanged
        return d


def base_key(r: dict[str, Any]) -> str:
    """A run's name without its dilution: it seeds the identifiers, carriers and nulls, so every
    dilution of a run plants the same ghosts in the same documents."""
    tpl = r["template"] if r["template"] in (*TEMPLATES, NATURAL) else "custom"
    return f"w{r['words']}-{r['position']}-{tpl}-{Path(str(r['wordlist'])).stem}"


def run_key(r: dict[str, Any]) -> str:
    """The run's folder name: base_key, with "-d<d>" for a dilution d > 1 (undiluted names unchanged)."""
    d = int(r.get("dilution", 1))
    return base_key(r) + (f"-d{d}" if d != 1 else "")


def validate(cfg: StudyConfig) -> None:
    """Every grid problem is reported before a model is loaded or trained."""
    if not cfg.repetitions or min(cfg.repetitions) < 1:
        raise InputError("repetitions must be positive integers", hint="repetitions")
    if cfg.max_words is not None and cfg.max_words < cfg.min_words:
        raise InputError(f"max_words {cfg.max_words} is below min_words {cfg.min_words}", hint="max_words")
    if cfg.ids_per_cell < 1 or cfg.n_controls < 1:
        raise InputError("ids_per_cell and n_controls must be at least 1", hint="ids_per_cell")
    if cfg.carriers_needed() > cfg.n_documents:
        raise InputError(
            f"grid needs {cfg.carriers_needed()} carrier documents ({cfg.ids_per_cell} identifiers x "
            f"repetitions {list(cfg.repetitions)}), but n_documents is {cfg.n_documents}: each document carries "
            "at most one ghost sentence", hint="documents")
    if cfg.n_nulls < 1 / cfg.alpha:
        raise InputError(
            f"n_nulls {cfg.n_nulls} cannot give p < {cfg.alpha:g} (smallest p is 1/(N+1)); use at least {int(1 / cfg.alpha)}",
            hint="nulls")
    if not cfg.dilutions or min(cfg.dilutions) < 1 or len(set(cfg.dilutions)) != len(cfg.dilutions):
        raise InputError(f"dilutions {list(cfg.dilutions)} must be distinct integers >= 1", hint="dilution")
    if cfg.pipeline not in (None, "default"):
        raise InputError(f"unknown pipeline {cfg.pipeline!r} (choose default)", hint="pipeline")
    if cfg.screen not in SCREENS:
        raise InputError(f"unknown corpus screen {cfg.screen!r} (choose {' or '.join(SCREENS)})", hint="screen")
    from ghostsent.insert import POSITIONS
    from ghostsent.wordlists import load_wordlist

    for r in cfg.runs():
        if r["position"] not in POSITIONS:
            raise InputError(f"unknown position {r['position']!r} (choose from {', '.join(POSITIONS)})")
        resolve_template(r["template"])
        load_wordlist(r["wordlist"])
        if not all(1 <= k < r["words"] for k in cfg.ks):
            raise InputError(f"k values {list(cfg.ks)} must be below the passphrase length {r['words']}", hint="k")
