"""A detection session: the one sequence every test of a ledger identifier goes through.

    load the target (and reference)  ->  check the capabilities the tests need  ->  take each member's
    next test number and log what the test will show  ->  run (engine.py)  ->  store the run  ->
    finish each test with its p-values  ->  write the report

The capability check is inside (`run_session` and `run_recorded` call `require_capabilities`), so a
library user cannot skip it; the numbering comes before the run, so a crash or Ctrl-C still counts the
test (ghostsent/ledger/history.py says why that matters). The no-code path (`card`, `check`) records
through `record_card` and `check_recorded` here as well.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ghostsent.detection.engine import disclosures, run_detection
from ghostsent.detection.probe import DEFAULT_KS, ProbeResult, check_ks, check_replies
from ghostsent.detection.registry import chosen
from ghostsent.detection.results import DetectionResult, DetectionSettings
from ghostsent.detection.subjects import Subject, wordlist_for
from ghostsent.errors import InputError
from ghostsent.ledger.history import history
from ghostsent.ledger.records import RunRecord
from ghostsent.stats import history_p
from ghostsent.targets import load_target
from ghostsent.targets.base import Target
from ghostsent.targets.capability import require_logprobs, require_rank_capability

CARD_ENDPOINT = "chat window (prompts from ghostsent card)"
CHECK_MODEL = "chat window (pasted replies)"


@dataclass(frozen=True)
class ModelChoice:
    """A model as named by a user: a spec (targets.SCHEMES), how to reach it, and its model options."""

    spec: str | None = None
    gguf: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    options: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> Target:
        return load_target(self.spec, gguf=self.gguf, base_url=self.base_url, api_key_env=self.api_key_env,
                           options=self.options)


def _target(model: "Target | ModelChoice | str | None") -> Target:
    if isinstance(model, Target):
        return model
    return (model if isinstance(model, ModelChoice) else ModelChoice(model)).load()


def require_capabilities(target: Target, reference: Target | None, settings: DetectionSettings) -> None:
    """Refuse a target (or reference) whose log-probabilities a chosen test needs but cannot trust,
    before any test is counted (CapabilityError)."""
    if any(t.needs_logprobs for t in chosen(settings.tests)):
        for t in (target, reference):
            if t is not None:
                require_logprobs(t)
    if "rank" in settings.tests:
        from ghostsent.detection.rank import check_mode

        require_rank_capability(target, check_mode(target, settings.rank_mode), settings.top_n)


@dataclass
class SessionResult:
    result: DetectionResult
    run_id: int | None                       # None with store=False
    report: dict[str, str] | None = None     # paths written, with report_dir


def run_session(ledger: Any, model: "Target | ModelChoice | str | None", members: Sequence[Subject],
                settings: DetectionSettings, *, reference: "Target | ModelChoice | str | None" = None,
                kind: str = "audit", store: bool = True, progress: bool = False,
                report_dir: "str | Path | None" = None) -> SessionResult:
    """Test `members` (ledger identifiers) against a model, as one more test of each (see the module
    docstring). With store=False the prompts, replies and scores are not kept, but the test still counts
    and what it showed is logged. With report_dir, the report is written there."""
    target = _target(model)
    needs_ref = reference is not None and any(t.shows_reference for t in chosen(settings.tests))
    ref = _target(reference) if needs_ref else None
    res, run_id = run_recorded(ledger, target, members, settings, reference=ref, kind=kind, store=store,
                               progress=progress)
    report = None
    if report_dir is not None:
        from ghostsent.detection.report import write_report

        report = write_report(res, report_dir, run_id=run_id)
    return SessionResult(res, run_id, report)


def run_recorded(ledger: Any, target: Target, members: Sequence[Subject], settings: DetectionSettings,
                 reference: Target | None = None, kind: str = "audit", store: bool = True,
                 progress: bool = False) -> tuple[DetectionResult, int | None]:
    """run_detection as one more test of each member identifier: capabilities checked, numbered and
    logged before it runs, corrected for the identifier's history, finished (p-values) after."""
    require_capabilities(target, reference, settings)
    entries = [(s.key, kind, target.spec) for s in members]
    shown = [(d.identifier, d.endpoint, d.via, d.words) for d in disclosures(target, reference, members, settings)]
    reserved = ledger.reserve_tests(entries, store, shown)
    numbers = {s.key: number for s, (_, number) in zip(members, reserved)}
    res = run_detection(target, members, settings, reference=reference, kind=kind, progress=progress,
                        test_numbers=numbers)
    run_id = store_result(ledger, res) if store else None
    rows = {r.key: r for r in res.members()}
    for s, (test_id, _) in zip(members, reserved):
        ledger.finish_test(test_id, rows[s.key].p_value, rows[s.key].p_history, run_id)
    return res, run_id


def store_result(ledger: Any, res: DetectionResult) -> int:
    """Write the run and every prompt, reply, score and p-value into the ledger, in one transaction."""
    summary = {"verdict": res.verdict, "detected": res.detected, "combined": res.combined.to_dict(),
               "controls": {k: v.to_dict(with_p_values=False) for k, v in res.controls.items()},
               "seconds": res.seconds}
    tests = chosen(res.settings.tests)
    with ledger.transaction():
        run_id = ledger.add_run(res.kind, res.model, {**res.settings.to_dict(), "reference": res.reference}, summary,
                                status=res.status)
        records = [rec for s in res.subjects for t in tests if t.name in s.outcomes
                   for rec in t.ledger_records(s, s.key if s.role == "member" else None)]
        ledger.add_run_records(run_id, records)
    return run_id


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
            RunRecord(ident.id, "member", "probe", None, r.reply, float(r.matches), r.p_value,
                      {"k": r.k, "mode": r.mode, "places": r.places, "held_out": r.held_out})
            for r in res.records])
    return run_id
