"""Putting ghosts into text: insert (files and folders), tag-jsonl (a JSONL corpus), tag (any format:
JSONL, Parquet, CSV, a Hugging Face dataset; locally or as a Spark job)."""
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
@click.option("--max-per-owner", type=click.IntRange(0), default=None, help="Insert into at most N records per owner (the N with the smallest keyed hash).")
@click.option("--fraction", type=click.FloatRange(0, 1), default=None,
              help="Insert into about this fraction of each owner's records (chosen by a keyed hash).")
@click.option("--words", "n_words", default=12, show_default=True, type=click.IntRange(1),
              help="Words per passphrase for owners seen the first time.")
@click.option("--wordlist", default="en", show_default=True, help="Word list for new identifiers.")
@click.option("--template", default=None, help="Template for new identifiers (name, natural for a lead-in drawn per identifier, or text with {words})  [default: post].")
@position_option
@click.option("--skip-bad", is_flag=True, help="Copy malformed lines through unchanged and list them at the end.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run into the same OUT.")
@click.option("--seed", default=None, type=int, help="Seeded identifiers and positions: tests and studies only.")
@click.option("--checkpoint-every", default=5000, show_default=True, type=click.IntRange(1),
              help="Lines between durable checkpoints.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: if a terminal].")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Processes tagging lines; the output and ledger are the same for any number.")
@allow_filtered_option
@ledger_option
@json_option
def tag_jsonl_cmd(in_path, out_path, text_field, owner_field, id_field, max_per_owner, fraction, n_words, wordlist,
                  template, position, skip_bad, resume, seed, checkpoint_every, progress, workers, allow_filtered,
                  ledger_path, as_json):
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
                        checkpoint_every=checkpoint_every, workers=workers,
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


# --- tag: any format, local or Spark (issue 12) -----------------------------------------------------
_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".csv": "csv",
            ".jsonl.gz": "jsonl", ".jsonl.zst": "jsonl", ".json.gz": "jsonl", ".json.zst": "jsonl"}


def _tag_format(path: str, fmt: str | None) -> str:
    """--format, else the extension of IN (a Spark input folder: of its files)."""
    if fmt:
        return fmt
    p = Path(path)
    if path == "-":
        return "jsonl"
    if p.is_dir() and (p / "dataset_info.json").exists() and (p / "state.json").exists():
        return "hf"  # datasets' save_to_disk
    if p.is_dir():
        exts = {f.suffix.lower() for f in p.iterdir() if not f.name.startswith(("_", "."))}
        found = {_FORMATS[e] for e in exts if e in _FORMATS}
        if len(found) == 1:
            return found.pop()
    elif "".join(p.suffixes[-2:]).lower() in _FORMATS or p.suffix.lower() in _FORMATS:
        return _FORMATS.get("".join(p.suffixes[-2:]).lower()) or _FORMATS[p.suffix.lower()]
    raise click.UsageError(f"cannot tell the format of {path} from its name; pass --format")


def _tag(in_path, out_path, fmt, engine, manifest, spark_master, **kw):
    """Tag a corpus in any format: JSONL (as tag-jsonl; .gz/.zst too), Parquet, CSV or a Hugging Face
    dataset folder; --engine spark runs it as a Spark job (OUT and --manifest are Spark folders)."""
    fmt = _tag_format(in_path, fmt)
    if engine == "local" and fmt == "jsonl":
        return click.get_current_context().invoke(tag_jsonl_cmd, in_path=in_path, out_path=out_path, **kw)
    from ghostsent.tagging import JsonlOptions

    if kw["resume"]:
        raise click.UsageError("--resume applies to JSONL only (a table is tagged in one go: rerun it)")
    if engine == "spark" and not manifest:
        raise click.UsageError("--engine spark needs --manifest DIR (where the insertions go)")
    opts = JsonlOptions(text_field=kw["text_field"], owner_field=kw["owner_field"], id_field=kw["id_field"],
                        max_per_owner=kw["max_per_owner"], fraction=kw["fraction"], words=kw["n_words"],
                        wordlist=kw["wordlist"], template=kw["template"], position=kw["position"],
                        skip_bad=kw["skip_bad"], seed=kw["seed"])
    if kw["seed"] is not None:
        echo(SEED_WARNING, err=True)
    check = None
    if not kw["allow_filtered"]:
        from ghostsent.survive.screen import check_identifier, check_new_identifier
        from ghostsent.wordlists import load_wordlist
        check_new_identifier(load_wordlist(kw["wordlist"]), kw["template"])
        check = check_identifier
    with open_ledger(kw["ledger_path"], create=True) as led:
        if engine == "spark":
            from ghostsent.tagging.spark import local_session, tag_spark
            summary = tag_spark(local_session(spark_master), led, in_path, out_path, manifest, opts, fmt,
                                check).to_dict()
        elif fmt == "hf":
            from ghostsent.tagging.tables import tag_hf_dataset
            summary = tag_hf_dataset(led, in_path, out_path, opts, check)
        else:
            from ghostsent.tagging.tables import tag_table
            summary = tag_table(led, in_path, out_path, opts, fmt, check)
    emit(summary, kw["as_json"], lambda: echo(
        f"{summary.get('records', 0)} records, {summary['owners']} owners ({summary['new_identifiers']} new "
        f"identifiers): {summary['inserted']} ghosts inserted, {summary['bad']} bad rows -> {q(out_path)}"
        + (f"; insertions in {q(manifest)}: run `ghostsent ledger merge {q(manifest)}`" if engine == "spark" else "")))


tag_cmd = click.Command(
    "tag", callback=_tag, help=_tag.__doc__ + "\n\n`tag-jsonl` is the same for JSONL.",
    params=[click.Argument(["in_path"], metavar="IN"), click.Argument(["out_path"], metavar="OUT"),
            click.Option(["--format", "fmt"], type=click.Choice(["jsonl", "parquet", "csv", "hf"]), default=None,
                         help="Input and output format; hf: a `datasets` Dataset saved with save_to_disk "
                              "[default: from IN's name (.jsonl[.gz|.zst], .parquet, .csv) or folder]."),
            click.Option(["--engine"], type=click.Choice(["local", "spark"]), default="local", show_default=True,
                         help="local: this process; spark: a PySpark job (OUT and --manifest are Spark folders)."),
            click.Option(["--manifest"], default=None, help="With --engine spark: where the insertion manifest goes."),
            click.Option(["--spark-master"], default="local[*]", show_default=True,
                         help="Spark master URL (spark-submit's own session is used when it runs this)."),
            *[p for p in tag_jsonl_cmd.params if p.name not in ("in_path", "out_path")]])
