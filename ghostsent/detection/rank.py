"""The word-rank test: does the model predict each passphrase word far better than chance?

Under H0 ("the model never saw this identifier") the passphrase word W_j is uniform over the V list words
and independent of the model and of W_1..W_{j-1} (drawn with replacement). At position j the model is
shown the ghost's prefix and W_1..W_{j-1}; from its next-token prediction alone every list word gets a
score s_j(w) (the log-probability of the word's leading token: from the whole distribution for a local
model, from the top-N visible tokens for an API, where an unmatched word scores -inf). Then

    p_j = #{w in list : s_j(w) >= s_j(W_j)} / V

is super-uniform given the past (ties and unmatched words count against the ghost), and any combiner
monotone in each p_j that is valid for iid uniforms is valid over the positions (docs/statistics.md,
section 2b): Fisher's product locally, the truncated product for the sparse top-N modes (COMBINERS).
No nulls are needed: the floor is about V^-n, not 1/(N+1).

With `refine=True` (opt-in), a local model that can score whole words (Target.supports_word_scores)
refines the count with the full-word score S_j(w) = log P(" w" | context), summed over the word's tokens
(`refined_count`, below): only words whose leading token alone reaches S_j(W_j) can reach it, so at most
REFINE_CAP of them are scored and beyond that their number, an upper bound of the count, is used.

Chat is echo-aligned: the greedy reply to "repeat, then continue" is read token by token and scored right
after its reproduction of the shown text (aligned_position), a rule that never looks at the held-out word.
Chat with prefill (servers that continue a final assistant message: vLLM's continue_final_message,
llama.cpp's server) puts the shown text at the start of the assistant's reply and reads the top-N of the
first token the model adds, as a completions API would: nothing to align, no end-of-reply in the way.

Positions (fixed before looking): every word that has some text before it, i.e. all n words when the
template has a prefix, words 2..n when it has none. The test shows words 1..n-1, never the last.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

from ghostsent.errors import InputError
from ghostsent.detection.probe import is_refusal
from ghostsent.passphrase import Ghost
from ghostsent.stats import binom_tail, fisher_combine, truncated_product
from ghostsent.targets.base import ReplyToken, Target
from ghostsent.wordlists import word_tokens

DEFAULT_TOP_N = 20          # OpenAI's maximum top_logprobs
# Full-word scores computed per position at most (the multi-token candidates whose leading token alone
# reaches the passphrase word's full score); with more, the candidates' number is the count (an upper
# bound: still valid), which bounds the cost on CPU (see scripts/bench_rank.py).
REFINE_CAP = 64
LOCAL, COMPLETIONS, CHAT, PREFILL = "local", "completions", "chat", "prefill"
# Text only (no log-probabilities): the one word a greedy reply puts next is the only visible word.
TEXT, TEXT_PREFILL, TEXT_CHAT = "text", "text-prefill", "text-chat"
TEXT_MODES = (TEXT, TEXT_PREFILL, TEXT_CHAT)
MODES = (LOCAL, COMPLETIONS, CHAT, PREFILL) + TEXT_MODES
TEXT_REPLY_TOKENS = 8       # raw/prefill: enough tokens for the next word (and the end of a split one)
CHAT_REPLY_TOKENS = 32      # the chat reply asked for; its top-N at one aligned place is scored
ALIGN_WORDS = 3             # a reply reproducing the shown text's last 1..3 words aligns it
# Chosen among three on known text (docs/statistics.md, 2b): asking to repeat AND continue makes a small
# chat model reproduce the shown text and go on, so the aligned place exists and predicts the next word.
CHAT_INSTRUCTION = "Repeat the following text, then continue it with the next twenty words:\n\n{context}"
# The combiner per mode, chosen on the development runs (docs/survival/study-none, study-pipeline; table
# from scripts/rank_combiner_dev.py in docs/statistics.md, 2b) before any published run: with top-N
# visibility most positions give p_j = 1, which the truncated product ignores and Fisher's product dilutes.
# Prefill: the user turn names the task but does NOT hold the text: with a copy of the text in the user
# turn, the model's copying would point at what followed that copy (the end of the user's turn). Fixed
# before any fine-tuned model was scored with it (docs/statistics.md, 2b).
PREFILL_INSTRUCTION = "Continue this text."
TPM_TAU = 0.05
# The text modes' p_j is 1/V (a hit) or 1, so the number of hits is the whole statistic, and its exact
# tail under H0 is at most Binomial(positions, 1/V)'s (docs/statistics.md, 2b): 1 hit in 12 positions
# gives 1.5e-3, 2 hits 1.1e-6, where the truncated product (made for continuous p) gives 0.041 and 6.0e-4.
# Chosen on this arithmetic before any fine-tuned model was scored with these modes.
COMBINERS = {LOCAL: "fisher", **{m: f"truncated-product(tau={TPM_TAU:g})" for m in MODES if m != LOCAL},
             **{m: "binomial-hits" for m in TEXT_MODES}}


@dataclass
class RankTestResult:
    """One identifier's word-rank test: per position the count at or above the word, and its p."""

    mode: str                      # local (whole distribution), completions or chat (top-N)
    top_n: int | None              # visible alternatives per position (None: the whole distribution)
    positions: list[int]           # 0-based word indices tested
    at_or_above: list[int]         # list words scoring at least as well as the passphrase word
    visible: list[bool]            # the word matched some scored token (always True locally)
    p_positions: list[float]
    p_value: float                 # the mode's combiner over the positions (COMBINERS)
    vocab_size: int
    combiner: str = "fisher"
    replies: list[str] | None = None        # chat and text: the greedy reply to each position's prompt
    reply_positions: list[int] | None = None  # chat: the reply token whose top-N was scored; text: the word
    refusals: int | None = None             # chat and text: replies that decline (a miss, recorded apart)
    prompts: list[Any] = field(default_factory=list)
    refined: bool = False          # local: full-word scores (refined_count), not the leading token alone
    cap: int | None = None         # refined: most full-word scores computed per position (None: no cap)
    candidates: list[int] = field(default_factory=list)  # refined: per position, words whose leading
    #                                token reaches the passphrase word's full score (count = this if > cap)

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
    return [{"role": "user", "content": CHAT_INSTRUCTION.format(context=text)}]


def prefill_prompt(text: str) -> list[dict[str, str]]:
    """A conversation whose final assistant message is the shown text, for the server to continue."""
    return [{"role": "user", "content": PREFILL_INSTRUCTION}, {"role": "assistant", "content": text}]


def prompt_for(mode: str, text: str) -> Any:
    """What an API mode sends for shown text: the text itself (completions, text), a prefill conversation
    (prefill, text-prefill), or the echo instruction (chat, text-chat)."""
    if mode in (PREFILL, TEXT_PREFILL):
        return prefill_prompt(text)
    return chat_prompt(text) if mode in (CHAT, TEXT_CHAT) else text


def combine(mode: str, p_positions: Sequence[float]) -> float:
    """The mode's combiner (COMBINERS): Fisher's product locally, the truncated product for top-N, and
    for the text modes P(Binomial(n, 1/V) >= hits), a hit being a position with p_j < 1 (p_j = 1/V)."""
    if mode == LOCAL:
        return fisher_combine(p_positions)
    if mode in TEXT_MODES:
        hits = [p for p in p_positions if p < 1.0]
        return binom_tail(len(hits), len(p_positions), max(hits, default=0.0))
    return truncated_product(p_positions, TPM_TAU)


def _holds(tokens: Sequence[str], upto: int, at: int, gram: list[str]) -> bool:
    return word_tokens("".join(tokens[:upto]))[at:at + len(gram)] == gram


def aligned_position(tokens: Sequence[str], shown: str) -> int:
    """The reply token whose top-N is scored: the token right after the reply's first reproduction of the
    shown text's last m words (m = 3, 2, 1: the longest reproduced; words compared by word_tokens), and
    after which the next token does not extend the last word; else the first token (0).
    Looks only at the reply and the shown text, never at the held-out word, so p_j stays super-uniform."""
    want, got = word_tokens(shown), word_tokens("".join(tokens))
    for m in range(min(ALIGN_WORDS, len(want)), 0, -1):
        gram = want[-m:]
        at = next((q for q in range(len(got) - m + 1) if got[q:q + m] == gram), None)
        if at is None:
            continue
        for i in range(1, len(tokens)):
            if _holds(tokens, i, at, gram) and _holds(tokens, i + 1, at, gram):
                return i
        return 0
    return 0


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


def refined_count(lead: np.ndarray, own: int, own_rest: float, rest_of: Callable[[np.ndarray], np.ndarray],
                  multi: np.ndarray, cap: int | None, tol: float = 0.0) -> tuple[int, int]:
    """(count, candidates) at one position under the full-word score S(w) = lead(w) + min(0, rest(w)).

    `lead` holds every list word's leading-token log-probability, `multi` which words have more than one
    token (the others' S is their lead), `own_rest` the passphrase word's remaining tokens'
    log-probability, `rest_of(indices)` the others'. S(w) <= lead(w) by construction, so only candidates
    with lead(w) >= S(own) - tol can count; `tol` (>= the scorer's numerical noise between batches)
    counts near-ties against the ghost, and so do NaNs (a NaN leading score counts; another word's NaN
    remainder is taken as 0, the passphrase word's own NaN score counts V). With more than `cap`
    multi-token candidates none is scored and the count is the number of candidates, an upper bound of
    the exact count (a position where the word is that far down the list has little to gain)."""
    s_own = lead[own] + np.minimum(0.0, own_rest)
    if np.isnan(s_own):
        return len(lead), len(lead)
    cand = np.flatnonzero(np.isnan(lead) | (lead >= s_own - tol))
    others = cand[cand != own]
    need = others[multi[others]]
    if cap is not None and len(need) > cap:
        return len(cand), len(cand)
    # Another word's NaN remainder scores 0: S = lead, the most it can count against the ghost.
    s = lead[need] + np.minimum(0.0, np.nan_to_num(rest_of(need), nan=0.0)) if len(need) else np.empty(0)
    return 1 + len(others) - len(need) + int(np.sum(np.isnan(s) | (s >= s_own - tol))), len(cand)


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
    return RankTestResult(mode, top_n, pos, counts, vis, ps, combine(mode, ps), vocab, COMBINERS[mode],
                          prompts=prompts)


def _local_refined(target: Target, g: Ghost, toks: list[list[int]], index: dict[str, int],
                   cap: int | None) -> RankTestResult:
    """The local mode with full-word scores: one pass for every word's leading token at every position
    (next_token_scores), then per position the passphrase word's and the candidates' remaining tokens."""
    lead_ids = [t[0] for t in toks]
    pos = positions(g)
    ctxs = [context(g, j) for j in pos]
    leads = target.next_token_scores(ctxs, lead_ids)
    tol = float(target.word_score_tolerance)
    multi = np.array([len(t) > 1 for t in toks])
    owns = [index[g.words[j]] for j in pos]
    own_rests = target.rest_logprobs(ctxs, [toks[i] for i in owns])   # one batch for the whole ghost
    counts, cands = [], []
    for c, row, own, own_rest in zip(ctxs, leads, owns, own_rests):
        count, n_cand = refined_count(row, own, float(own_rest),
                                      lambda ix, c=c: target.rest_logprobs([c] * len(ix), [toks[i] for i in ix]),
                                      multi, cap, tol)
        counts.append(count)
        cands.append(n_cand)
    ps = [k / len(toks) for k in counts]
    return RankTestResult(LOCAL, None, pos, counts, [True] * len(pos), ps, fisher_combine(ps), len(toks), [],
                          refined=True, cap=cap, candidates=cands)


def _word_tokens(target: Target, words: Sequence[str]) -> list[list[int]]:
    """Each list word's tokens as " word" (the form it takes after the context); one-token fallback."""
    toks = target.word_token_ids([" " + w for w in words])
    lead = target.leading_token_ids([" " + w for w in words])
    return [t if t and t[0] == lead_id else [lead_id] for t, lead_id in zip(toks, lead)]


def rank_tests(target: Target, ghosts: Sequence[Ghost], words: Sequence[str], *, mode: str | None = None,
               top_n: int = DEFAULT_TOP_N, refine: bool = False, cap: int | None = REFINE_CAP
               ) -> list[RankTestResult]:
    """The word-rank test of each ghost (all drawn from the list `words`) against `target`. Locally,
    `refine` (opt-in: about 4x the cost on CPU, and past the cap it counts every candidate) uses full-word
    scores where the target gives them (at most `cap` per position; None: all)."""
    mode = check_mode(target, mode)
    index = {w: i for i, w in enumerate(words)}
    if mode == LOCAL:
        if refine and target.supports_word_scores:
            toks = _word_tokens(target, words)
            return [_local_refined(target, g, toks, index, cap) for g in ghosts]
        lead = target.leading_token_ids([" " + w for w in words])
        out = []
        for g in ghosts:
            pos = positions(g)
            rows = target.next_token_scores([context(g, j) for j in pos], lead)
            out.append(_result(LOCAL, None, g, pos, rows, index, len(words), []))
        return out
    if mode == CHAT:
        return _chat_tests(target, ghosts, words, index, top_n)
    if mode in TEXT_MODES:
        return _text_tests(target, ghosts, words, index, mode)
    jobs = [(g, positions(g)) for g in ghosts]
    prompts = [prompt_for(mode, context(g, j)) for g, pos in jobs for j in pos]
    tops = iter(target.top_next_tokens(prompts, top_n))
    flat = iter(prompts)
    out = []
    for g, pos in jobs:
        rows = np.array([match_scores(next(tops), words) for _ in pos]).reshape(len(pos), len(words))
        out.append(_result(mode, top_n, g, pos, rows, index, len(words), [next(flat) for _ in pos]))
    return out


def _chat_tests(target: Target, ghosts: Sequence[Ghost], words: Sequence[str], index: dict[str, int],
                top_n: int) -> list[RankTestResult]:
    """Echo-aligned chat: one greedy reply per position, scored at aligned_position (an empty reply shows
    nothing: every word unmatched, p_j = 1)."""
    jobs = [(g, positions(g)) for g in ghosts]
    shown = [context(g, j) for g, pos in jobs for j in pos]
    prompts = [prompt_for(CHAT, c) for c in shown]
    replies = iter(target.top_reply_tokens(prompts, top_n, CHAT_REPLY_TOKENS))
    flat = iter(zip(shown, prompts))
    out = []
    for g, pos in jobs:
        rows, texts, places, asked = [], [], [], []
        for _ in pos:
            reply: list[ReplyToken] = next(replies)
            c, prompt = next(flat)
            k = aligned_position([t.token for t in reply], c)
            rows.append(match_scores(reply[k].top if reply else {}, words))
            texts.append("".join(t.token for t in reply))
            places.append(k)
            asked.append(prompt)
        r = _result(CHAT, top_n, g, pos, np.array(rows).reshape(len(pos), len(words)), index, len(words), asked)
        r.replies, r.reply_positions, r.refusals = texts, places, sum(map(is_refusal, texts))
        out.append(r)
    return out


def next_word_place(words: Sequence[str], reply: str, shown: str, mode: str) -> int:
    """Which reply word is the model's next word (looks at the reply and the shown text only).
    Raw and prefill replies continue the shown text: their first word, or their second when the first
    is glued to the shown text's last word (the reply starts inside that word). A chat reply is aligned
    after its first reproduction of the shown text's last m words (m = 3, 2, 1), else its first word."""
    if mode != TEXT_CHAT:
        return 1 if reply[:1].isalnum() and shown[-1:].isalnum() else 0
    want = word_tokens(shown)
    for m in range(min(ALIGN_WORDS, len(want)), 0, -1):
        at = next((q for q in range(len(words) - m + 1) if list(words[q:q + m]) == want[-m:]), None)
        if at is not None:
            return at + m
    return 0


def _text_replies(target: Target, prompts: list[Any], mode: str) -> list[str]:
    """One greedy reply per prompt ("" where a target gave none)."""
    if mode == TEXT:
        outs = target.generate_many(prompts, max_tokens=TEXT_REPLY_TOKENS, temperature=0.0)
    else:
        outs = target.chat_many(prompts, max_tokens=TEXT_REPLY_TOKENS if mode == TEXT_PREFILL else CHAT_REPLY_TOKENS,
                                temperature=0.0)
    return [str(o[0]) if o else "" for o in outs]


def _text_tests(target: Target, ghosts: Sequence[Ghost], words: Sequence[str], index: dict[str, int],
                mode: str) -> list[RankTestResult]:
    """Text only: per position one greedy reply; the word at next_word_place is the only visible word
    (score 0, every other list word -inf), so p_j = 1/V when it is the passphrase word and 1 otherwise."""
    jobs = [(g, positions(g)) for g in ghosts]
    shown = [context(g, j) for g, pos in jobs for j in pos]
    prompts = [prompt_for(mode, c) for c in shown]
    replies = iter(_text_replies(target, prompts, mode))
    flat = iter(zip(shown, prompts))
    out = []
    for g, pos in jobs:
        rows, texts, places, asked = [], [], [], []
        for _ in pos:
            reply, (c, prompt) = next(replies), next(flat)
            if mode == TEXT_PREFILL and reply.startswith(c):   # a server that echoes the prefilled text
                reply = reply[len(c):]
            got = word_tokens(reply)
            k = next_word_place(got, reply, c, mode)
            row = np.full(len(words), -np.inf)
            if k < len(got) and got[k] in index:
                row[index[got[k]]] = 0.0
            rows.append(row)
            texts.append(reply)
            places.append(k)
            asked.append(prompt)
        r = _result(mode, None, g, pos, np.array(rows).reshape(len(pos), len(words)), index, len(words), asked)
        r.replies, r.reply_positions, r.refusals = texts, places, sum(map(is_refusal, texts))
        out.append(r)
    return out
