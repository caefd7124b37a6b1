"""Can this target's prompt log-probabilities be trusted?

The perplexity test and the membership-inference baselines read the log-probability of every token of
a given text. Servers fail at this in quiet ways that still return plausible-looking numbers: no
prompt log-probabilities at all (only the generated token's), gaps, or values shifted by one token
(token i carrying the probability of token i-1 or i+1; llama-cpp-python's echo has exactly this bug).
A shifted result gives a detection verdict that means nothing, so we test on texts whose
predictability we know before trusting any number:

* a counting sequence and the weekdays: late tokens are near-certain for any language model;
* a sentence of unrelated words written twice: the second copy must be far more likely (copying);
* counting with one out-of-place word: the lowest value must sit on that word, not beside it;
* where the server returns top alternatives, the best alternative at each position must be the token
  at that position, not its neighbour.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

from ghostsent.errors import CapabilityError, ModelError
from ghostsent.targets.base import EchoLogprobs, Target

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15"
WEEKDAYS = "Monday, Tuesday, Wednesday, Thursday, Friday"
SENTENCE = "Purple walruses quietly negotiate with seventeen stubborn lighthouses."
REPEATED = SENTENCE + " " + SENTENCE
SURPRISE_WORD = " banana"
SURPRISE = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12," + SURPRISE_WORD + ", 14, 15, 16"

LATE_TOKENS = 4
MIN_LATE_LOGPROB = math.log(0.3)
MIN_REPEAT_GAIN = 2.0  # nats per token: copying makes the second copy far more likely

NO_PROMPT_LOGPROBS = "server returned no prompt log-probabilities (only generated tokens)"
SHIFTED = "log-probabilities are shifted by one token"


@dataclass
class CapabilityReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


_CACHE: "weakref.WeakKeyDictionary[Target, CapabilityReport]" = weakref.WeakKeyDictionary()


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _alignment_votes(e: EchoLogprobs) -> dict[str, int]:
    """How often the best alternative at position i is token i, i+1 (next) or i-1 (previous)."""
    votes = {"here": 0, "next": 0, "prev": 0}
    if not e.top:
        return votes
    for i, top in enumerate(e.top):
        if not top or e.logprobs[i] is None:
            continue
        best = max(top, key=top.get)
        if best == e.tokens[i]:
            votes["here"] += 1
        elif i + 1 < len(e.tokens) and best == e.tokens[i + 1]:
            votes["next"] += 1
        elif i > 0 and best == e.tokens[i - 1]:
            votes["prev"] += 1
    return votes


# A little over 80 lines: the checks are one ordered list (each needs the scores of the one before), kept
# together so the order that decides a verdict can be read in one place.
def check_logprob_capability(target: Target, *, refresh: bool = False) -> CapabilityReport:
    """Score the probe texts and report every way the prompt log-probabilities are unusable."""
    if not refresh and target in _CACHE:
        return _CACHE[target]
    problems: list[str] = []
    details: dict[str, Any] = {}
    echoes = {name: target.echo_logprobs(text) for name, text in
              (("counting", COUNTING), ("weekdays", WEEKDAYS), ("repeated", REPEATED), ("surprise", SURPRISE))}
    texts = {"counting": COUNTING, "weekdays": WEEKDAYS, "repeated": REPEATED, "surprise": SURPRISE}

    # 1. presence and coverage
    total = sum(max(len(e.tokens) - 1, 0) for e in echoes.values())
    missing = sum(sum(v is None for v in e.logprobs[1:]) for e in echoes.values())
    have = sum(sum(v is not None for v in e.logprobs) for e in echoes.values())
    details["prompt_tokens"] = total
    details["missing"] = missing
    if have == 0:
        problems.append(NO_PROMPT_LOGPROBS)
        report = CapabilityReport(False, problems, details)
        _CACHE[target] = report
        return report
    if missing:
        problems.append(f"{missing} of {total} prompt tokens have no log-probability")
    for name, e in echoes.items():
        text = texts[name]
        # A local model's decoded tokens need not spell the text exactly (BOS, byte pieces); an API's must.
        if "".join(e.tokens) != text and not target.computes_logprobs_locally:
            problems.append(f"the returned tokens do not concatenate back to the prompt text ({name!r} probe)")
            break
        if any(e.offsets[i + 1] - e.offsets[i] != len(e.tokens[i]) for i in range(len(e.tokens) - 1)):
            problems.append(f"text offsets do not match the token strings ({name!r} probe)")
            break

    def vals(e: EchoLogprobs) -> list[float]:
        return [v for v in e.logprobs if v is not None]

    # 2. alignment
    shifted = False
    votes = {"here": 0, "next": 0, "prev": 0}
    for e in echoes.values():
        for k, v in _alignment_votes(e).items():
            votes[k] += v
    details["top_alternative_votes"] = votes
    if votes["next"] + votes["prev"] > max(3, 2 * votes["here"]):
        shifted = True
    s = echoes["surprise"]
    start = SURPRISE.index(SURPRISE_WORD)
    idx = next((i for i, o in enumerate(s.offsets) if o == start), None)  # the word's first token
    if idx is not None and all(s.logprobs[j] is not None for j in range(max(idx - 2, 1), min(idx + 3, len(s.tokens)))):
        window = {j: s.logprobs[j] for j in range(max(idx - 2, 1), min(idx + 3, len(s.tokens)))}
        lowest = min(window, key=window.get)
        details["surprise"] = {"token_index": idx, "lowest_index": lowest,
                               "logprob": s.logprobs[idx]}
        if lowest in (idx - 1, idx + 1):
            shifted = True
    late = [_mean(vals(echoes[n])[-LATE_TOKENS:]) for n in ("counting", "weekdays")]
    details["late_mean_logprob"] = {"counting": late[0], "weekdays": late[1]}
    r = echoes["repeated"]
    half = len(SENTENCE) + 1
    first = [v for v, o in zip(r.logprobs, r.offsets) if v is not None and o < half]
    second = [v for v, o in zip(r.logprobs, r.offsets) if v is not None and o >= half]
    gain = _mean(second) - _mean(first[1:] if len(first) > 1 else first)
    details["repeat_gain"] = gain
    if shifted:
        problems.append(SHIFTED)
    else:
        # Both sequences must fail: a fine-tuned model can forget one (a model tuned on the Bible gave
        # -1.57 on the weekdays) while its log-probabilities are perfectly aligned.
        if max(late) < MIN_LATE_LOGPROB:
            problems.append(
                "predictable tokens get low probability (mean log-probability of the last "
                f"{LATE_TOKENS} tokens of a counting sequence {late[0]:.2f}, of the weekdays {late[1]:.2f}; "
                f"expected > {MIN_LATE_LOGPROB:.2f}): the values do not belong to their tokens"
            )
        if not gain > MIN_REPEAT_GAIN:
            problems.append(
                f"a repeated sentence is not more likely the second time (gain {gain:.2f} nats/token, "
                f"expected > {MIN_REPEAT_GAIN}): the values do not belong to their tokens"
            )
    report = CapabilityReport(not problems, problems, details)
    _CACHE[target] = report
    return report


def require_logprobs(target: Target) -> CapabilityReport:
    """The capability report, or CapabilityError naming every problem (cached per target).

    Called wherever scores are produced (perplexity.candidate_nll), so a library user gets the same
    refusal as the CLI."""
    if not target.supports_logprobs:
        raise CapabilityError(f"{target.spec} gives no log-probabilities; use the last-k probe instead")
    if target.computes_logprobs_locally:
        # A local model's log-probabilities come straight from its own logits; their alignment is fixed
        # by construction (and tested against a plain forward pass), so the heuristic is not needed.
        return CapabilityReport(True, [], {"local": True})
    rep = check_logprob_capability(target)
    if not rep.ok:
        raise CapabilityError(f"{target.spec}: cannot use its log-probabilities: " + "; ".join(rep.problems))
    return rep


_TOP_CACHE: "weakref.WeakKeyDictionary[Target, dict[str, bool]]" = weakref.WeakKeyDictionary()
TOP_CHECK_TEXT = "The capital of France is"
# Prefill check: the assistant's message ends inside a word, so a server that continues it puts the rest of
# the word first, and one that starts a new reply (ignoring continue_final_message) does not.
PREFILL_CHECK_TEXT = "Monday, Tuesday, Wednesday, Thurs"
PREFILL_CHECK_REST = "day"
PREFILL_CHECK = [{"role": "user", "content": "Continue this text."}, {"role": "assistant", "content": PREFILL_CHECK_TEXT}]


def _not_continued(target: Target, mode: str, what: str) -> CapabilityError:
    return CapabilityError(f"{target.spec}: the server does not continue a final assistant message (after "
                           f"{PREFILL_CHECK_TEXT!r} {what}: it began a new reply); --rank-mode {mode} needs "
                           "continue_final_message (vLLM, llama.cpp's llama-server)", hint="rank_mode")


def require_top_logprobs(target: Target, mode: str, n: int) -> None:
    """Refuse a target that cannot give what the word-rank test reads in `mode` (CapabilityError, one
    line), before any test is counted: a local model's whole distribution, or an API's top-n first-token
    alternatives (one request, cached per target and mode). The test's validity does not depend on the
    values being right (any function of model and prompt is fine); this only refuses a target that
    returns none, where every word would tie at the bottom and the test could never detect; and, for
    `prefill`, a server that starts a new reply instead of continuing the assistant's message (the test
    would stay valid but read the wrong place and could hardly ever detect)."""
    if mode == "local":
        if not target.computes_logprobs_locally:
            raise CapabilityError(f"{target.spec} does not run locally: read its top log-probabilities over "
                                  "completions or chat instead", hint="rank_mode")
        return
    if not target.supports_top_logprobs:
        raise CapabilityError(f"{target.spec} reports no top log-probabilities; the word-rank test cannot run")
    seen = _TOP_CACHE.setdefault(target, {})
    if mode not in seen:
        prompt: object = TOP_CHECK_TEXT if mode == "completions" else [{"role": "user", "content": TOP_CHECK_TEXT}]
        if mode == "prefill":
            prompt = PREFILL_CHECK
        try:
            top = target.top_next_tokens([prompt], n)[0]
        except (ModelError, NotImplementedError) as e:
            raise CapabilityError(f"{target.spec}: no top log-probabilities over {mode} ({e}); the word-rank "
                                  "test cannot run") from None
        seen[mode] = bool(top) and (mode != "prefill" or continues_word(top, PREFILL_CHECK_REST))
        if top and not seen[mode]:
            raise _not_continued(target, mode, f"its top {n} tokens hold no start of {PREFILL_CHECK_REST!r}")
    if not seen[mode]:
        raise CapabilityError(f"{target.spec}: no top log-probabilities over {mode}; the word-rank test cannot run")


def require_rank_capability(target: Target, mode: str, n: int) -> None:
    """What the word-rank test's `mode` reads, checked before the test is counted: the top log-probabilities
    (require_top_logprobs), or for the text modes nothing but replies, with prefill working for
    `text-prefill` (one short chat request, cached per target)."""
    if mode == "text-prefill":
        seen = _TOP_CACHE.setdefault(target, {})
        if mode not in seen:
            # Two tokens: too few for a new reply to repeat the ~10-token text before going on, so a reply
            # that starts with the text (llama-server returns the prefilled text with its continuation;
            # vLLM returns the continuation alone) can only be the continued message.
            try:
                replies = target.chat_many([PREFILL_CHECK], max_tokens=2)
            except (ModelError, NotImplementedError) as e:
                raise CapabilityError(f"{target.spec}: no chat replies ({e}); the word-rank test cannot run") from None
            reply = str(replies[0][0]) if replies and replies[0] else ""
            reply = reply[len(PREFILL_CHECK_TEXT):] if reply.startswith(PREFILL_CHECK_TEXT) else reply
            seen[mode] = continues_word({reply[:len(PREFILL_CHECK_REST)]: 0.0}, PREFILL_CHECK_REST)
            if not seen[mode]:
                raise _not_continued(target, mode, f"it replied {reply[:40]!r}, not the rest of the word")
        return
    if mode in ("text", "text-chat"):
        return
    require_top_logprobs(target, mode, n)


def continues_word(top: dict[str, float], rest: str) -> bool:
    """Some visible token spells the start of `rest` (or all of it and more): the model went on inside the
    word it was given half of. A new reply starts with a word or a space, not with the middle of one."""
    return any(t.strip() and t == t.lstrip() and (rest.startswith(t) or t.startswith(rest)) for t in top)
