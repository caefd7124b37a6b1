"""Measuring detection: study (the grid), demo (the whole loop in minutes)."""
from __future__ import annotations

from pathlib import Path

import click

from ghostsent.cli import echo, emit, fmt_p, int_list, json_option, str_list
from ghostsent.passphrase import DEFAULT_TEMPLATE

@click.command()
@click.option("--corpus", default="builtin:kjv", show_default=True,
              help="Folder of text files, a JSONL file, builtin:kjv (Debian bible-kjv) or builtin:pydoc.")
@click.option("--text-field", default="text", show_default=True, help="JSONL field holding the text.")
@click.option("--owner-field", default=None, help="JSONL field holding the owner.")
@click.option("--documents", "n_documents", default=500, show_default=True, type=click.IntRange(1))
@click.option("--min-words", default=100, show_default=True, type=click.IntRange(1))
@click.option("--max-words", default=160, show_default=True, type=click.IntRange(1),
              help="Cut each document to an excerpt of at most this many words (at a sentence boundary).")
@click.option("--repetitions", default="1,2,3,5,10,20", show_default=True, help="Repetition counts (grid axis).")
@click.option("--ids-per-cell", default=10, show_default=True, type=click.IntRange(1))
@click.option("--controls", "n_controls", default=40, show_default=True, type=click.IntRange(1))
@click.option("--words", default="12", show_default=True, help="Passphrase lengths (grid axis).")
@click.option("--position", "positions", default="latter-half", show_default=True, help="Position strategies (grid axis).")
@click.option("--template", "templates", default=DEFAULT_TEMPLATE, show_default=True, help="Prefix templates (grid axis; names only, natural: a lead-in drawn per identifier).")
@click.option("--wordlist", "wordlists", default="en", show_default=True, help="Word lists (grid axis).")
@click.option("--model", "-m", default=None, help="Local model to fine-tune [default: embedded model].")
@click.option("--gguf", default=None)
@click.option("--method", type=click.Choice(["full", "lora"]), default="full", show_default=True)
@click.option("--lr", type=float, default=None, help="Learning rate [default: 2e-4 full, 1e-3 LoRA].")
@click.option("--epochs", default=2, show_default=True, type=click.IntRange(1),
              help="Passes over the corpus (repetitions count documents, not passes).")
@click.option("--seq-len", default=256, show_default=True, type=click.IntRange(8))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
@click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(1))
@click.option("--max-steps", default=None, type=click.IntRange(1), help="Stop training early (smoke tests).")
@click.option("--nulls", "n_nulls", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--k", "k_values", default="2,3,4", show_default=True)
@click.option("--alpha", default=1e-3, show_default=True, type=click.FloatRange(0, 1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--pipeline", type=click.Choice(["none", "default"]), default="none", show_default=True,
              help="Train on what `ghostsent survive`'s extraction, filters and dedup keep.")
@click.option("--screen", type=click.Choice(["none", "pipeline"]), default=None,
              help="pipeline: draw the corpus only from pages the pipeline keeps untagged, so that runs with "
                   "and without --pipeline train on the same pages [default: pipeline with --pipeline default].")
@click.option("--out", "out_dir", default="ghostsent-study", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; rerunning with the same folder resumes.")
@click.option("--dilution", "dilutions", default="1", show_default=True,
              help="Dilution axis: d trains on the same ghosts plus (d-1) x --documents untouched documents.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N for training and detection [default: CUDA when present].")
@click.option("--preset", type=click.Choice(["quick"]), default=None,
              help="quick: 300 documents, 2 identifiers per cell, 12 controls (about 20-30 min on 2 CPU cores); "
                   "options given explicitly still win.")
@json_option
@click.pass_context
def study(ctx, corpus, text_field, owner_field, n_documents, min_words, max_words, repetitions, ids_per_cell, n_controls,
          words, positions, templates, wordlists, model, gguf, method, lr, epochs, seq_len, batch_size, grad_accum,
          max_steps, n_nulls, k_values, alpha, seed, pipeline, screen, out_dir, dilutions, device, preset, as_json):
    """Insert, fine-tune, detect: measure how many repetitions each test needs."""
    from ghostsent.study.config import StudyConfig
    from ghostsent.study.runner import run_study

    if preset == "quick":
        given = {k for k in ctx.params if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
        quick = {"n_documents": 300, "ids_per_cell": 2, "n_controls": 12}
        n_documents, ids_per_cell, n_controls = (ctx.params[k] if k in given else v for k, v in quick.items())
    cfg = StudyConfig(device=device, dilutions=int_list(dilutions, "--dilution", 1),
        corpus=corpus, text_field=text_field, owner_field=owner_field, min_words=min_words, max_words=max_words,
        n_documents=n_documents, repetitions=int_list(repetitions, "--repetitions"), ids_per_cell=ids_per_cell,
        n_controls=n_controls, words=int_list(words, "--words"), positions=str_list(positions),
        templates=str_list(templates), wordlists=str_list(wordlists), model=model, gguf=gguf, method=method, lr=lr,
        epochs=epochs, seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum, max_steps=max_steps,
        n_nulls=n_nulls, ks=int_list(k_values, "--k", 1), alpha=alpha, seed=seed, pipeline=None if pipeline == "none" else pipeline,
        screen=screen or ("pipeline" if pipeline == "default" else "none"),
    )
    log = (lambda m: echo(m, err=True)) if as_json else click.echo
    res = run_study(cfg, out_dir, progress=not as_json, log=log)
    summary = {r["key"]: {k: v for k, v in r["summary"].items() if k not in ("roc", "control_p_values")} for r in res["runs"]}
    emit({"out": str(out_dir), "results": str(Path(out_dir) / "results.json"), "summary": summary,
          "seconds": res["seconds"]}, as_json,
         lambda: echo(f"\n{(Path(out_dir) / 'results.md').read_text()}\nResults: {out_dir}/results.json"))


@click.command()
@click.option("--out", "out_dir", default="ghostsent-demo", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the reports go (the only thing the demo leaves behind).")
@click.option("--corpus", default=None, help="Corpus [default: builtin:kjv if installed, else builtin:pydoc].")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Record the demo identifier in this ledger [default: a throw-away one].")
@click.option("--seed", type=int, default=None, help="Reproducible run (tests only).")
@json_option
def demo(out_dir, corpus, ledger_path, seed, as_json):
    """The whole loop in about 5 minutes: tag, fine-tune, detect, report."""
    from ghostsent.study.demo import run_demo

    log = (lambda m: echo(m, err=True)) if as_json else click.echo
    res = run_demo(out_dir, corpus=corpus, ledger_path=ledger_path, progress=not as_json, log=log, seed=seed)

    def human() -> None:
        echo("")
        echo(f"{'model':<12} {'test':>4} {'last-k probe p':>15} {'perplexity rank':>16} {'ppl p':>9} "
             f"{'corrected p':>12}  verdict")
        for r in res.rows:
            echo(f"{r.model:<12} {'#' + str(r.test_number):>4} {fmt_p(r.probe_p):>15} "
                 f"{str(r.ppl_rank) + '/' + str(r.ppl_n):>16} {fmt_p(r.ppl_p):>9} {fmt_p(r.p_history):>12}  "
                 f"{'DETECTED' if r.detected else 'not detected'}")
        echo(f"\nThe corrected p is the smaller of the two tests' p times 2 (two tests), times j(j+1) for the "
             f"identifier's j-th test (alpha {res.alpha:g}). With {res.rows[-1].ppl_n - 1} nulls the perplexity "
             f"test alone cannot go below {fmt_p(res.ppl_floor)} on test #{res.rows[-1].test_number}"
             + (", so it cannot reach alpha by itself here; the probe can." if res.ppl_floor >= res.alpha else "."))
        echo(f"Full reports: {res.report_dir}/untouched/report.md and {res.report_dir}/fine-tuned/report.md "
             f"({res.seconds:.0f} s in all)")

    emit(res.to_dict(), as_json, human)
