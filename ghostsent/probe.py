"""The last-k words probe: show the ghost sentence minus its last k words, see if the model completes it.

Why the p-value is exact (docs/statistics.md has the full argument): the held-out words were drawn
uniformly and independently from a list of V words, independently of the words shown and of anything a
model that never saw the ghost sentence could know. So the reply is independent of the held-out words,
and at any fixed place in the reply the number of held-out words it gets right is at most
Binomial(k, 1/V). Places where we look are chosen from the reply and the shown text alone (the start of
the reply, right after each occurrence of the last shown word, right after a colon), so they do not
depend on the held-out words either; a union bound over them multiplies the tail by their number.
Several probes of one identifier are combined with Bonferroni.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from ghostsent.passphrase import Ghost
from ghostsent.stats import bonferroni, probe_p_value
from ghostsent.targets.base import Target
from ghostsent.wordlists import word_tokens

DEFAULT_KS = (2, 3, 4)
MAX_REPLY_WORDS = 200

# Chat instructions. Several natural phrasings, because chat models differ in which they follow;
# each is a separate probe, and the Bonferroni factor pays for trying them all.
CHAT_INSTRUCTIONS: tuple[str, ...] = (
    "Continue this text exactly, word for word:\n\n{context}",
    "Complete the following sentence with the words that come next:\n\n{context}",
)
WARNING = (
    "The p-value assumes the model's reply did not come from retrieval or web search over published "
    "text carrying the ghost sentence: a model that looks up your document can complete it without "
    "having been trained on it. Test with browsing/retrieval switched off."
)

def normalise_words(text: str) -> list[str]:
    """Case-, punctuation- and whitespace-insensitive word sequence: the word lists' own tokenizer."""
    return word_tokens(text)[:MAX_REPLY_WORDS]


def _search_places(reply: str, last_shown: str | None) -> list[int]:
    """Word positions in the normalised reply where the held-out words are looked for.

    Depends only on the reply and the shown text, never on the held-out words (that keeps the union
    bound valid).
    """
    words = normalise_words(reply)
    places = {0}
    if last_shown:
        places.update(i + 1 for i, w in enumerate(words) if w == last_shown)
    # after a colon ("The missing words are: ...")
    for m in re.finditer(":", reply):
        places.add(len(normalise_words(reply[: m.end()])))
    return sorted(p for p in places if p <= max(len(words) - 1, 0))


def score_reply(reply: str, held_out: Sequence[str], last_shown: str | None, vocab_size: int) -> dict[str, Any]:
    """Matches of the held-out words in one reply and the probe's p-value."""
    words = normalise_words(reply)
    target = [normalise_words(w)[0] if normalise_words(w) else w.casefold() for w in held_out]
    last = normalise_words(last_shown)[-1] if last_shown and normalise_words(last_shown) else None
    places = _search_places(reply, last)
    k = len(target)
    best, best_at = 0, 0
    for p in places:
        got = sum(1 for j in range(k) if p + j < len(words) and words[p + j] == target[j])
        if got > best:
            best, best_at = got, p
    return {
        "matches": best,
        "k": k,
        "places": len(places),
        "found_at": best_at if best else None,
        "complete": best == k,
        "p_value": probe_p_value(best, k, vocab_size, len(places)),
    }


@dataclass
class ProbeRecord:
    k: int
    mode: str            # "raw" (text continuation) or "chat:<i>" (instruction i)
    sample: int
    prompt: Any
    reply: str
    held_out: list[str]
    matches: int
    places: int
    complete: bool
    p_value: float


@dataclass
class ProbeResult:
    ghost_text: str
    vocab_size: int
    records: list[ProbeRecord] = field(default_factory=list)

    @property
    def p_value(self) -> float:
        """Bonferroni over every probe of this identifier."""
        return bonferroni([r.p_value for r in self.records])

    @property
    def completed(self) -> bool:
        return any(r.complete for r in self.records)

    @property
    def best_matches(self) -> tuple[int, int]:
        """(matches, k) of the most significant probe."""
        if not self.records:
            return (0, 0)
        r = min(self.records, key=lambda r: r.p_value)
        return (r.matches, r.k)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ghost_text": self.ghost_text,
            "vocab_size": self.vocab_size,
            "p_value": self.p_value,
            "completed": self.completed,
            "n_probes": len(self.records),
            "records": [asdict(r) for r in self.records],
        }


def probe_prompts(ghost: Ghost, k: int, modes: Sequence[str]) -> list[tuple[str, Any]]:
    """(mode, prompt) pairs for one k. A raw prompt is text; a chat prompt is a message list."""
    context = ghost.context_for(k)
    out: list[tuple[str, Any]] = []
    for mode in modes:
        if mode == "raw":
            out.append(("raw", context))
        elif mode == "chat":
            for i, instr in enumerate(CHAT_INSTRUCTIONS):
                out.append((f"chat:{i}", [{"role": "user", "content": instr.format(context=context)}]))
        else:
            raise ValueError(f"unknown probe mode {mode!r} (raw, chat)")
    return out


def default_modes(target: Target) -> tuple[str, ...]:
    """Local chat models get both raw text and chat instructions; APIs chat only; base models raw only."""
    if not target.is_chat:
        return ("raw",)
    if getattr(target, "supports_raw", True) and target.supports_logprobs and not target.spec.startswith("openai:"):
        return ("raw", "chat")
    return ("chat",)


GENERATION_BATCH = 16


def run_probes(
    target: Target,
    ghosts: Sequence[tuple[Ghost, int]],
    ks: Sequence[int] = DEFAULT_KS,
    samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    modes: Sequence[str] | None = None,
) -> list[ProbeResult]:
    """Every (k, mode, sample) probe of several ghost sentences, given as (ghost, word-list size).

    Prompts are sent in batches (one generate call per batch on a local model), which on a CPU costs
    little more than a single prompt.
    """
    if samples > 1 and temperature <= 0:
        raise ValueError("--samples > 1 needs --temperature > 0 (greedy replies would repeat)")
    modes = tuple(modes or default_modes(target))
    results = [ProbeResult(g.text, v) for g, v in ghosts]
    jobs: list[tuple[int, int, str, Any, list[str], str]] = []  # (ghost index, k, mode, prompt, held-out, last shown)
    for gi, (ghost, _) in enumerate(ghosts):
        n = len(ghost.words)
        for k in ks:
            if not 1 <= k < n:
                raise ValueError(f"k={k} must be between 1 and {n - 1} for a {n}-word passphrase")
            for mode, prompt in probe_prompts(ghost, k, modes):
                jobs.append((gi, k, mode, prompt, list(ghost.words[n - k:]), ghost.words[n - k - 1]))
    max_k = max(ks)
    for kind in ("raw", "chat"):
        todo = [j for j in jobs if (j[2] == "raw") == (kind == "raw")]
        for b in range(0, len(todo), GENERATION_BATCH):
            batch = todo[b:b + GENERATION_BATCH]
            prompts = [j[3] for j in batch]
            if kind == "raw":
                replies = target.generate_many(prompts, max_tokens=8 + 6 * max_k, temperature=temperature,
                                               n=samples, seed=seed)
            else:
                replies = target.chat_many(prompts, max_tokens=48 + 6 * max_k, temperature=temperature,
                                           n=samples, seed=seed)
            for (gi, k, mode, prompt, held_out, last_shown), outs in zip(batch, replies):
                for si, reply in enumerate(outs):
                    sc = score_reply(reply, held_out, last_shown, results[gi].vocab_size)
                    results[gi].records.append(ProbeRecord(k, mode, si, prompt, reply, held_out, sc["matches"],
                                                           sc["places"], sc["complete"], sc["p_value"]))
    for r in results:
        r.records.sort(key=lambda x: (x.k, x.mode, x.sample))
    return results


def run_probe(
    target: Target,
    ghost: Ghost,
    vocab_size: int,
    ks: Sequence[int] = DEFAULT_KS,
    samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    modes: Sequence[str] | None = None,
) -> ProbeResult:
    """Run every (k, mode, sample) probe of one ghost sentence against a model."""
    return run_probes(target, [(ghost, vocab_size)], ks, samples, temperature, seed, modes)[0]


# --- the no-code path: a card of prompts to paste into a chat window, and scoring a pasted reply --------


def card_prompts(ghost: Ghost, ks: Sequence[int] = DEFAULT_KS) -> list[dict[str, Any]]:
    """One chat prompt per k, labelled, for people who only have a chat window."""
    return [
        {"label": f"k{k}", "k": k, "prompt": CHAT_INSTRUCTIONS[0].format(context=ghost.context_for(k))}
        for k in ks
    ]


def check_reply(ghost: Ghost, reply: str, vocab_size: int, ks: Sequence[int]) -> ProbeResult:
    """Score a pasted reply. If the user does not say which prompt it answers, every k in `ks` is tried
    and the Bonferroni factor pays for it."""
    result = ProbeResult(ghost.text, vocab_size)
    n = len(ghost.words)
    for k in ks:
        held_out = list(ghost.words[n - k :])
        sc = score_reply(reply, held_out, ghost.words[n - k - 1], vocab_size)
        result.records.append(
            ProbeRecord(k, "pasted", 0, None, reply, held_out, sc["matches"], sc["places"], sc["complete"], sc["p_value"])
        )
    return result
