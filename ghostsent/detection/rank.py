"""The word-rank test: does the model predict each passphrase word far better than chance?

Under H0 ("the model never saw this identifier") the passphrase word W_j is uniform over the V list words
and independent of the model and of W_1..W_{j-1} (drawn with replacement). At position j the model is
shown the ghost's prefix and W_1..W_{j-1}; from its next-token prediction alone every list word gets a
score s_j(w) (the log-probability of the word's leading token: from the whole distribution for a local
model, from the top-N visible tokens for an API, where an unmatched word scores -inf). Then

    p_j = #{w in list : s_j(w) >= s_j(W_j)} / V

is super-uniform given the past (ties and unmatched words count against the ghost), and Fisher's
product over the positions is a valid p-value (stats.fisher_combine; the lemma in docs/statistics.md,
section 2b). No nulls are needed: the floor is about V^-n, not 1/(N+1).

Positions (fixed before looking): every word that has some text before it, i.e. all n words when the
template has a prefix, words 2..n when it has none. The test shows words 1..n-1, never the last.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from ghostsent.detection.probe import CHAT_INSTRUCTIONS
from ghostsent.errors import InputError
from ghostsent.passphrase import Ghost
from ghostsent.stats import fisher_combine
from ghostsent.targets.base import Target

DEFAULT_TOP_N = 20          # OpenAI's maximum top_logprobs
LOCAL, COMPLETIONS, CHAT = "local", "completions", "chat"
MODES = (LOCAL, COMPLETIONS, CHAT)


@dataclass
class RankTestResult:
    """One identifier's word-rank test: per position the count at or above the word, and its p."""

    mode: str                      # local (whole distribution), completions or chat (top-N)
    top_n: int | None              # visible alternatives per position (None: the whole distribution)
    positions: list[int]           # 0-based word indices tested
    at_or_above: list[int]         # list words scoring at least as well as the passphrase word
    visible: list[bool]            # the word matched some scored token (always True locally)
    p_positions: list[float]
    p_value: float                 # Fisher's product over the positions
    vocab_size: int
    prompts: list[Any] = field(default_factory=list)

    @property
    def first_place(self) -> int:
        """Positions where the passphrase word was (tied) first among the list words."""
        return sum(1 for c in self.at_or_above if c == 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("prompts")
        return d


def positions(ghost: Ghost) -> list[int]:
    """The tested word indices: those with text before them (fixed by the template, not the words)."""
    return list(range(0 if ghost.prefix else 1, len(ghost.words)))


def context(ghost: Ghost, j: int) -> str:
    """The text the model sees before word j: the prefix and words 0..j-1, no trailing space."""
    return (ghost.prefix + " " + " ".join(ghost.words[:j])).strip()


def chat_prompt(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": CHAT_INSTRUCTIONS[0].format(context=text)}]


def default_mode(target: Target) -> str:
    """The whole distribution where the model runs here; else completions if it takes raw text, else chat."""
    if target.computes_logprobs_locally:
        return LOCAL
    return COMPLETIONS if target.supports_raw else CHAT


def check_mode(target: Target, mode: str | None) -> str:
    """The mode to use: `mode` if given (InputError for an unknown one), else default_mode."""
    if mode is None:
        return default_mode(target)
    if mode not in MODES:
        raise InputError(f"unknown rank-test mode {mode!r} (choose from {', '.join(MODES)})")
    return mode


def count_at_or_above(scores: np.ndarray, index: int) -> int:
    """#{w : s(w) >= s(W)} for the word at `index` (itself included; a NaN never helps the ghost)."""
    s = np.where(np.isnan(scores), np.inf, scores)
    own = scores[index]
    return len(s) if np.isnan(own) else int(np.sum(s >= own))


@lru_cache(maxsize=8)
def _prefix_index(words: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every non-blank prefix of " word" and of "word" (lower case) -> the indices of the words it starts."""
    acc: dict[str, set[int]] = {}
    for i, w in enumerate(words):
        for form in (" " + w.lower(), w.lower()):
            for k in range(1, len(form) + 1):
                if form[:k].strip():
                    acc.setdefault(form[:k], set()).add(i)
    return {k: np.fromiter(v, dtype=np.int64) for k, v in acc.items()}


def match_scores(top: dict[str, float], words: Sequence[str]) -> np.ndarray:
    """Each list word's score from visible tokens: the best log-probability among tokens that are a
    (case-insensitive) prefix of " word" or of "word" (a chat reply's first token has no space).
    Whitespace-only tokens match nothing: they are a prefix of every word and would only tie the visible
    words with the invisible ones. Unmatched words score -inf (tied at the bottom, counted against).
    The rule looks at the tokens and the list only, never at which word is the passphrase's."""
    out = np.full(len(words), -np.inf)
    index = _prefix_index(tuple(words))
    for tok, lp in top.items():
        hit = index.get(tok.lower()) if tok.strip() else None
        if hit is not None:
            out[hit] = np.maximum(out[hit], lp)
    return out


def _result(mode: str, top_n: int | None, ghost: Ghost, pos: list[int], rows: np.ndarray, index: dict[str, int],
            vocab: int, prompts: list[Any]) -> RankTestResult:
    counts, vis = [], []
    for r, j in zip(rows, pos):
        i = index[ghost.words[j]]
        counts.append(count_at_or_above(r, i))
        vis.append(bool(np.isfinite(r[i])))
    ps = [c / vocab for c in counts]
    return RankTestResult(mode, top_n, pos, counts, vis, ps, fisher_combine(ps), vocab, prompts)


def rank_tests(target: Target, ghosts: Sequence[Ghost], words: Sequence[str], *, mode: str | None = None,
               top_n: int = DEFAULT_TOP_N) -> list[RankTestResult]:
    """The word-rank test of each ghost (all drawn from the list `words`) against `target`."""
    mode = check_mode(target, mode)
    index = {w: i for i, w in enumerate(words)}
    if mode == LOCAL:
        lead = target.leading_token_ids([" " + w for w in words])
        out = []
        for g in ghosts:
            pos = positions(g)
            rows = target.next_token_scores([context(g, j) for j in pos], lead)
            out.append(_result(LOCAL, None, g, pos, rows, index, len(words), []))
        return out
    jobs = [(g, positions(g)) for g in ghosts]
    prompts = [context(g, j) if mode == COMPLETIONS else chat_prompt(context(g, j)) for g, pos in jobs for j in pos]
    tops = iter(target.top_next_tokens(prompts, top_n))
    flat = iter(prompts)
    out = []
    for g, pos in jobs:
        rows = np.array([match_scores(next(tops), words) for _ in pos]).reshape(len(pos), len(words))
        out.append(_result(mode, top_n, g, pos, rows, index, len(words), [next(flat) for _ in pos]))
    return out
