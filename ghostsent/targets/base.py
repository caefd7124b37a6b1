"""The interface every target model offers to the detection code.

Detection needs two things from a model: text out (the last-k probe) and log-probabilities of given
text (the perplexity test and the membership-inference baselines). Local models give both; an API may
give only the first, which `supports_logprobs` and the capability check make explicit.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass
class Scored:
    """Log-probabilities of one continuation's tokens given a context.

    `mu`/`sigma` are the mean and standard deviation of log p(z) over the whole vocabulary at each
    position (z drawn from the model's own distribution); Min-K%++ needs them and only local models
    can give them.
    """

    tokens: list[str]
    logprobs: np.ndarray
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood per token (nats): the perplexity test's score."""
        return float(-np.mean(self.logprobs)) if len(self.logprobs) else float("nan")


@dataclass
class Generation:
    """One reply, with the exact prompt that produced it (kept for the ledger and reports)."""

    prompt: Any
    text: str


class Target(ABC):
    """A model under test. `spec` is what the user typed (`hf:...`, `openai:...`, `default`)."""

    spec: str = ""
    is_chat: bool = False
    supports_logprobs: bool = True

    @abstractmethod
    def score(
        self,
        context: str,
        continuations: Sequence[str],
        *,
        full_stats: bool = False,
        progress: bool = False,
    ) -> list[Scored]:
        """Score each continuation given the same context.

        The continuation is appended to the context verbatim, so callers put the separating space at
        the start of the continuation (" word word ..."), which keeps tokenisation comparable across
        candidates. An empty context means "start of text" (the model's BOS token where it has one).
        """

    @abstractmethod
    def generate(
        self, prompt: str, *, max_tokens: int = 32, temperature: float = 0.0, n: int = 1, seed: int | None = None
    ) -> list[str]:
        """Raw-text continuation(s) of `prompt` (for base models)."""

    @abstractmethod
    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 48,
        temperature: float = 0.0,
        n: int = 1,
        seed: int | None = None,
    ) -> list[str]:
        """Assistant reply/replies to a chat (for chat models, through their chat template)."""

    def generate_many(
        self, prompts: Sequence[str], *, max_tokens: int = 32, temperature: float = 0.0, n: int = 1,
        seed: int | None = None,
    ) -> list[list[str]]:
        """generate() for several prompts; local models override this with one batched call."""
        return [self.generate(p, max_tokens=max_tokens, temperature=temperature, n=n, seed=seed) for p in prompts]

    def chat_many(
        self, conversations: Sequence[list[dict[str, str]]], *, max_tokens: int = 48, temperature: float = 0.0,
        n: int = 1, seed: int | None = None,
    ) -> list[list[str]]:
        """chat() for several conversations; local models override this with one batched call."""
        return [self.chat(c, max_tokens=max_tokens, temperature=temperature, n=n, seed=seed) for c in conversations]

    def describe(self) -> dict[str, Any]:
        """What identifies the model in a report or the ledger. Never includes secrets."""
        return {"spec": self.spec, "is_chat": self.is_chat}

    def close(self) -> None:  # pragma: no cover - default no-op
        pass
