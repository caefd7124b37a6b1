"""Testing a model: probe, ppl-test, rank-test, audit (through the detection session), card and check (no code)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import click

from ghostsent.cli import echo, emit, fmt_p, int_list, json_option, ledger_option, open_ledger


def model_options(fn: Callable) -> Callable:
    """--model and the options that say how to reach it (shared by every detection command)."""
    opts = [
        click.option("--model", "-m", "model", default=None,
                     help="default (embedded SmolLM2-135M-Instruct), hf:PATH_OR_NAME, or openai:MODEL."),
        click.option("--gguf", default=None, help="GGUF file inside an hf: directory."),
        click.option("--base-url", default=None, help="Base URL of an OpenAI-compatible API (openai: models)."),
        click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
                     help="Environment variable holding the API key (the key itself is never logged)."),
        click.option("-M", "--model-option", "model_args", multiple=True, metavar="KEY=VALUE",
                     help="Model option, repeatable. Local models: device, dtype, token_budget, revision; "
                          "openai: timeout, max_retries, concurrency, batch_size (docs/cli.md)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def detection_options(fn: Callable) -> Callable:
    opts = [
        click.option("--controls", default=5, show_default=True, type=click.IntRange(0),
                     help="Fresh never-published passphrases run through the same tests."),
        click.option("--alpha", default=1e-3, show_default=True, type=click.FloatRange(0, 1),
                     help="Significance threshold for the verdict."),
        click.option("--seed", type=int, default=None, help="Seed nulls/controls (reproducible studies only)."),
        click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder for report.json/.md/.html and plots [default: ghostsent-reports/<kind>-<time>]."),
        click.option("--no-store", is_flag=True,
                     help="Do not store prompts, replies and scores. The test still counts in each identifier's "
                          "history (so re-running cannot manufacture significance) and what it showed is logged."),
        click.option("--exit-code", is_flag=True, help="Exit 1 when a ghost sentence is detected (like git diff --exit-code)."),
        click.option("--wordlist", default=None, help="Word list to use instead of the identifier's recorded one (must be identical)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def rank_options(fn: Callable) -> Callable:
    """How the word-rank test reads the model (rank-test, audit --tests rank)."""
    opts = [
        click.option("--rank-mode", type=click.Choice(["local", "completions", "chat", "prefill", "text",
                                                       "text-prefill", "text-chat"]), default=None,
                     help="Word-rank test: local = the whole next-token distribution (models run here); completions "
                          "or chat = the top-N log-probabilities an API returns; prefill = chat with the shown text "
                          "as the start of the assistant's reply (vLLM, llama.cpp's llama-server: "
                          "continue_final_message); text, text-prefill, text-chat = no log-probabilities, only the "
                          "next word of a greedy reply [default: local for local models, chat for APIs]."),
        click.option("--top-n", default=20, show_default=True, type=click.IntRange(1, 100),
                     help="Word-rank test over an API: alternatives per position (OpenAI allows at most 20)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _choice(spec: str | None, gguf: str | None, base_url: str | None, api_key_env: str, model_args=()):
    """What the user named; the session loads it (and checks its capabilities) itself."""
    from ghostsent.detection.session import ModelChoice
    from ghostsent.targets import parse_model_args

    return ModelChoice(spec, gguf, base_url, api_key_env, parse_model_args(model_args))


def _run_and_report(kind: str, model, subjects, settings, reference, ledger, as_json: bool,
                    report_dir: Path | None, no_store: bool, exit_code: bool) -> None:
    import time as _time

    from ghostsent.detection.probe import WARNING
    from ghostsent.detection.registry import TESTS
    from ghostsent.detection.session import run_session
    from ghostsent.detection.verdict import NOT_PROVEN, TIE_ORDER

    standing = (NOT_PROVEN, WARNING)  # in every report; the other warnings are printed too
    out = report_dir or Path("ghostsent-reports") / f"{kind}-{_time.strftime('%Y%m%d-%H%M%S')}"
    session = run_session(ledger, model, subjects, settings, reference=reference, kind=kind, store=not no_store,
                          progress=not as_json, report_dir=out)
    res, run_id, paths = session.result, session.run_id, session.report

    def human() -> None:
        echo(res.verdict)
        for r in res.subjects:
            parts = [TESTS[n].summary(r.outcomes[n]) for n in TIE_ORDER if n in r.outcomes]
            holm_p = (f" test #{r.test_number or 1}, corrected p={fmt_p(r.p_holm)}" if r.p_holm is not None else "")
            echo(f"  {r.key:<14} {r.role:<8} " + "; ".join(parts) + holm_p)
        for t, c in res.controls.items():
            echo(f"  controls ({t}): {c.n} tested, {c.flagged} below threshold"
                 + (f", {c.completed} completed" if c.completed is not None else ""))
        for w in res.warnings:
            if w not in standing:
                echo(f"Note: {w}")
        echo(f"Report: {paths['markdown']}" + (f"  (ledger run {run_id})" if run_id else "  (not stored)"))

    d = {k: v for k, v in res.to_dict().items() if k not in ("null_scores", "scoring_order")}  # both in report.json
    emit(d | {"run_id": run_id, "report": paths}, as_json, human)
    if exit_code and res.detected:
        sys.exit(1)


@click.command()
@click.argument("identifier")
@model_options
@click.option("--k", "k_values", default="2,3,4", show_default=True, help="Numbers of held-out last words, comma-separated.")
@click.option("--samples", default=1, show_default=True, type=click.IntRange(1), help="Replies per prompt (needs --temperature).")
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0), help="0 = greedy.")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["raw", "chat"]),
              help="raw text continuation and/or chat instructions [default: what the model supports].")
@click.option("--context", "with_context", is_flag=True,
              help="Show the text before the ghost in one of its recorded documents first (a context probe).")
@detection_options
@ledger_option
@json_option
def probe(identifier, model, gguf, base_url, api_key_env, model_args, k_values, samples, temperature, modes,
          with_context, controls, alpha, seed, report_dir, no_store, exit_code, wordlist, ledger_path, as_json):
    """Last-k words probe: does the model complete the ghost sentence? A valid p-value (an upper bound)."""
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.detection.subjects import subjects_from_ledger

    with open_ledger(ledger_path) as ledger:
        subjects = subjects_from_ledger([ledger.get(identifier)], wordlist)
        if with_context:
            from ghostsent.detection.context import document_context

            subjects[0].lead = document_context(ledger, subjects[0].key)[0]
        settings = DetectionSettings(tests=("probe",), ks=int_list(k_values, "--k", 1), samples=samples, temperature=temperature,
                                     modes=tuple(modes) or None, controls=controls, alpha=alpha, seed=seed)
        target = _choice(model, gguf, base_url, api_key_env, model_args)
        _run_and_report("probe", target, subjects, settings, None, ledger, as_json, report_dir, no_store, exit_code)


@click.command("ppl-test")
@click.argument("identifier")
@model_options
@click.option("--nulls", "n_nulls", default=2000, show_default=True, type=click.IntRange(1),
              help="Fresh passphrases the ghost is ranked against (2000: enough for p < 1e-3 on a first test).")
@click.option("--reference", default=None, help="Reference model released before the identifier existed (same forms as --model).")
@click.option("--reference-gguf", default=None, help="GGUF file for an hf: reference.")
@detection_options
@ledger_option
@json_option
def ppl_test(identifier, model, gguf, base_url, api_key_env, model_args, n_nulls, reference, reference_gguf, controls, alpha, seed,
             report_dir, no_store, exit_code, wordlist, ledger_path, as_json):
    """Perplexity test: rank the ghost's likelihood among fresh passphrases. Exact p-value and exposure.

    Each test of an identifier is counted: its j-th test is held to alpha/(j(j+1)) (see `ghostsent show`)."""
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.detection.subjects import subjects_from_ledger

    with open_ledger(ledger_path) as ledger:
        subjects = subjects_from_ledger([ledger.get(identifier)], wordlist)
        settings = DetectionSettings(tests=("ppl",), n_nulls=n_nulls, controls=controls, alpha=alpha, seed=seed)
        target = _choice(model, gguf, base_url, api_key_env, model_args)
        ref = _choice(reference, reference_gguf, base_url, api_key_env) if reference else None
        _run_and_report("ppl-test", target, subjects, settings, ref, ledger, as_json, report_dir, no_store, exit_code)


@click.command()
@model_options
@click.option("--owner", default=None, help="Only this owner's identifiers [default: every identifier].")
@click.option("--tests", "tests", default="probe,ppl", show_default=True,
              help="Which tests, comma-separated: probe, ppl, rank (the word-rank test).")
@click.option("--k", "k_values", default="2,3,4", show_default=True)
@click.option("--nulls", "n_nulls", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--reference", default=None, help="Reference model for the perplexity test.")
@click.option("--reference-gguf", default=None)
@rank_options
@detection_options
@ledger_option
@json_option
def audit(model, gguf, base_url, api_key_env, model_args, owner, tests, k_values, n_nulls, reference, reference_gguf,
          rank_mode, top_n, controls, alpha, seed, report_dir, no_store, exit_code, wordlist, ledger_path, as_json):
    """Test every identifier (or one owner's) at once: Holm per identifier plus one combined answer."""
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.detection.subjects import subjects_from_ledger
    from ghostsent.errors import LedgerError

    chosen = tuple(t.strip() for t in tests.split(",") if t.strip())
    bad = [t for t in chosen if t not in ("probe", "ppl", "rank")]
    if bad or not chosen:
        raise click.BadParameter(f"--tests takes probe, ppl and/or rank, got {tests!r}")
    with open_ledger(ledger_path) as ledger:
        idents = ledger.identifiers(owner)
        if not idents:
            raise LedgerError(f"no identifiers{' for owner ' + repr(owner) if owner else ''} in {ledger.path}")
        subjects = subjects_from_ledger(idents, wordlist)
        settings = DetectionSettings(tests=chosen, ks=int_list(k_values, "--k", 1), n_nulls=n_nulls, controls=controls,
                                     alpha=alpha, seed=seed, rank_mode=rank_mode, top_n=top_n)
        target = _choice(model, gguf, base_url, api_key_env, model_args)
        ref = _choice(reference, reference_gguf, base_url, api_key_env) if reference and "ppl" in chosen else None
        _run_and_report("audit", target, subjects, settings, ref, ledger, as_json, report_dir, no_store, exit_code)


@click.command("rank-test")
@click.argument("identifier")
@model_options
@rank_options
@detection_options
@ledger_option
@json_option
def rank_test(identifier, model, gguf, base_url, api_key_env, model_args, rank_mode, top_n, controls, alpha, seed,
              report_dir, no_store, exit_code, wordlist, ledger_path, as_json):
    """Word-rank test: how high the model ranks each passphrase word among the list's words, given the
    words before it. Exact p-value with no nulls (Fisher over positions); works through chat APIs that
    return top log-probabilities."""
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.detection.subjects import subjects_from_ledger

    with open_ledger(ledger_path) as ledger:
        subjects = subjects_from_ledger([ledger.get(identifier)], wordlist)
        settings = DetectionSettings(tests=("rank",), controls=controls, alpha=alpha, seed=seed, rank_mode=rank_mode,
                                     top_n=top_n)
        target = _choice(model, gguf, base_url, api_key_env, model_args)
        _run_and_report("rank-test", target, subjects, settings, None, ledger, as_json, report_dir, no_store,
                        exit_code)


def _ks_for(value: str | None, n_words: int) -> tuple[int, ...] | None:
    """--k for an identifier of n words: each 1 <= k < n, else a usage error (exit 2)."""
    if value is None:
        return None
    ks = int_list(value, "--k", 1)
    bad = [k for k in ks if k >= n_words]
    if bad:
        raise click.BadParameter(f"k={bad[0]}: a {n_words}-word passphrase allows 1 <= k <= {n_words - 1}",
                                 param_hint="--k")
    return ks


@click.command()
@click.argument("identifier")
@click.option("--k", "k_values", default="2,3,4", show_default=True,
              help="Held-out words per prompt. Every prompt's words count as shown: check scores only the last min(k).")
@ledger_option
@json_option
def card(identifier, k_values, ledger_path, as_json):
    """Prompts to paste into a chat window, for people without code or API access."""
    from ghostsent.detection.session import record_card
    from ghostsent.detection.probe import card_prompts

    with open_ledger(ledger_path) as ledger:
        ident = ledger.get(identifier)
        ks = _ks_for(k_values, ident.n_words)
        prompts = card_prompts(ident.ghost, ks)
        tail = record_card(ledger, ident.id, ks)

    def human() -> None:
        echo(f"Paste each prompt into a NEW chat with web search/browsing OFF, save the replies (or the whole\n"
             f"chat) and score them all at once:\n"
             f"  ghostsent check {ident.id} --reply reply1.txt --reply reply2.txt ...\n"
             f"Only the last {tail} word(s) are scored: no prompt shown so far (this card's, earlier cards' "
             f"or probes') shows them. What was shown is logged (ghostsent show {ident.id}).\n")
        for p in prompts:
            echo(f"--- prompt {p['label']} (k={p['k']}) ---\n{p['prompt']}\n")

    emit({"identifier": ident.id, "prompts": prompts, "scored_words": tail}, as_json, human)


@click.command()
@click.argument("identifier")
@click.option("--reply", "reply_files", required=True, multiple=True, type=click.File("r", encoding="utf-8"),
              help="File with a reply or a whole pasted chat (- for standard input); repeat for several replies.")
@click.option("--k", "k_values", default=None,
              help="Which card prompt(s) the replies answer (where to look) [default: any the card showed]. "
                   "Never makes a shown word count.")
@click.option("--wordlist", default=None)
@click.option("--exit-code", is_flag=True, help="Exit 1 when the replies complete the ghost sentence significantly.")
@click.option("--alpha", default=1e-3, show_default=True, type=click.FloatRange(0, 1))
@ledger_option
@json_option
def check(identifier, reply_files, k_values, wordlist, exit_code, alpha, ledger_path, as_json):
    """Score replies pasted from a chat window: a valid p-value, counted in the identifier's history."""
    from ghostsent.detection.session import check_recorded
    from ghostsent.detection.probe import WARNING

    replies = [f.read() for f in reply_files]
    with open_ledger(ledger_path) as ledger:
        ident = ledger.get(identifier)
        out = check_recorded(ledger, ident.id, replies, alpha, _ks_for(k_values, ident.n_words), wordlist)
    d = out.to_dict() | {"warning": WARNING}

    def human() -> None:
        best = min(out.result.records, key=lambda r: r.p_value)
        verdict = "DETECTED" if out.detected else "NOT DETECTED"
        echo(f"{verdict}: {len(replies)} {'reply' if len(replies) == 1 else 'replies'}; best matched {best.matches} of the last {out.tail_words} "
             f"words (which no prompt showed); p = {fmt_p(out.result.p_value)}, test #{out.test_number} of "
             f"this identifier, corrected p = {fmt_p(out.p_history)} (threshold {alpha:g})")
        echo(WARNING)

    emit(d, as_json, human)
    if exit_code and out.detected:
        sys.exit(1)
