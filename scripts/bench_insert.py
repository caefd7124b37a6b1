#!/usr/bin/env python
"""Throughput of `tag-jsonl` against a plain read-parse-serialise-write loop (same JSON library).

Generates a JSONL corpus of --size-mb (default 100 MB) in a temp dir with random-ish sentences and
several owners, then times (1) the baseline loop `json.loads` + `json.dumps` + write, and (2) the real
tag-jsonl code path (ghostsent.tagging.tag_jsonl with a real SQLite ledger, checkpoints and fsyncs).
Prints MB/s for both and the ratio; the goal is >= 0.7.

    python scripts/bench_insert.py [--size-mb 100] [--owners 50] [--max-per-owner 1000] [--fraction F]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which "
         "but have an they you were her she there been one all we their has would when if so no will "
         "data model river garden quantum lantern harbour violet engine meadow signal copper thunder").split()


def make_corpus(path: Path, size_mb: float, owners: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    target = int(size_mb * 1_000_000)
    n = 0
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            sents = []
            for _ in range(rng.randint(3, 12)):
                ws = [rng.choice(WORDS) for _ in range(rng.randint(5, 20))]
                sents.append(" ".join(ws).capitalize() + rng.choice([".", ".", ".", "!", "?"]))
            rec = {"id": f"doc-{n}", "author": f"user{rng.randrange(owners)}", "lang": "en",
                   "body": " ".join(sents), "meta": {"source": "bench", "n": n}}
            line = json.dumps(rec) + "\n"
            f.write(line)
            written += len(line)
            n += 1
    return n


def baseline(inp: Path, out: Path) -> float:
    t0 = time.perf_counter()
    loads, dumps = json.loads, json.dumps
    with open(inp, "rb") as fin, open(out, "wb") as fout:
        for raw in fin:
            obj = loads(raw)
            fout.write(dumps(obj, ensure_ascii=True).encode("utf-8") + b"\n")
        fout.flush()
        os.fsync(fout.fileno())
    return time.perf_counter() - t0


def real(inp: Path, out: Path, ledger_path: Path, max_per_owner: int | None, fraction: float | None) -> tuple[float, dict]:
    from ghostsent.ledger import Ledger
    from ghostsent.tagging import JsonlOptions, tag_jsonl

    opts = JsonlOptions(text_field="body", owner_field="author", max_per_owner=max_per_owner, fraction=fraction)
    with Ledger(ledger_path) as led:
        t0 = time.perf_counter()
        summary = tag_jsonl(led, str(inp), str(out), opts)
        return time.perf_counter() - t0, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=100.0)
    ap.add_argument("--owners", type=int, default=50)
    ap.add_argument("--max-per-owner", type=int, default=1000)
    ap.add_argument("--fraction", type=float, default=None)
    ap.add_argument("--dir", default=None, help="Work here instead of a fresh temp dir.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        d = Path(d)
        inp = d / "corpus.jsonl"
        t0 = time.perf_counter()
        n = make_corpus(inp, args.size_mb, args.owners)
        size = inp.stat().st_size
        mb = size / 1e6
        print(f"corpus: {n} records, {mb:.1f} MB, {args.owners} owners (generated in {time.perf_counter() - t0:.1f} s)")
        # Warm the page cache so neither side pays the first read.
        with open(inp, "rb") as f:
            while f.read(1 << 24):
                pass
        tb = baseline(inp, d / "base.jsonl")
        (d / "base.jsonl").unlink()
        tr, summary = real(inp, d / "tagged.jsonl", d / "ledger.db", args.max_per_owner, args.fraction)
        print(f"baseline read-parse-serialise-write (stdlib json): {tb:.2f} s, {mb / tb:.1f} MB/s")
        print(f"tag-jsonl ({summary['inserted']} insertions, max-per-owner={args.max_per_owner}, "
              f"fraction={args.fraction}): {tr:.2f} s, {mb / tr:.1f} MB/s")
        ratio = tb / tr
        print(f"ratio tag-jsonl / baseline throughput: {ratio:.2f}x (goal >= 0.7x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
