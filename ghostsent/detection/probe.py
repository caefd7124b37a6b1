"""The last-k words probe: show the ghost sentence minus its last k words, see if the model completes it.

Why the p-value is a valid bound (docs/statistics.md has the full argument): the held-out words were drawn
uniformly and independently from a list of V words, independently of the words shown and of anything a
model that never saw the ghost sentence could know. So the reply is independent of the held-out words,
and at any fixed place in the reply the number of held-out words it gets right is at most
Binomial(k, 1/V). Places where we look are chosen from the reply and the shown text alone (the start of
the reply, right after each occurrence of the last shown word, right after a colon), so they do not
depend on the held-out words either; a union bound over them multiplies the tail by their number.
Several probes of one identifier are combined with Bonferroni.

The no-code path (`card` + `check`) scores only words that NO prompt of the card revealed: a pasted
chat can contain every prompt, and the k=2 prompt shows the words the k=3 and k=4 prompts hold out.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from ghostsent.errors import InputError
from ghostsent.passphrase import Ghost
from ghostsent.stats import bonferroni, probe_p_value
from ghostsent.targets.base import Target
from ghostsent.wordlists import fold, folded_tokens, normalise, word_tokens

DEFAULT_KS = (2, 3, 4)
MAX_REPLY_WORDS = 200      # a generated reply (the probe asks for a few words)
MAX_PASTED_WORDS = 20000   # a pasted chat: every prompt and reply of a conversation

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


def check_ks(ks: Iterable[int], n_words: int) -> tuple[int, ...]:
    """The ks, each 1 <= k < n (k = n would show no word and anchor on a held-out one); InputError otherwise."""
    out = tuple(ks)
    if not out:
        raise InputError("no k given: pass at least one number of held-out words")
    for k in out:
        if not 1 <= k < n_words:
            raise InputError(f"k={k} is out of range: a {n_words}-word passphrase allows 1 <= k <= {n_words - 1}")
    return out


def normalise_words(text: str) -> list[str]:
    """Case-, punctuation- and whitespace-insensitive word sequence: the word lists' own tokenizer."""
    return word_tokens(text)[:MAX_REPLY_WORDS]


def _reply_tokens(reply: str, max_words: int) -> tuple[list[str], set[int]]:
    """The reply's words (first max_words) and the positions right after a colon ("The words are: ...")."""
    tokens: list[str] = []
    after_colon: set[int] = set()
    for i, segment in enumerate(fold(reply).split(":")):
        if i:
            after_colon.add(len(tokens))
        tokens += folded_tokens(segment)
    return tokens[:max_words], after_colon


def _key(word: str | None) -> str | None:
    toks = word_tokens(word) if word else []
    return toks[-1] if toks else None


def _places(tokens: list[str], after_colon: set[int], anchors: Iterable[tuple[str | None, int]]) -> list[int]:
    """Where the scored words are expected to start: for each (anchor word, offset), the start of the
    reply, after each colon and after each occurrence of the anchor, shifted by the offset.

    Depends only on the reply and on revealed words, never on the scored ones (that keeps the union
    bound valid). Places with no reply word left are dropped; an empty reply keeps one place.
    """
    places: set[int] = set()
    for anchor, offset in anchors:
        starts = {0} | after_colon
        if anchor:
            starts.update(i + 1 for i, w in enumerate(tokens) if w == anchor)
        places.update(s + offset for s in starts)
    kept = sorted(p for p in places if p < len(tokens))
    return kept or [0]


def _score(tokens: list[str], targets: list[str], places: list[int], vocab_size: int) -> dict[str, Any]:
    k = len(targets)
    best, best_at = 0, 0
    for p in places:
        got = sum(1 for j in range(k) if p + j < len(tokens) and tokens[p + j] == targets[j])
        if got > best:
            best, best_at = got, p
    return {"matches": best, "k": k, "places": len(places), "found_at": best_at if best else None,
            "complete": best == k, "p_value": probe_p_value(best, k, vocab_size, len(places))}


def score_reply(reply: str, held_out: Sequence[str], last_shown: str | None, vocab_size: int,
                max_words: int = MAX_REPLY_WORDS) -> dict[str, Any]:
    """Matches of the held-out words in one reply to a last-k prompt, and the probe's p-value."""
    tokens, colons = _reply_tokens(reply, max_words)
    places = _places(tokens, colons, [(_key(last_shown), 0)])
    return _score(tokens, [normalise(w) for w in held_out], places, vocab_size)


def score_tail(reply: str, ghost: Ghost, tail: int, answered_ks: Sequence[int], vocab_size: int,
               max_words: int = MAX_PASTED_WORDS) -> dict[str, Any]:
    """Matches of the ghost's last `tail` words (which no prompt revealed) in a reply that may answer
    the last-k prompt for any k in `answered_ks` (each k >= tail), or be a whole pasted chat.

    A reply to prompt k continues after word n-k, so the tail starts k - tail words after the places
    of that prompt; it may also follow the last revealed word (n - tail) directly.
    """
    n = len(ghost.words)
    anchors = {(_key(ghost.words[n - k - 1]), k - tail) for k in answered_ks}
    anchors.add((_key(ghost.words[n - tail - 1]), 0))
    tokens, colons = _reply_tokens(reply, max_words)
    places = _places(tokens, colons, sorted(anchors, key=lambda a: (a[1], a[0] or "")))
    return _score(tokens, [normalise(w) for w in ghost.words[n - tail:]], places, vocab_size)


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
    sent: int = -1       # position in the (shuffled) order prompts were sent in; -1 for a pasted reply


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
    """Chat models whose raw continuation is worth asking (local ones) get both raw text and chat
    instructions; chat APIs chat only; base models raw only (the target's capabilities say which)."""
    if not target.is_chat:
        return ("raw",)
    return ("raw", "chat") if target.supports_raw else ("chat",)


GENERATION_BATCH = 16


@dataclass
class _Job:
    ghost: int
    k: int
    mode: str
    prompt: Any
    held_out: list[str]
    last_shown: str


def _jobs(ghosts: Sequence[tuple[Ghost, int]], ks: Sequence[int], modes: Sequence[str]) -> list[_Job]:
    jobs = []
    for gi, (ghost, _) in enumerate(ghosts):
        n = len(ghost.words)
        for k in check_ks(ks, n):
            for mode, prompt in probe_prompts(ghost, k, modes):
                jobs.append(_Job(gi, k, mode, prompt, list(ghost.words[n - k:]), ghost.words[n - k - 1]))
    return jobs


def _batches(jobs: list[_Job]) -> list[list[_Job]]:
    """Batches that never hold two prompts of one identifier with different k.

    A padded batch makes each reply depend (through padding and length) on the other prompts in it, and
    an identifier's k=2 prompt shows the words its k=3 prompt holds out. So a batch holds one k (and one
    kind: raw text or chat); prompts of different identifiers are independent and may share it.
    """
    groups: dict[tuple[bool, int], list[_Job]] = {}
    for j in jobs:  # dict order: first appearance in the shuffled job list
        groups.setdefault((j.mode == "raw", j.k), []).append(j)
    return [g[b:b + GENERATION_BATCH] for g in groups.values() for b in range(0, len(g), GENERATION_BATCH)]


def run_probes(
    target: Target,
    ghosts: Sequence[tuple[Ghost, int]],
    ks: Sequence[int] = DEFAULT_KS,
    samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    modes: Sequence[str] | None = None,
    rng: random.Random | None = None,
) -> list[ProbeResult]:
    """Every (k, mode, sample) probe of several ghost sentences, given as (ghost, word-list size).

    Prompts are shuffled (CSPRNG unless `rng` is given) so members and controls are sent the same way,
    then sent in batches (one generate call per batch on a local model), which on a CPU costs little
    more than a single prompt. Each record keeps its position in the sending order.
    """
    if samples > 1 and temperature <= 0:
        raise ValueError("more than one sample per prompt needs a temperature > 0 (greedy replies would repeat)")
    modes = tuple(modes or default_modes(target))
    results = [ProbeResult(g.text, v) for g, v in ghosts]
    jobs = _jobs(ghosts, ks, modes)
    (rng or random.SystemRandom()).shuffle(jobs)
    sent = 0
    for batch in _batches(jobs):
        raw, k = batch[0].mode == "raw", batch[0].k
        prompts = [j.prompt for j in batch]
        if raw:
            replies = target.generate_many(prompts, max_tokens=8 + 6 * k, temperature=temperature, n=samples,
                                           seed=seed)
        else:
            replies = target.chat_many(prompts, max_tokens=48 + 6 * k, temperature=temperature, n=samples,
                                       seed=seed)
        for j, outs in zip(batch, replies):
            for si, reply in enumerate(outs):
                sc = score_reply(reply, j.held_out, j.last_shown, results[j.ghost].vocab_size)
                results[j.ghost].records.append(ProbeRecord(j.k, j.mode, si, j.prompt, reply, j.held_out,
                                                            sc["matches"], sc["places"], sc["complete"],
                                                            sc["p_value"], sent))
            sent += 1
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


# --- the no-code path: a card of prompts to paste into a chat window, and scoring pasted replies --------


def card_prompts(ghost: Ghost, ks: Sequence[int] = DEFAULT_KS) -> list[dict[str, Any]]:
    """One chat prompt per k, labelled, for people who only have a chat window."""
    return [
        {"label": f"k{k}", "k": k, "prompt": CHAT_INSTRUCTIONS[0].format(context=ghost.context_for(k))}
        for k in check_ks(ks, len(ghost.words))
    ]


def check_replies(ghost: Ghost, replies: Sequence[str], vocab_size: int, *, revealed: int,
                  answered_ks: Sequence[int]) -> ProbeResult:
    """Score pasted replies (each may be a whole chat) against the words no prompt revealed.

    `revealed` is how many leading passphrase words any prompt ever showed (every card prompt counts,
    whichever one a reply answers); the last n - revealed words are scored, at the places of every
    prompt in `answered_ks`. One record per reply; the result's p is Bonferroni over the replies.
    """
    n = len(ghost.words)
    tail = n - revealed
    ks = check_ks(answered_ks, n)
    if tail < 1:
        raise InputError("every word of the passphrase has been shown by a prompt; nothing is left to score")
    if min(ks) < tail:
        raise InputError(f"k={min(ks)} shows more words ({n - min(ks)}) than `revealed` ({revealed}) allows")
    result = ProbeResult(ghost.text, vocab_size)
    held_out = list(ghost.words[n - tail:])
    for i, reply in enumerate(replies):
        sc = score_tail(reply, ghost, tail, ks, vocab_size)
        result.records.append(ProbeRecord(tail, "pasted", i, None, reply, held_out, sc["matches"], sc["places"],
                                          sc["complete"], sc["p_value"]))
    return result


def check_reply(ghost: Ghost, reply: str, vocab_size: int, ks: Sequence[int] = DEFAULT_KS) -> ProbeResult:
    """Score one pasted reply to a card of prompts for `ks`: every one of them may have been shown, so
    only the last min(ks) words are scored."""
    ks = check_ks(ks, len(ghost.words))
    return check_replies(ghost, [reply], vocab_size, revealed=len(ghost.words) - min(ks), answered_ks=ks)
