"""Putting ghosts into text: insert (files and folders), tag-jsonl (a JSONL corpus)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ghostsent.cli import (SEED_WARNING, allow_filtered_option, echo, emit, json_option, ledger_option, line,
                           open_ledger, position_option, q)

@click.command()
@click.argument("identifier")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--glob", "globs", multiple=True, metavar="PATTERN",
              help="Files to take from folders, repeatable [default: *.txt *.md *.markdown *.rst *.text]; "
                   "hidden files and folders are skipped, files named explicitly always count.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write tagged copies under this folder [default: ./tagged].")
@click.option("--in-place", is_flag=True, help="Rewrite the files themselves (atomically; keeps PATH.bak).")
@click.option("--no-backup", is_flag=True, help="With --in-place: do not keep PATH.bak.")
@click.option("--dry-run", is_flag=True, help="Show where each ghost would go; write nothing.")
@position_option
@click.option("--encoding", default=None, help="Text encoding of the files [default: UTF-8, BOM honoured].")
@click.option("--seed", default=None, type=int, help="Seed the position choice (tests only).")
@allow_filtered_option
@ledger_option
@json_option
def insert(identifier, paths, globs, out_dir, in_place, no_backup, dry_run, position, encoding, seed, allow_filtered,
           ledger_path, as_json):
    """Insert IDENTIFIER's ghost sentence into each text file (or the text files in each folder) at a
    sentence boundary.

    Code blocks, front matter, HTML, tables, links and URLs are never touched; encoding, BOM and
    newline style are kept. Each insertion is recorded in the ledger as the file is written.
    """
    import random

    from ghostsent.tagging import tag_files

    if in_place and out_dir is not None:
        raise click.UsageError("--out and --in-place exclude each other")
    if no_backup and not in_place:
        raise click.UsageError("--no-backup only applies with --in-place")
    rng = random.Random(seed) if seed is not None else None
    with open_ledger(ledger_path) as led:
        ident = led.get(identifier)
        if not allow_filtered:
            from ghostsent.survive.screen import check_identifier
            check_identifier(ident)
        results = tag_files(led, ident, list(paths), out_dir=out_dir or Path("tagged"), in_place=in_place,
                            backup=not no_backup, dry_run=dry_run, position=position, encoding=encoding, rng=rng,
                            warn=None if as_json else (lambda m: line(f"Warning: {m}")), globs=globs)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    data = {"identifier": ident.id, "dry_run": dry_run, "position": position, "counts": counts,
            "files": [r.to_dict() for r in results]}

    def human() -> None:
        for r in results:
            if r.status in ("tagged", "would-tag"):
                where = f"{q(r.path)}:{r.line}:{r.col}"
                verb = "would insert at" if dry_run else "inserted at"
                dest = f" -> {q(r.output)}" if r.output and r.output != r.path else ""
                echo(f"{verb} {where}{dest}  {r.snippet}")
            else:
                echo(f"{q(r.path)}: {r.status}: {r.message}")
        echo(", ".join(f"{v} {k}" for k, v in counts.items()) + (" (dry run: nothing written)" if dry_run else ""))

    emit(data, as_json, human)


@click.command("tag-jsonl")
@click.argument("in_path", metavar="IN.jsonl")
@click.argument("out_path", metavar="OUT.jsonl")
@click.option("--text-field", default="text", show_default=True, help="Field with the text (a.b for nested).")
@click.option("--owner-field", default="owner", show_default=True, help="Field naming the record's owner.")
@click.option("--id-field", default=None, help="Record id field used to name documents in the ledger "
                                                 "[default: IN.jsonl:line N].")
@click.option("--max-per-owner", type=click.IntRange(0), default=None, help="Insert into at most N records per owner.")
@click.option("--fraction", type=click.FloatRange(0, 1), default=None,
              help="Insert into this fraction of each owner's records (deterministic, every 1/F-th).")
@click.option("--words", "n_words", default=12, show_default=True, type=click.IntRange(1),
              help="Words per passphrase for owners seen the first time.")
@click.option("--wordlist", default="en", show_default=True, help="Word list for new identifiers.")
@click.option("--template", default=None, help="Template for new identifiers (name or text with {words}).")
@position_option
@click.option("--skip-bad", is_flag=True, help="Copy malformed lines through unchanged and list them at the end.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run into the same OUT.")
@click.option("--seed", default=None, type=int, help="Seeded identifiers and positions: tests and studies only.")
@click.option("--checkpoint-every", default=5000, show_default=True, type=click.IntRange(1),
              help="Lines between durable checkpoints.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: if a terminal].")
@allow_filtered_option
@ledger_option
@json_option
def tag_jsonl_cmd(in_path, out_path, text_field, owner_field, id_field, max_per_owner, fraction, n_words, wordlist,
                  template, position, skip_bad, resume, seed, checkpoint_every, progress, allow_filtered, ledger_path,
                  as_json):
    """Tag a JSONL corpus: one identifier per owner, inserted into up to N of their records.

    Streams (flat memory), checkpoints into the ledger and resumes after a crash with --resume.
    `-` reads stdin / writes stdout (no resume; stdout gets the output only when the run succeeded).
    """
    from ghostsent.tagging import JsonlOptions, tag_jsonl

    if seed is not None:
        echo(SEED_WARNING, err=True)
    opts = JsonlOptions(text_field=text_field, owner_field=owner_field, id_field=id_field,
                        max_per_owner=max_per_owner, fraction=fraction, words=n_words, wordlist=wordlist,
                        template=template, position=position, skip_bad=skip_bad, resume=resume, seed=seed,
                        checkpoint_every=checkpoint_every,
                        progress=sys.stderr.isatty() if progress is None else progress)
    to_stderr = out_path == "-"
    check = None
    if not allow_filtered:
        from ghostsent.survive.screen import check_identifier, check_new_identifier
        from ghostsent.wordlists import load_wordlist
        check_new_identifier(load_wordlist(wordlist), template)
        check = check_identifier
    with open_ledger(ledger_path, create=True) as led:
        summary = tag_jsonl(led, in_path, out_path, opts, warn=line, check_ghost=check)

    def human() -> None:
        s = summary
        echo(f"{s['lines']} lines, {s['records']} records, {s['owners']} owners "
                   f"({s['new_identifiers']} new identifiers): {s['inserted']} ghosts inserted, "
                   f"{s['already_tagged']} already tagged, {s['no_boundary']} without a sentence boundary, "
                   f"{s['bad']} bad lines copied through -> {q(out_path)}", err=to_stderr)
        for b in s["bad_lines"]:
            echo(f"  line {b['line']}: {q(b['reason'])}", err=to_stderr)
        if s.get("resumed_from_line") is not None:
            echo(f"resumed after line {s['resumed_from_line']}", err=to_stderr)

    emit(summary, as_json, human, err=to_stderr)
