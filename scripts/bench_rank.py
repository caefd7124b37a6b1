"""Cost of the local word-rank test's multi-token refinement on the embedded model (CPU).

    python scripts/bench_rank.py [--ids 4] [--words 12] [--template post] [--seed 0]

Times, on the same fresh identifiers (never inserted: the model is innocent of them), the leading-token
rule and the refined rule (full-word scores, at most rank.REFINE_CAP per position), and prints the
ratio, the per-position candidate counts and how often the refined count is below / above the
leading-token count. Also measures the batch-to-batch noise of full-word scores (the same words scored
in a batch of their own vs inside a larger batch) against the tolerance HFTarget uses.
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=4)
    ap.add_argument("--words", type=int, default=12)
    ap.add_argument("--template", default="post")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from ghostsent.detection import rank
    from ghostsent.passphrase import Ghost, draw_words, resolve_template
    from ghostsent.targets import load_target
    from ghostsent.wordlists import load_wordlist

    t = load_target(None)
    wl = load_wordlist()
    rng = random.Random(a.seed)
    ghosts = [Ghost(draw_words(wl, a.words, rng), resolve_template(a.template)) for _ in range(a.ids)]
    rank.rank_tests(t, ghosts[:1], wl.words, refine=False)  # warm up (tokenizer caches, first forward)
    t0 = time.perf_counter()
    lead = rank.rank_tests(t, ghosts, wl.words, refine=False)
    t_lead = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = rank.rank_tests(t, ghosts, wl.words)
    t_ref = time.perf_counter() - t0
    cl = np.array([c for r in lead for c in r.at_or_above])
    cr = np.array([c for r in ref for c in r.at_or_above])
    cand = np.array([c for r in ref for c in r.candidates])
    print(f"leading-token rule: {t_lead / a.ids:.2f} s per identifier; refined: {t_ref / a.ids:.2f} s "
          f"per identifier; ratio {t_ref / t_lead:.1f}x ({len(cl)} positions, cap {rank.REFINE_CAP})")
    print(f"candidates per position: median {np.median(cand):.0f}, max {cand.max()}, "
          f"over the cap {np.mean(cand > rank.REFINE_CAP):.0%}")
    print(f"refined count < leading {np.mean(cr < cl):.0%}, = {np.mean(cr == cl):.0%}, > {np.mean(cr > cl):.0%}; "
          f"median log10 p: leading {np.median([np.log10(r.p_value) for r in lead]):.2f}, "
          f"refined {np.median([np.log10(r.p_value) for r in ref]):.2f}")
    famous = tuple("to be or not to be that is the question".split())
    known = tuple(wl.words) + tuple(w for w in dict.fromkeys(famous) if w not in wl.words)
    [kl] = rank.rank_tests(t, [Ghost(famous, "{words}")], known, refine=False)
    [kr] = rank.rank_tests(t, [Ghost(famous, "{words}")], known)
    print(f"known text (Hamlet, words added to the list): leading p {kl.p_value:.1e} counts {kl.at_or_above}; "
          f"refined p {kr.p_value:.1e} counts {kr.at_or_above}")
    toks = rank._word_tokens(t, wl.words)
    ctx = rank.context(ghosts[0], 3)
    multi = [i for i, x in enumerate(toks) if len(x) > 1][:300]
    big = t.rest_logprobs([ctx] * len(multi), [toks[i] for i in multi])
    small = np.concatenate([t.rest_logprobs([ctx], [toks[i]]) for i in multi[:40]])
    other = t.rest_logprobs([ctx, "x"] * 20, [toks[i] for i in multi[:40]])[::2]  # unshared, padded batch
    print(f"batch noise of full-word scores: max |diff| {np.max(np.abs(big[:40] - small)):.2e} nats, "
          f"shared vs separate contexts {np.max(np.abs(other - small[::2])):.2e} "
          f"(tolerance {t.word_score_tolerance:g})")


if __name__ == "__main__":
    main()
