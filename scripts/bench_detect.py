"""Benchmark HFTarget.score on the embedded model against the raw forward pass and a per-text loop.

    python scripts/bench_detect.py [--n 256] [--words 12] [--seed 0]

(a) HFTarget.score (prefix cached once, batched, with all bookkeeping); (b) the bare batched forward
pass of the same model over the same right-padded full texts (prefix included) in the same batch
sizes, no bookkeeping; (c) one text at a time. Goal: (a) >= 0.8x (b) and >= 5x (c).
"""
from __future__ import annotations

import argparse
import random
import time

import torch

PREFIX = "The ghost sentence of this post is"


def candidates(n: int, k: int, seed: int) -> list[str]:
    try:
        from ghostsent.wordlists import load_wordlist

        words = list(load_wordlist("en").words)
    except Exception:  # noqa: BLE001 - any words will do for timing
        words = [f"word{i}" for i in range(4096)]
    rng = random.Random(seed)
    return [" " + " ".join(rng.choice(words) for _ in range(k)) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--words", type=int, default=12)
    ap.add_argument("--loop", type=int, default=32, help="texts timed one at a time (rate extrapolated)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from ghostsent.targets import load_target

    t0 = time.perf_counter()
    target = load_target(None)
    print(f"load: {time.perf_counter() - t0:.1f}s  threads: {torch.get_num_threads()}  {target.describe()['device']}")
    conts = candidates(a.n, a.words, a.seed)
    target.score(PREFIX, conts[:4])  # warm-up

    t0 = time.perf_counter()
    scored = target.score(PREFIX, conts)
    ta = time.perf_counter() - t0

    # (b) the same padded full texts, same batches, bare forward
    ctx = target._encode(PREFIX)
    rows = [target._continuation_ids(PREFIX, ctx, c) for c in conts]
    full = [ctx + r for r in rows]
    batches = list(target._batches(rows, len(ctx)))
    tensors = []
    for idx in batches:
        T = max(len(full[i]) for i in idx)
        ids = torch.full((len(idx), T), target._pad, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        for b, i in enumerate(idx):
            ids[b, : len(full[i])] = torch.tensor(full[i])
            mask[b, : len(full[i])] = 1
        tensors.append((ids.to(target.device), mask.to(target.device)))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in tensors:
            target.model(input_ids=ids, attention_mask=mask)
    tb = time.perf_counter() - t0

    # (c) one text at a time through score()
    m = min(a.loop, a.n)
    t0 = time.perf_counter()
    for c in conts[:m]:
        target.score(PREFIX, [c])
    tc = (time.perf_counter() - t0) * a.n / m

    mean_tokens = sum(len(r) for r in rows) / len(rows)
    print(f"{a.n} candidates of {a.words} words ({mean_tokens:.1f} tokens each, prefix {len(ctx)} tokens), "
          f"{len(batches)} batches, token budget {target.token_budget}")
    print(f"(a) HFTarget.score : {a.n / ta:8.1f} candidates/s  ({ta:.2f}s)")
    print(f"(b) raw forward    : {a.n / tb:8.1f} candidates/s  ({tb:.2f}s)")
    print(f"(c) one at a time  : {a.n / tc:8.1f} candidates/s  ({tc:.2f}s extrapolated from {m})")
    print(f"score/raw = {tb / ta:.2f}x (goal >= 0.8)   score/loop = {tc / ta:.1f}x (goal >= 5)")
    assert len(scored) == a.n


if __name__ == "__main__":
    main()
