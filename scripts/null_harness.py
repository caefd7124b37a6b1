"""The null harness: an innocent model through every workflow, counting false detections.

Every target here (ghostsent/detection/innocent.py) never saw any ghost sentence, so every DETECTED is false. For
each workflow the harness runs many independent trials and counts how often the verdict is DETECTED at
alpha = 0.05 and 0.01; ghostsent's promise is that this rate is at most alpha. A workflow FAILS when
its count is significantly above alpha * runs (one-sided binomial test at level 0.01), which catches a
2x alpha defect with high probability at the default number of runs (the `broken-rule` self-check,
min of two valid p-values, must FAIL).

    python scripts/null_harness.py                  # every workflow, 4000 runs each, fresh randomness
    python scripts/null_harness.py --runs 300 --seed 1 --only probe-raw,check-pasted-chat

tests/test_null_harness.py runs a reduced version in CI. The table in docs/statistics.md comes from
the first command.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scipy import stats as _st  # noqa: E402

from ghostsent.detection import session  # noqa: E402
from ghostsent.detection.engine import run_detection  # noqa: E402
from ghostsent.detection.innocent import (DriftingAPI, PrefixShiftedScores, RandomNextTokens,  # noqa: E402
                                         RandomReplies, RandomScores, WordFrequencyModel)
from ghostsent.detection.perplexity import candidate_nll  # noqa: E402
from ghostsent.ledger import Ledger  # noqa: E402
from ghostsent.passphrase import NATURAL, new_ghost  # noqa: E402
from ghostsent.detection.probe import DEFAULT_KS, card_prompts  # noqa: E402
from ghostsent.detection.results import DetectionSettings  # noqa: E402
from ghostsent.detection.subjects import Subject  # noqa: E402
from ghostsent.wordlists import WordList, load_wordlist  # noqa: E402

ALPHAS = (0.05, 0.01)
NULLS = 999         # rank p-values in steps of 1/1000: p < 0.05 and p < 0.01 have chances 0.049 and 0.009
RETESTS = 5         # repeated workflows: the user re-tests up to this often, stopping at the first DETECTED
DEVANAGARI = [chr(c) for c in range(0x915, 0x939 + 1)]
SIGNS = ["", "\u093e", "\u093f", "\u0940", "\u0941", "\u0942", "\u0947", "\u0948", "\u094b", "\u094c"]


def user_list(folder: Path) -> Path:
    """A user's list file in a script with combining marks, of the smallest size allowed (matches are
    likely), saved with a BOM as Windows editors do."""
    syll = [c + s for c in DEVANAGARI for s in SIGNS]
    words = random.Random(0).sample(sorted({a + b for a in syll for b in syll}), 1024)
    path = folder / "devanagari-1024.txt"
    path.write_text("\ufeff" + "\n".join(words) + "\n", encoding="utf-8")
    return path


@dataclass
class Context:
    """What every trial may use: the word lists and a scratch folder for ledgers."""

    en: WordList
    user: WordList
    user_path: Path
    scratch: Path
    nulls: int = NULLS


@dataclass
class Workflow:
    name: str
    what: str
    trial: Callable[[Context, int], float]   # one innocent trial -> the p it is judged on (DETECTED iff < alpha)
    self_check: bool = False                 # a deliberately broken rule: the harness must flag it


# --- helpers -------------------------------------------------------------------------------------------

def _members(wl: WordList, n: int, seed: int, words: int = 8, template: str = "post") -> list[Subject]:
    rng = random.Random(f"members:{seed}")  # not the stream the nulls (settings.seed) are drawn from
    return [Subject(f"m{i}", "member", new_ghost(wl, words, template, rng), wl) for i in range(n)]


def _verdict_p(res) -> float:
    """The smallest p of the run's one family (members and combined): DETECTED iff it is below alpha."""
    ps = [r.p_holm for r in res.members() if r.p_holm is not None]
    if res.combined.p_holm is not None:
        ps.append(res.combined.p_holm)
    return min(ps, default=1.0)


def _detect(target, members, seed: int, nulls: int, **settings) -> float:
    s = DetectionSettings(controls=0, n_nulls=nulls, seed=seed, **settings)
    return _verdict_p(run_detection(target, members, s))


def _ledger(ctx: Context, seed: int, wl: WordList, words: int = 8) -> tuple[Ledger, str]:
    led = Ledger(ctx.scratch / f"l{seed}.db")
    source = str(ctx.user_path) if wl is ctx.user else wl.name
    ident = led.new_identifier("harness", source, words, "post", rng=random.Random(f"identifier:{seed}"))
    return led, ident.id


def _close(led: Ledger) -> None:
    led.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(led.path) + suffix).unlink(missing_ok=True)


# --- the last-k probe ------------------------------------------------------------------------------------

def probe_raw(ctx: Context, seed: int) -> float:
    return _detect(RandomReplies(ctx.user, "random", seed=seed), _members(ctx.user, 1, seed), seed, ctx.nulls,
                   tests=("probe",), modes=("raw",))


def probe_chat_echo(ctx: Context, seed: int) -> float:
    return _detect(RandomReplies(ctx.user, "echo", seed=seed), _members(ctx.user, 1, seed), seed, ctx.nulls,
                   tests=("probe",), modes=("chat",))


def probe_samples(ctx: Context, seed: int) -> float:
    return _detect(RandomReplies(ctx.user, "noisy", seed=seed), _members(ctx.user, 1, seed), seed, ctx.nulls,
                   tests=("probe",), modes=("raw", "chat"), samples=3, temperature=0.8)


# --- card + check -----------------------------------------------------------------------------------------

def _card_chat(target: RandomReplies, prompts: list[str]) -> str:
    """A whole chat pasted as one reply: every prompt, each answered by the innocent model."""
    return "\n\n".join(f"User: {p}\n\nAssistant: {target.chat([{'role': 'user', 'content': p}])[0]}" for p in prompts)


def _check(ctx: Context, seed: int, style: str, k: tuple[int, ...] | None, n_replies: int,
           whole_chat: bool, retests: int = 1) -> float:
    led, ident = _ledger(ctx, seed, ctx.user)
    try:
        ghost = led.get(ident).ghost
        session.record_card(led, ident, DEFAULT_KS)
        prompts = [p["prompt"] for p in card_prompts(ghost, DEFAULT_KS)]
        target = RandomReplies(ctx.user, style, seed=seed)
        best = 1.0
        for _ in range(retests):
            if whole_chat:
                replies = [_card_chat(target, prompts) for _ in range(n_replies)]
            else:
                p = prompts[DEFAULT_KS.index(k[0])] if k else prompts[0]
                replies = [target.chat([{"role": "user", "content": p}])[0] for _ in range(n_replies)]
            out = session.check_recorded(led, ident, replies, alpha=0.05, answered_ks=k)
            best = min(best, out.p_history)
        return best
    finally:
        _close(led)


def check_k2(ctx: Context, seed: int) -> float:
    return _check(ctx, seed, "echo", (2,), 1, whole_chat=False)


def check_no_k_pasted_chat(ctx: Context, seed: int) -> float:
    return _check(ctx, seed, "echo", None, 1, whole_chat=True)


def check_k4_pasted_chat(ctx: Context, seed: int) -> float:
    return _check(ctx, seed, "noisy", (4,), 1, whole_chat=True)


def check_regenerated(ctx: Context, seed: int) -> float:
    return _check(ctx, seed, "noisy", (3,), 4, whole_chat=False)


def check_repeated(ctx: Context, seed: int) -> float:
    return _check(ctx, seed, "random", None, 1, whole_chat=False, retests=RETESTS)


# --- the perplexity test ----------------------------------------------------------------------------------

def _ppl(target, ctx: Context, seed: int, reference=None, wl: WordList | None = None) -> float:
    members = _members(wl or ctx.en, 1, seed)
    s = DetectionSettings(tests=("ppl",), controls=0, n_nulls=ctx.nulls, seed=seed)
    return _verdict_p(run_detection(target, members, s, reference=reference))


def ppl_normal(ctx: Context, seed: int) -> float:
    return _ppl(RandomScores("normal", seed=seed), ctx, seed)


def ppl_heavy(ctx: Context, seed: int) -> float:
    return _ppl(RandomScores("heavy", seed=seed), ctx, seed)


def ppl_bf16_ties(ctx: Context, seed: int) -> float:
    return _ppl(RandomScores("bf16", seed=seed), ctx, seed)


def ppl_nan(ctx: Context, seed: int) -> float:
    return _ppl(RandomScores("nan", nan_rate=0.2, seed=seed), ctx, seed)


def ppl_drifting_api(ctx: Context, seed: int) -> float:
    return _ppl(DriftingAPI(drift=0.05, seed=seed), ctx, seed)


def ppl_reference(ctx: Context, seed: int) -> float:
    target = WordFrequencyModel(vocab_seed=seed, noise=0.3, seed=seed)
    reference = WordFrequencyModel(vocab_seed=seed, noise=0.3, seed=seed + 1)
    return _ppl(target, ctx, seed, reference=reference, wl=ctx.user)


def ppl_rerun_until_success(ctx: Context, seed: int) -> float:
    """A deterministic innocent model (the ghost's score never changes), re-tested with fresh nulls."""
    led, ident = _ledger(ctx, seed, ctx.en)
    try:
        target = WordFrequencyModel(vocab_seed=seed, noise=0.0, seed=seed)
        members = [Subject(ident, "member", led.get(ident).ghost, ctx.en)]
        best = 1.0
        for j in range(RETESTS):
            s = DetectionSettings(tests=("ppl",), controls=0, n_nulls=ctx.nulls, seed=seed * 100 + j)
            res, _ = session.run_recorded(led, target, members, s, kind="ppl-test", store=j % 2 == 0)
            best = min(best, _verdict_p(res))
        return best
    finally:
        _close(led)


# --- the word-rank test -----------------------------------------------------------------------------------

def rank_local(ctx: Context, seed: int) -> float:
    return _detect(RandomNextTokens(ctx.user, "local", seed=seed), _members(ctx.user, 1, seed), seed, ctx.nulls,
                   tests=("rank",))


def rank_api_chat(ctx: Context, seed: int) -> float:
    """Top-20 over chat, an innocent model whose top tokens include the prompt's own words."""
    return _detect(RandomNextTokens(ctx.user, "api", seed=seed), _members(ctx.user, 1, seed, template="none"), seed,
                   ctx.nulls, tests=("rank",), rank_mode="chat")


def rank_completions_sparse(ctx: Context, seed: int) -> float:
    """Top-20 over completions as in the study (12 words, no prefix: 11 positions, most p_j = 1): the
    truncated product's regime."""
    return _detect(RandomNextTokens(ctx.en, "api", seed=seed), _members(ctx.en, 1, seed, words=12, template="none"),
                   seed, ctx.nulls, tests=("rank",), rank_mode="completions")


def rank_text_random(ctx: Context, seed: int) -> float:
    """Text only, raw: every greedy reply starts with a random list word, so each position hits with
    probability exactly 1/V (the bound binomial-hits assumes is met with equality)."""
    return _detect(RandomReplies(ctx.user, "random", seed=seed), _members(ctx.user, 1, seed), seed, ctx.nulls,
                   tests=("rank",), rank_mode="text")


def rank_text_chat_echo(ctx: Context, seed: int) -> float:
    """Text only, chat: replies echo the shown text's last words, then random list words (the aligned
    place reads one of them)."""
    return _detect(RandomReplies(ctx.user, "echo", seed=seed), _members(ctx.user, 1, seed), seed, ctx.nulls,
                   tests=("rank",), rank_mode="text-chat")


def rank_audit_api(ctx: Context, seed: int) -> float:
    return _detect(RandomNextTokens(ctx.en, "api", seed=seed), _members(ctx.en, 3, seed), seed, ctx.nulls,
                   tests=("probe", "rank"), rank_mode="completions", modes=("chat",))


# --- audit --------------------------------------------------------------------------------------------------

def audit_ppl(ctx: Context, seed: int) -> float:
    return _detect(RandomScores("normal", seed=seed), _members(ctx.en, 3, seed), seed, ctx.nulls, tests=("ppl",))


def audit_probe(ctx: Context, seed: int) -> float:
    return _detect(RandomReplies(ctx.user, "echo", seed=seed), _members(ctx.user, 3, seed), seed, ctx.nulls,
                   tests=("probe",), modes=("chat",))


def audit_both(ctx: Context, seed: int) -> float:
    target = _Both(ctx.user, seed)
    return _detect(target, _members(ctx.user, 3, seed), seed, ctx.nulls, tests=("probe", "ppl"), modes=("raw",))


def audit_strata(ctx: Context, seed: int) -> float:
    """Shipped and user lists, two lengths: three strata joined by Fisher's method."""
    members = (_members(ctx.en, 2, seed, words=8) + _members(ctx.en, 1, seed + 1, words=6)
               + _members(ctx.user, 2, seed + 2, words=8))
    for i, m in enumerate(members):
        m.key = f"m{i}"
    return _detect(RandomScores("bf16", seed=seed), members, seed, ctx.nulls, tests=("ppl",))


def audit_natural(ctx: Context, seed: int) -> float:
    """Four identifiers with per-owner `natural` lead-ins (mostly four strata), scored by a model whose
    numbers shift with the lead-in: each ghost must be ranked against nulls sharing its own prefix."""
    rng = random.Random(f"members:{seed}")
    members = [Subject(f"m{i}", "member", new_ghost(ctx.en, 8, NATURAL, rng), ctx.en) for i in range(4)]
    return _detect(PrefixShiftedScores(seed=seed), members, seed, ctx.nulls, tests=("ppl",))


def pooled_lead_in_nulls(ctx: Context, seed: int) -> float:
    """SELF-CHECK, not a ghostsent workflow: the same four natural-lead-in identifiers ranked against ONE
    null set drawn with the first one's lead-in (Bonferroni over four). Not exchangeable, so its rate is
    far above alpha; the harness must flag it, or the workflow above could not see nulls pooled wrongly."""
    rng = random.Random(f"members:{seed}")
    members = [new_ghost(ctx.en, 8, NATURAL, rng) for _ in range(4)]
    nulls = [members[0].with_words(new_ghost(ctx.en, 8, rng=rng).words) for _ in range(ctx.nulls)]
    scores = candidate_nll(PrefixShiftedScores(seed=seed), members + nulls)
    ghost, null = scores[:4], scores[4:]
    return min(1.0, 4 * min((1 + int((null <= g).sum())) / (len(null) + 1) for g in ghost))


class _Both(RandomScores):
    """Random replies and random scores: an innocent model for both tests at once."""

    def __init__(self, wl: WordList, seed: int) -> None:
        super().__init__("normal", seed=seed)
        self._replies = RandomReplies(wl, "random", seed=seed + 7)

    def _reply(self, prompt_text: str) -> str:
        return self._replies._reply(prompt_text)


def broken_rule(ctx: Context, seed: int) -> float:
    """SELF-CHECK, not a ghostsent workflow: 'either of two independent valid tests', the old audit rule's
    shape. Its rate is about 2 alpha; the harness must flag it, or it could not see such a defect."""
    rng = random.Random(f"broken:{seed}")
    return min(rng.random(), rng.random())


WORKFLOWS = [
    Workflow("probe-raw", "probe, raw text, random list-word replies (user list, V=1024)", probe_raw),
    Workflow("probe-chat-echo", "probe, chat, replies echo the prompt", probe_chat_echo),
    Workflow("probe-samples", "probe, raw+chat, 3 samples, other casing/punctuation", probe_samples),
    Workflow("check-k2", "card + check --k 2, echoing reply", check_k2),
    Workflow("check-pasted-chat", "card + check without --k, whole chat (every prompt) pasted", check_no_k_pasted_chat),
    Workflow("check-k4-pasted-chat", "card + check --k 4, whole chat pasted, other casing", check_k4_pasted_chat),
    Workflow("check-regenerated", "card + check --k 3, 4 regenerated replies at once", check_regenerated),
    Workflow("check-repeated", f"card + check re-run up to {RETESTS}x until DETECTED (ledger history)", check_repeated),
    Workflow("ppl-normal", "ppl-test, normal scores", ppl_normal),
    Workflow("ppl-heavy-tail", "ppl-test, Student-t(1.5) scores", ppl_heavy),
    Workflow("ppl-bf16-ties", "ppl-test, bf16-rounded scores (ties)", ppl_bf16_ties),
    Workflow("ppl-nan", "ppl-test, 20% NaN/inf scores", ppl_nan),
    Workflow("ppl-drifting-api", "ppl-test, API noise that depends on request order", ppl_drifting_api),
    Workflow("ppl-reference", "ppl-test --reference, word-frequency model (user list)", ppl_reference),
    Workflow("ppl-rerun", f"ppl-test re-run up to {RETESTS}x with fresh nulls until DETECTED (--no-store alternating)",
             ppl_rerun_until_success),
    Workflow("audit-ppl", "audit --tests ppl, 3 identifiers", audit_ppl),
    Workflow("audit-probe", "audit --tests probe, 3 identifiers (user list)", audit_probe),
    Workflow("audit-both", "audit --tests probe,ppl, 3 identifiers", audit_both),
    Workflow("audit-strata", "audit --tests ppl, 5 identifiers in 3 strata (shipped + user list, 2 lengths)",
             audit_strata),
    Workflow("audit-natural", "audit --tests ppl, 4 identifiers with natural lead-ins, scores shifted per lead-in",
             audit_natural),
    Workflow("pooled-lead-in-nulls", "SELF-CHECK: natural lead-ins ranked against one lead-in's nulls",
             pooled_lead_in_nulls, self_check=True),
    Workflow("rank-local", "rank-test, whole distribution with heavy ties (user list)", rank_local),
    Workflow("rank-chat-echo", "rank-test over chat top-20, echo-aligned; replies and top tokens echo the prompt "
             "(user list, no prefix)", rank_api_chat),
    Workflow("rank-completions-tpm", "rank-test over completions top-20, truncated product, 11 positions",
             rank_completions_sparse),
    Workflow("rank-text-random", "rank-test --rank-mode text, replies start with a random list word (user list)",
             rank_text_random),
    Workflow("rank-text-chat-echo", "rank-test --rank-mode text-chat, replies echo the prompt then random words "
             "(user list)", rank_text_chat_echo),
    Workflow("audit-probe-rank", "audit --tests probe,rank over completions top-20, 3 identifiers", rank_audit_api),
    Workflow("broken-rule", "SELF-CHECK: min of two valid p-values (must FAIL)", broken_rule, self_check=True),
]


# --- running and judging ------------------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    what: str
    runs: int
    detected: dict[float, int]
    seconds: float
    self_check: bool

    def rate(self, alpha: float) -> float:
        return self.detected[alpha] / self.runs

    def excess_p(self, alpha: float) -> float:
        """P(Binomial(runs, alpha) >= count): small means the rate is significantly above alpha."""
        return float(_st.binom.sf(self.detected[alpha] - 1, self.runs, alpha))

    @property
    def ok(self) -> bool:
        return all(self.excess_p(a) >= 0.01 for a in ALPHAS)


def run_workflow(wf: Workflow, runs: int, seed: int, ctx: Context) -> Row:
    t0 = time.time()
    counts = {a: 0 for a in ALPHAS}
    for i in range(runs):
        p = wf.trial(ctx, seed * 1_000_003 + i)
        for a in ALPHAS:
            counts[a] += p < a
    return Row(wf.name, wf.what, runs, counts, time.time() - t0, wf.self_check)


def run(runs: int, seed: int, only: set[str] | None = None, nulls: int = NULLS) -> list[Row]:
    scratch = Path(tempfile.mkdtemp(prefix="ghostsent-harness-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        path = user_list(scratch)
        ctx = Context(load_wordlist("en"), load_wordlist(str(path)), path, scratch, nulls)
        return [run_workflow(wf, runs, seed, ctx) for wf in WORKFLOWS if not only or wf.name in only]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def table(rows: list[Row]) -> str:
    head = ("| workflow | runs | false DETECTED at 0.05 | at 0.01 | verdict |\n"
            "|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        cells = [f"{r.detected[a]} ({r.rate(a):.3f})" for a in ALPHAS]
        if r.self_check:
            verdict = "flagged, as it must be" if not r.ok else "NOT FLAGGED: the harness is blind"
        else:
            verdict = "ok (≤ α)" if r.ok else "FAIL (> α)"
        lines.append(f"| {r.name}: {r.what} | {r.runs} | {cells[0]} | {cells[1]} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4000, help="trials per workflow")
    ap.add_argument("--seed", type=int, default=None, help="fixed seed (default: fresh randomness)")
    ap.add_argument("--only", default=None, help="comma-separated workflow names")
    ap.add_argument("--nulls", type=int, default=NULLS, help="nulls per perplexity test")
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 10**6)
    only = set(a.only.split(",")) if a.only else None
    t0 = time.time()
    rows = run(a.runs, seed, only, a.nulls)
    print(table(rows))
    print(f"\nseed {seed}; {a.nulls} nulls; {time.time() - t0:.0f} s; a workflow FAILS when its count is above alpha*runs at "
          f"one-sided binomial p < 0.01")
    bad = [r.name for r in rows if r.ok == r.self_check]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
