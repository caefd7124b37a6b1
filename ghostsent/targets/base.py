"""The interface every target model offers to the detection code.

Detection needs two things from a model: text out (the last-k probe) and log-probabilities of given
text (the perplexity test and the membership-inference baselines). Local models give both; an API may
give only the first. What a target can do is declared as class attributes (its capabilities), which the
detection code reads directly: no probing with hasattr, no guessing from the spec.
"""
from __future__ import annotations

import urllib.parse
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


# dtype names a local target accepts (-M dtype=...), by torch dtype they mean; kept here, free of torch.
DTYPES = {
    "float32": "float32", "fp32": "float32", "f32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16", "f16": "float16",
}


def safe_url(url: str) -> str:
    """The URL without user-info or query string (either could carry a credential)."""
    p = urllib.parse.urlsplit(url)
    host = (p.hostname or "") + (f":{p.port}" if p.port else "")
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


def is_prefill(messages: Any) -> bool:
    """A conversation that ends with an assistant message: the model is to continue that message."""
    return (isinstance(messages, list) and bool(messages) and isinstance(messages[-1], dict)
            and messages[-1].get("role") == "assistant")


@dataclass
class ReplyToken:
    """One generated token of a reply and the top-N alternatives (string -> log-probability) at its place."""

    token: str
    top: dict[str, float]


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


@dataclass
class EchoLogprobs:
    """A text's tokens as the model sees them: strings, start offsets, log-probabilities (None where
    none was given), and the top alternatives at each position where the target reports them."""

    tokens: list[str]
    offsets: list[int]
    logprobs: list[float | None]
    top: list[dict[str, float] | None] | None = None


class Target(ABC):
    """A model under test. `spec` is what the user typed (`hf:...`, `openai:...`, `default`).

    Capabilities (class attributes; a subclass overrides them, an instance only where it depends on
    what was loaded, e.g. whether a tokenizer has a chat template):
    """

    spec: str = ""
    is_chat: bool = False                   # has a chat format (chat() / chat_many() work)
    supports_raw: bool = True               # raw-text continuation is part of the default probe
    supports_logprobs: bool = True          # can give log-probabilities of given text (score())
    supports_top_logprobs: bool = False     # reports the top alternatives at each position
    computes_logprobs_locally: bool = False  # log-probabilities come from its own logits: aligned by construction

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

    def echo_logprobs(self, text: str) -> EchoLogprobs:
        """The tokens of `text` with their log-probabilities, as raw as the target can give them (the
        capability check reads these). By default: score() after the start of text."""
        s = self.score("", [text])[0]
        offsets, pos = [], 0
        for t in s.tokens:
            offsets.append(pos)
            pos += len(t)
        return EchoLogprobs(list(s.tokens), offsets, [float(v) for v in s.logprobs], None)

    # The word-rank test (detection/rank.py): a local model gives its whole next-token distribution, an
    # API the top-N alternatives of the first generated token. Either is a function of the model and the
    # prompt alone, which is all the test's validity needs.
    def leading_token_ids(self, texts: Sequence[str]) -> list[int]:
        """The first token id of each text as the model tokenises it on its own (local models)."""
        raise NotImplementedError(f"{self.spec} has no local tokenizer")

    def next_token_scores(self, contexts: Sequence[str], token_ids: Sequence[int]) -> np.ndarray:
        """log p(token | context) for each context (rows) and token id (columns) (local models)."""
        raise NotImplementedError(f"{self.spec} gives no next-token distribution")

    # The local rank test's multi-token refinement: a word's full score is its leading token's
    # log-probability (next_token_scores) plus rest_logprobs of its remaining tokens.
    supports_word_scores: bool = False
    word_score_tolerance: float = 0.0   # nats: full-word scores this close count against the ghost

    def word_token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The token ids of each text as the model tokenises it on its own (local models)."""
        raise NotImplementedError(f"{self.spec} has no local tokenizer")

    def rest_logprobs(self, contexts: Sequence[str], rows: Sequence[Sequence[int]]) -> np.ndarray:
        """Per row of token ids: sum over its tokens after the first of log p(token | contexts[i], earlier
        tokens of the row); 0 for a one-token row (local models)."""
        raise NotImplementedError(f"{self.spec} gives no word scores")

    def top_next_tokens(self, prompts: Sequence[Any], n: int) -> list[dict[str, float]]:
        """The top-n first tokens (string -> log-probability) of the reply to each prompt: a str is raw
        text (/v1/completions), a list of messages a chat (APIs; ModelError where none are returned)."""
        raise NotImplementedError(f"{self.spec} reports no top log-probabilities")

    def top_reply_tokens(self, prompts: Sequence[list[dict[str, str]]], n: int,
                         max_tokens: int) -> list[list[ReplyToken]]:
        """The greedy (temperature 0) chat reply to each conversation, up to max_tokens tokens, each
        generated token with the top-n alternatives at its place (the echo-aligned chat rank test)."""
        raise NotImplementedError(f"{self.spec} reports no top log-probabilities")

    def describe(self) -> dict[str, Any]:
        """What identifies the model in a report or the ledger. Never includes secrets."""
        return {"spec": self.spec, "is_chat": self.is_chat}

    def endpoint(self) -> str:
        """Who the target's requests reach, for the disclosure log: the spec, and where it is served
        (scheme, host, port, path: never user-info or query, which can carry credentials)."""
        url = self.describe().get("base_url")
        return f"{self.spec} at {safe_url(str(url))}" if url else self.spec

    def close(self) -> None:  # noqa: B027 - a default no-op; targets with connections override it
        pass
