#!/usr/bin/env python3
"""Measure ghost survival through the pipeline on a real corpus (the figures in docs/survival.md).

KJV chapters (Debian's bible-kjv, one document per chapter), ghosts of 12 words from the shipped English
list inserted at several repetition counts (one ghost per document), run through every stage of
`ghostsent survive`, for three placements:

* `default`: ghostsent's insertion (latter half, ranked boundaries), template "none";
* `default-post`: the same with the template "post" ("The ghost sentence of this post is ..."), a ghost
  about 8 tokens longer;
* `own-paragraph`: the naive contrast, the ghost as a paragraph of its own in the second half.

Usage: python scripts/survival_study.py [--documents 400] [--out docs/survival] [--tokenizer bpe]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ghostsent.study.corpus import load_corpus  # noqa: E402
from ghostsent.insert import insert  # noqa: E402
from ghostsent.passphrase import TEMPLATES, draw_words  # noqa: E402
from ghostsent.survive.inputs import load_tokenizer  # noqa: E402
from ghostsent.survive.pipeline import default_stages, run_survival  # noqa: E402
from ghostsent.survive.report import funnel_png, markdown  # noqa: E402
from ghostsent.survive.screen import as_inserted  # noqa: E402
from ghostsent.survive.stages import Doc  # noqa: E402
from ghostsent.wordlists import load_wordlist  # noqa: E402

REPETITIONS = (1, 2, 3, 5, 8, 12, 20)
GHOSTS_PER_COUNT = 2


def own_paragraph(text: str, ghost: str, rng: random.Random) -> str:
    """The ghost as its own paragraph at a random paragraph break in the second half (or at the end)."""
    breaks = [i for i in range(len(text)) if text.startswith("\n\n", i) and i >= len(text) / 2] or [len(text)]
    i = rng.choice(breaks)
    return text[:i] + "\n\n" + ghost + "\n\n" + text[i:].lstrip("\n")


def build(texts: list[str], placement: str, seed: int) -> tuple[list[Doc], dict[str, str]]:
    rng = random.Random(seed)
    wl = load_wordlist("en")
    template = TEMPLATES["post"] if placement == "default-post" else TEMPLATES["none"]
    ghosts, owner = {}, {}
    order = list(range(len(texts)))
    rng.shuffle(order)
    for r in REPETITIONS:
        for k in range(GHOSTS_PER_COUNT):
            gid = f"r{r}-{k}"
            ghosts[gid] = as_inserted(template.replace("{words}", " ".join(draw_words(wl, 12, rng))))
            for _ in range(r):
                owner[order.pop()] = gid
    docs = []
    for i, text in enumerate(texts):
        gid = owner.get(i)
        if gid is None:
            docs.append(Doc(f"kjv{i}", text))
        elif placement == "own-paragraph":
            docs.append(Doc(f"kjv{i}", own_paragraph(text, ghosts[gid], rng), (gid,), text))
        else:
            docs.append(Doc(f"kjv{i}", insert(text, ghosts[gid], rng=rng)[0], (gid,), text))
    return docs, ghosts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--documents", type=int, default=400)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "survival")
    ap.add_argument("--tokenizer", default="bpe", choices=["bpe", "regex"])
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    texts = [d.text for d in load_corpus("builtin:kjv", min_words=100, limit=args.documents)]
    tok = load_tokenizer(args.tokenizer)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"corpus": f"builtin:kjv, {len(texts)} chapters >= 100 words", "tokenizer": tok.name,
               "repetitions": REPETITIONS, "ghosts_per_count": GHOSTS_PER_COUNT, "runs": {}}
    for placement in ("default", "default-post", "own-paragraph"):
        t0 = time.perf_counter()
        docs, ghosts = build(texts, placement, args.seed)
        tokens = sorted(len(tok.encode(g)[0]) for g in ghosts.values())
        rep = run_survival(docs, ghosts, default_stages("en", tok), settings={"placement": placement})
        results["runs"][placement] = {**rep.to_dict(), "ghost_tokens": tokens}
        (args.out / f"{placement}.md").write_text(markdown(rep), encoding="utf-8")
        funnel_png(rep, args.out / f"funnel_{placement}.png")
        print(f"{placement}: {time.perf_counter() - t0:.0f} s, ghost tokens {tokens[0]}-{tokens[-1]}", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
