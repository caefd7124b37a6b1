"""An identifier's history: every test it has had, and which of its words were shown to whom.

Two facts make this part of the evidence, not bookkeeping (docs/statistics.md, section 4):

* Each test of an identifier is one more chance of a false detection. Its j-th test (whatever command
  ran it, stored or --no-store, whichever model) is held to alpha/(j(j+1)); these shares add up to alpha,
  so however often a user re-tests and whenever they stop, P(any false DETECTED) <= alpha. The test
  number is taken in the ledger BEFORE the test runs, so a crash or Ctrl-C still counts.
* Testing shows a provider some or all of the passphrase (a probe shows all but the last k words; an
  API perplexity test shows every word; a card shows what its prompts show). A provider that trains on
  traffic can then "memorise" the identifier from the owner's own test, so every disclosure is logged,
  and `check` scores only words that no prompt has shown.

The CLI goes through `run_recorded`, `record_card` and `check_recorded`; `history` summarises.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ghostsent.audit import (DetectionResult, DetectionSettings, Subject, disclosures, run_detection,
                             wordlist_for)
from ghostsent.audit import store as store_result
from ghostsent.errors import InputError
from ghostsent.ledger.history import History, history  # noqa: F401 (re-exported for now)
from ghostsent.probe import DEFAULT_KS, ProbeResult, check_ks, check_replies
from ghostsent.stats import history_p
from ghostsent.targets.base import Target
from ghostsent.targets.capability import require_logprobs

CARD_ENDPOINT = "chat window (prompts from ghostsent card)"
CHECK_MODEL = "chat window (pasted replies)"


# --- tests through the ledger ------------------------------------------------------------------------------

def run_recorded(ledger: Any, target: Target, members: Sequence[Subject], settings: DetectionSettings,
                 reference: Target | None = None, kind: str = "audit", store: bool = True,
                 progress: bool = False) -> tuple[DetectionResult, int | None]:
    """run_detection as one more test of each member identifier: numbered and logged before it runs,
    corrected for the identifier's history, finished (p-values) after. With store=False (--no-store)
    the prompts, replies and scores are not kept, but the test still counts and its disclosures stay."""
    if "ppl" in settings.tests:  # refuse unusable log-probabilities before counting a test
        for t in (target, reference):
            if t is not None:
                require_logprobs(t)
    entries = [(s.key, kind, target.spec) for s in members]
    shown = [(d["identifier"], d["endpoint"], d["via"], d["words"]) for d in disclosures(target, reference, members, settings)]
    reserved = ledger.reserve_tests(entries, store, shown)
    numbers = {s.key: number for s, (_, number) in zip(members, reserved)}
    res = run_detection(target, members, settings, reference=reference, kind=kind, progress=progress,
                        test_numbers=numbers)
    run_id = store_result(ledger, res) if store else None
    rows = {r["key"]: r for r in res.members()}
    for s, (test_id, _) in zip(members, reserved):
        r = rows[s.key]
        ledger.finish_test(test_id, r.get("p_value"), r.get("p_history"), run_id)
    return res, run_id


def record_card(ledger: Any, identifier_id: str, ks: Sequence[int]) -> int:
    """Log what each prompt of a card shows (any of them may be pasted into the same chat). Returns how
    many last words `check` will score: those no prompt logged so far shows."""
    ident = ledger.get(identifier_id)
    n = ident.n_words
    with ledger.transaction():
        for k in check_ks(ks, n):
            ledger.add_disclosure(ident.id, CARD_ENDPOINT, "card", list(range(n - k)))
    return n - history(ledger, ident.id).shown()


@dataclass
class CheckOutcome:
    identifier_id: str
    result: ProbeResult
    revealed: int              # leading words some prompt has shown
    answered_ks: tuple[int, ...]
    test_number: int
    p_history: float
    alpha: float
    run_id: int | None

    @property
    def tail_words(self) -> int:
        return len(self.result.records[0].held_out) if self.result.records else 0

    @property
    def detected(self) -> bool:
        return self.p_history < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict() | {
            "identifier": self.identifier_id, "tail_words": self.tail_words, "revealed_words": self.revealed,
            "answered_ks": list(self.answered_ks), "test_number": self.test_number, "p_history": self.p_history,
            "detected": self.detected, "alpha": self.alpha, "run_id": self.run_id}


def check_recorded(ledger: Any, identifier_id: str, replies: Sequence[str], alpha: float,
                   answered_ks: Sequence[int] | None = None, wordlist: str | None = None) -> CheckOutcome:
    """Score replies pasted from a chat window as one more test of the identifier.

    Only words that no prompt ever showed are scored: not those of the card prompts and probes logged
    for it (with no card logged, the default card is assumed), nor of the prompts `answered_ks` names
    (which say where in a reply to look; default: the card's).
    Every check is counted and stored, with its replies.
    """
    if not replies:
        raise InputError("check needs at least one reply")
    ident = ledger.get(identifier_id)
    wl = wordlist_for(ident, wordlist)
    n = ident.n_words
    h = history(ledger, ident.id)
    card_ks = h.card_ks() or list(DEFAULT_KS)
    ks = check_ks(answered_ks or card_ks, n)
    revealed = max(h.shown(), n - min(ks), n - min(card_ks))
    [(test_id, number)] = ledger.reserve_tests([(ident.id, "check", CHECK_MODEL)], True)
    res = check_replies(ident.ghost, replies, wl.size, revealed=revealed, answered_ks=ks)
    p_hist = history_p(res.p_value, number)
    run_id = _store_check(ledger, ident, res, number, p_hist, alpha, revealed, ks)
    ledger.finish_test(test_id, res.p_value, p_hist, run_id)
    return CheckOutcome(ident.id, res, revealed, ks, number, p_hist, alpha, run_id)


def _store_check(ledger: Any, ident: Any, res: ProbeResult, number: int, p_hist: float, alpha: float,
                 revealed: int, ks: Sequence[int]) -> int:
    summary = {"p_value": res.p_value, "p_history": p_hist, "test_number": number, "detected": p_hist < alpha,
               "tail_words": ident.n_words - revealed}
    with ledger.transaction():
        run_id = ledger.add_run("check", {"spec": CHECK_MODEL}, {"alpha": alpha, "answered_ks": list(ks),
                                                                  "revealed_words": revealed}, summary)
        ledger.add_run_records(run_id, [
            {"identifier_id": ident.id, "role": "member", "test": "probe", "prompt": None, "reply": r.reply,
             "score": float(r.matches), "p_value": r.p_value,
             "details": {"k": r.k, "mode": r.mode, "places": r.places, "held_out": r.held_out}}
            for r in res.records])
    return run_id
