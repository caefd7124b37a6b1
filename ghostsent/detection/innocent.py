"""Innocent models: targets that never saw any ghost sentence, by construction.

They are the null hypothesis made concrete, for the null harness (scripts/null_harness.py) and the
validity tests: whatever they reply or score is independent of every passphrase's words, so any
DETECTED they produce is a false detection. They are not mocks of a real model; each plays one way an
innocent model (or the user's habits around it) could look guilty: echoing the prompt, pasting whole
chats, odd casing, heavy-tailed or tied or NaN scores, and API noise that depends on the request order.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np

from ghostsent.targets.base import ReplyToken, Scored, Target
from ghostsent.wordlists import WordList


class InnocentTarget(Target):
    """Base: chat-capable, log-probabilities of its own (nothing to align), seeded for studies."""

    is_chat = True
    supports_logprobs = True
    computes_logprobs_locally = True

    def __init__(self, spec: str, seed: int | None = None) -> None:
        self.spec = spec
        # A stream of its own: a study that seeds its passphrases with the same number must not get
        # replies drawn from the very same sequence (that would be a model that saw the ghost).
        self.rng = random.Random(None if seed is None else f"innocent:{spec}:{seed}")
        self.np_rng = np.random.default_rng(self.rng.getrandbits(63))

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "innocent": True}

    # replies: subclasses override _reply; scoring: subclasses override _nll
    def _reply(self, prompt_text: str) -> str:
        return "I don't know how this continues."

    def _nll(self, continuation: str) -> float:
        return float(self.np_rng.normal(5.0, 1.0))

    def score(self, context: str, continuations: Sequence[str], *, full_stats: bool = False,
              progress: bool = False) -> list[Scored]:
        return [Scored([c], np.array([-self._nll(c)], dtype=float)) for c in continuations]

    def generate(self, prompt: str, *, max_tokens: int = 32, temperature: float = 0.0, n: int = 1,
                 seed: int | None = None) -> list[str]:
        return [self._reply(prompt) for _ in range(n)]

    def chat(self, messages: list[dict[str, str]], *, max_tokens: int = 48, temperature: float = 0.0, n: int = 1,
             seed: int | None = None) -> list[str]:
        return [self._reply(messages[-1]["content"]) for _ in range(n)]


class RandomReplies(InnocentTarget):
    """Replies made of list words drawn at random (so matches happen at the rate chance allows).

    style: "random" (just words), "echo" (repeats the end of the prompt, then random words: the
    issue's innocent chat), "noisy" (echo in other casing and punctuation, with a colon and a list).
    """

    def __init__(self, wordlist: WordList, style: str = "random", n_words: int = 6, seed: int | None = None) -> None:
        super().__init__(f"innocent:replies-{style}", seed)
        self.words, self.style, self.n_words = wordlist.words, style, n_words

    def _random_words(self) -> list[str]:
        return [self.words[self.rng.randrange(len(self.words))] for _ in range(self.n_words)]

    def _reply(self, prompt_text: str) -> str:
        new = self._random_words()
        if self.style == "random":
            return " ".join(new)
        tail = prompt_text.split()[-4:]
        if self.style == "echo":
            return "..." + " ".join(tail + new) + "\n\nSorry, I don't know how this continues."
        shout = [w.upper() if self.rng.random() < 0.5 else w.capitalize() for w in tail + new]
        return f"Sure! The words are: {', '.join(shout)}. Hope that helps; next: {new[0]}!"


class RandomScores(InnocentTarget):
    """NLL scores drawn independently of the text.

    dist: "normal"; "heavy" (Student t, 1.5 degrees of freedom: a tail far heavier than any fit);
    "bf16" (rounded to bfloat16's 8 significant bits: many ties); "nan" (a share of NaN and inf, as
    from fp16 overflow or an API glitch).
    """

    def __init__(self, dist: str = "normal", nan_rate: float = 0.2, seed: int | None = None) -> None:
        super().__init__(f"innocent:scores-{dist}", seed)
        self.dist, self.nan_rate = dist, nan_rate

    def _nll(self, continuation: str) -> float:
        if self.dist == "heavy":
            return float(5.0 + self.np_rng.standard_t(1.5))
        x = float(self.np_rng.normal(5.0, 1.0))
        if self.dist == "bf16":
            mantissa, exponent = np.frexp(x)
            return float(np.ldexp(np.round(mantissa * 256) / 256, exponent))  # 8 significant bits
        if self.dist == "nan" and self.rng.random() < self.nan_rate:
            return self.rng.choice([float("nan"), float("inf")])
        return x


class PrefixShiftedScores(RandomScores):
    """Random scores shifted by an amount that depends on the prefix the passphrase follows (a model for
    which some lead-ins make any continuation more familiar than others). Exact only when each ghost is
    ranked against nulls with its own prefix: nulls pooled over several lead-ins convict the ghosts
    whose lead-in scores low."""

    def __init__(self, shift_sd: float = 3.0, seed: int | None = None) -> None:
        super().__init__("normal", seed=seed)
        self.spec, self.shift_sd = "innocent:prefix-shifted", shift_sd

    def score(self, context: str, continuations: Sequence[str], *, full_stats: bool = False,
              progress: bool = False) -> list[Scored]:
        shift = random.Random(f"shift:{context}").gauss(0.0, self.shift_sd)
        return [Scored([c], np.array([-(self._nll(c) + shift)], dtype=float)) for c in continuations]


class WordFrequencyModel(InnocentTarget):
    """A model that knows word frequencies but no ghost: NLL = mean per-word cost + noise.

    Two of them with the same `vocab_seed` share the word costs (what a reference model cancels) and
    differ in noise; passphrases drawn from the list are exchangeable under both.
    """

    def __init__(self, vocab_seed: int = 0, noise: float = 0.3, seed: int | None = None) -> None:
        super().__init__(f"innocent:frequency-{vocab_seed}", seed)
        self.vocab_seed, self.noise = vocab_seed, noise
        self._cost: dict[str, float] = {}

    def _word_cost(self, word: str) -> float:
        if word not in self._cost:
            self._cost[word] = float(random.Random(f"{self.vocab_seed}:{word}").gauss(5.0, 1.0))
        return self._cost[word]

    def _nll(self, continuation: str) -> float:
        words = continuation.split()
        return sum(self._word_cost(w) for w in words) / max(1, len(words)) + float(self.np_rng.normal(0, self.noise))


class DriftingAPI(InnocentTarget):
    """An API whose numbers depend on the order of requests (a cooling cache, load, a time trend): each
    request scores a little worse than the one before, so whatever is sent first looks most familiar.
    Scored in a fixed ghost-first order this convicts anyone."""

    def __init__(self, drift: float = 0.05, seed: int | None = None) -> None:
        super().__init__("innocent:drifting-api", seed)
        self.drift, self.calls = drift, 0

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "base_url": "https://innocent.invalid/v1", "innocent": True}

    def _nll(self, continuation: str) -> float:
        self.calls += 1
        return float(self.np_rng.normal(5.0, 1.0)) + self.drift * self.calls


class RandomNextTokens(InnocentTarget):
    """Next-token predictions that never saw a ghost, for the word-rank test.

    style "api": an API's top-N first tokens drawn from the prompt itself (its last words, with and
    without the space, other casing: an innocent model that echoes what it was shown), fragments of
    list words, a bare space and random list words; "local": the whole distribution over a small token
    vocabulary with heavy ties (list words share leading tokens)."""

    def __init__(self, wordlist: WordList, style: str = "api", seed: int | None = None) -> None:
        super().__init__(f"innocent:next-tokens-{style}", seed)
        self.words, self.style = wordlist.words, style
        self.computes_logprobs_locally = style == "local"
        self.supports_top_logprobs = True

    def _top(self, text: str, n: int) -> dict[str, float]:
        shown = text.split()[-6:]
        picks = [" " + w for w in shown] + [w.capitalize() for w in shown[-2:]] + [" "]
        picks += [" " + self.rng.choice(self.words)[: self.rng.randint(1, 4)] for _ in range(3)]
        picks += [" " + self.rng.choice(self.words) for _ in range(n)]
        self.rng.shuffle(picks)
        return {t: -self.rng.expovariate(0.5) for t in picks[:n]}

    def top_next_tokens(self, prompts: Sequence[Any], n: int) -> list[dict[str, float]]:
        return [self._top(p if isinstance(p, str) else p[-1]["content"], n) for p in prompts]

    def top_reply_tokens(self, prompts: Sequence[Any], n: int, max_tokens: int) -> list[list[ReplyToken]]:
        """A chat reply that often echoes the shown text (after a "Sure!", sometimes cut short), then
        random list words; each step's alternatives as in _top, so the aligned place sees echoes too."""
        out = []
        for p in prompts:
            shown = p[-1]["content"].split("\n")[-1].split()
            toks = ["Sure", "!"][: self.rng.randint(0, 2)]
            toks += [" " + w for w in shown[-self.rng.randint(0, 4):]] if self.rng.random() < 0.8 else []
            toks += [" " + self.rng.choice(self.words) for _ in range(self.rng.randint(0, 5))]
            out.append([ReplyToken(t, self._top(" ".join(shown) + "".join(toks[:i]), n))
                        for i, t in enumerate(toks[:max_tokens])])
        return out

    def leading_token_ids(self, texts: Sequence[str]) -> list[int]:
        return [sum(map(ord, t[:3])) % 97 for t in texts]   # 97 tokens: many words share one

    def next_token_scores(self, contexts: Sequence[str], token_ids: Sequence[int]) -> np.ndarray:
        table = np.round(self.np_rng.normal(size=(len(contexts), 97)), 1)   # rounded: ties
        return table[:, np.asarray(token_ids, dtype=int)]
