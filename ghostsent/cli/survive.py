"""survive: run tagged documents through real pipeline stages and count the ghosts that survive."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ghostsent.cli import echo, emit, json_option, ledger_option, open_ledger

@click.command()
@click.argument("source", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--owner", default=None, help="Only this owner's ghosts; without SOURCE, their ledger insertions.")
@click.option("--text-field", default="text", show_default=True, help="JSONL field holding the text.")
@click.option("--lang", default="en", show_default=True, help="Language of the documents (filters, language ID).")
@click.option("--tokenizer", type=click.Choice(["bpe", "regex"]), default="bpe", show_default=True,
              help="Tokens for exact-substring dedup: the embedded model's BPE, or GPT-2's pre-tokenizer.")
@click.option("--stages", "groups", default="extract,filters,dedup,normalise", show_default=True,
              help="Stage groups to run, comma-separated.")
@click.option("--out", "out_dir", default="ghostsent-survival", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where survival.json/.md/_funnel.png go.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when any stage loses a ghost copy.")
@ledger_option
@json_option
def survive(source, owner, text_field, lang, tokenizer, groups, out_dir, exit_code, ledger_path, as_json):
    """Run tagged documents through real pipeline stages and count the ghost copies that survive.

    SOURCE is a folder of .txt/.md files or a JSONL corpus; without it, the documents the ledger
    recorded for --owner (or every owner). Ghosts are the ledger's identifiers.
    """
    from ghostsent.survive.inputs import survive_corpus
    from ghostsent.survive.pipeline import STAGE_GROUPS
    from ghostsent.survive.report import summary_line, text_table, write_outputs

    chosen = tuple(g.strip() for g in groups.split(",") if g.strip())
    if not chosen or set(chosen) - set(STAGE_GROUPS):
        raise click.BadParameter(f"--stages takes {', '.join(STAGE_GROUPS)}, got {groups!r}")
    log = (lambda m: echo(m, err=True)) if not as_json else None
    with open_ledger(ledger_path) as led:
        report = survive_corpus(led, source, owner, text_field, lang, tokenizer, chosen, log=log)
    files = write_outputs(report, out_dir)
    emit({**report.to_dict(), "files": files}, as_json,
         lambda: echo(f"{text_table(report)}\n\n{summary_line(report)}\nWritten: {', '.join(files.values())}"))
    if exit_code and report.losses:
        sys.exit(1)
