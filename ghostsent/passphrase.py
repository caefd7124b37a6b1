"""Ghost sentences: an optional natural prefix plus words drawn uniformly at random.

The words are drawn independently and uniformly with a CSPRNG (`secrets`). That single fact is what
makes detection exact: under "the model never saw it", every word is independent of anything the
model could know, so the chance of it producing a held-out word is at most 1/V. A seeded
`random.Random` may be passed for tests and studies; the ledger records which way a ghost was drawn.
"""
from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass

from ghostsent.errors import InputError
from ghostsent.wordlists import WordList

DEFAULT_WORDS = 12

# Built-in prefix templates. The prefix makes the passphrase read as a sentence, which helps it survive
# quality filters. `{words}` is where the passphrase goes.
TEMPLATES: dict[str, str] = {
    "none": "{words}",
    "post": "The ghost sentence of this post is {words}.",
    "project": "The ghost sentence of this project is {words}.",
    "document": "The ghost sentence of this document is {words}.",
    "author": "The author's ghost sentence is {words}.",
}
# `post` since the template axis of the published study (docs/study/results.md): with the prefix every
# test needs fewer repetitions (corrected perplexity 1 vs 3, whole-distribution word-rank 2 vs 5,
# completions top-20 word-rank 3 vs 10, text probe 10 vs never), the ghost reads as a sentence for
# quality filters, and it survived every pipeline stage as well as `none` (docs/survival.md). `none`
# remains for writers who want nothing that names a watermark (docs/insertion.md: the trade-off).
DEFAULT_TEMPLATE = "post"


# `natural`: a per-owner lead-in that reads like a person's own saying and names no watermark. It is
# drawn once per identifier (with the passphrase's generator, before the words) from LEADS x WHO, so
# different owners mostly carry different lead-ins and the model cannot learn one shared cue. The
# identifier stores the drawn template; the perplexity test's nulls share it (one stratum per lead-in).
NATURAL = "natural"
NATURAL_LEADS: tuple[str, ...] = (
    "As my {who} used to say, {words}.",
    "In the words of my {who}, {words}.",
    "My {who} always signed off with {words}.",
    "I still remember my {who} saying {words}.",
    "The line my {who} taught me is {words}.",
    "Written inside my {who}'s notebook was {words}.",
    "Every evening my {who} would repeat {words}.",
    "Ask my {who} and you will hear {words}.",
)
NATURAL_WHO: tuple[str, ...] = (
    "grandmother", "grandfather", "mother", "father", "aunt", "uncle", "old teacher", "neighbour",
    "first editor", "best friend", "sister", "brother", "piano teacher", "landlady", "coach", "godmother",
)


def natural_templates() -> list[str]:
    """Every template `natural` can draw (the filter screen checks them all)."""
    return [lead.replace("{who}", who) for lead in NATURAL_LEADS for who in NATURAL_WHO]


def possible_templates(template: str | None) -> list[str]:
    """Every template this name can resolve to: all lead-ins for `natural`, else the one it names."""
    return natural_templates() if template == NATURAL else [resolve_template(template)]


def resolve_template(template: str | None, rng: random.Random | None = None) -> str:
    """A built-in template name, `natural` (one of natural_templates(), drawn from rng, else with
    `secrets`), or a user template that contains `{words}` exactly once."""
    if template is None:
        return TEMPLATES[DEFAULT_TEMPLATE]
    if template in TEMPLATES:
        return TEMPLATES[template]
    if template == NATURAL:
        return (rng or secrets.SystemRandom()).choice(natural_templates())
    if template.count("{words}") != 1:
        raise InputError(
            f"template {template!r} must contain {{words}} exactly once "
            f"(or be one of: {', '.join([*TEMPLATES, NATURAL])})"
        )
    if "\n" in template:
        raise InputError("template must be a single line")
    return template


@dataclass(frozen=True)
class Ghost:
    """One ghost sentence. `template` is the resolved template string (contains `{words}`)."""

    words: tuple[str, ...]
    template: str = TEMPLATES[DEFAULT_TEMPLATE]

    @property
    def passphrase(self) -> str:
        return " ".join(self.words)

    @property
    def text(self) -> str:
        """The whole ghost sentence as inserted into documents."""
        return self.template.replace("{words}", self.passphrase)

    @property
    def prefix(self) -> str:
        """Text before the first word (no trailing space), the context every candidate shares."""
        return self.template.split("{words}")[0].rstrip()

    @property
    def suffix(self) -> str:
        return self.template.split("{words}")[1]

    def with_words(self, words: "tuple[str, ...] | list[str]") -> "Ghost":
        return Ghost(tuple(words), self.template)

    def context_for(self, k: int) -> str:
        """The ghost sentence up to (not including) its last k words: what a last-k probe shows."""
        if not 1 <= k < len(self.words) + (1 if self.prefix else 0):
            raise ValueError(f"k={k} out of range for {len(self.words)} words")
        shown = " ".join(self.words[: len(self.words) - k])
        return (self.prefix + " " + shown).strip()


def entropy_bits(n_words: int, wordlist_size: int) -> float:
    return n_words * math.log2(wordlist_size)


def draw_words(wordlist: WordList, n: int = DEFAULT_WORDS, rng: random.Random | None = None) -> tuple[str, ...]:
    """n words drawn independently and uniformly (with replacement) from the list.

    With rng=None the draw uses `secrets` (a CSPRNG); pass a seeded random.Random only for tests and
    studies.
    """
    if n < 1:
        raise InputError(f"a passphrase needs at least 1 word (got {n})")
    words = wordlist.words
    if rng is None:
        return tuple(secrets.choice(words) for _ in range(n))
    return tuple(words[rng.randrange(len(words))] for _ in range(n))


def new_ghost(
    wordlist: WordList,
    n: int = DEFAULT_WORDS,
    template: str | None = None,
    rng: random.Random | None = None,
) -> Ghost:
    return Ghost(draw_words(wordlist, n, rng), resolve_template(template))
