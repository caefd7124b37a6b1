"""The `ghostsent` command: a thin click layer over the library.

Every command takes `--json` for machine-readable output. Errors become one line on stderr and an exit
code from ghostsent.errors, never a traceback. Commands are grouped by pipeline stage below:
identifiers and the ledger, insertion, detection, study.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ghostsent.errors import (EXIT_BROKEN_PIPE, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_LEDGER, GhostsentError,
                              OutputClosedError)
from ghostsent.names import json_printable, printable

LEDGER_ENV = "GHOSTSENT_LEDGER"
TIMEOUT_ENV = "GHOSTSENT_LEDGER_TIMEOUT"  # seconds to wait for a ledger another process is writing


def default_ledger_path() -> Path:
    return Path(os.environ.get(LEDGER_ENV) or "ghostsent.db")


def echo(message: Any = "", err: bool = False, nl: bool = True) -> None:
    """click.echo with control, bidi and surrogate characters escaped line by line: nothing printed may
    reach a terminal as an escape sequence. Values that come from files and ledgers (owner names, file
    names, documents) are wrapped in q() by the caller, so a line break inside one is shown as \\n."""
    text = "\n".join(printable(line) for line in str(message).split("\n"))
    click.echo(text, err=err, nl=nl)


def q(value: Any) -> str:
    """An untrusted value for human output: every control character escaped, line breaks included."""
    return printable(str(value))


def line(message: str, err: bool = True) -> None:
    """One line (errors, warnings): everything escaped, line breaks included."""
    click.echo(printable(message), err=err)


def emit(data: Any, as_json: bool, human: Callable[[], None] | str | None = None) -> None:
    """Print `data` as one JSON document, or the human form."""
    if as_json:
        click.echo(json_printable(json.dumps(data, indent=2, ensure_ascii=False, default=str)))
    elif callable(human):
        human()
    elif human is not None:
        echo(human)


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush stays silent."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# What the user can change, for errors that carry a hint key (library messages never name flags).
HINTS = {
    "resume": "rerun with --resume",
    "resume_or_skip_bad": "rerun with --resume (or add --skip-bad)",
    "skip_bad": "--skip-bad copies them",
    "encoding": "--encoding",
    "out": "--out DIR or --in-place",
    "wordlist": "pass --wordlist with the original list",
    "ledger_missing": "check --ledger or $GHOSTSENT_LEDGER; `ghostsent new` starts a ledger",
    "allow_filtered": "pass --allow-filtered to use it anyway",
    "base_url": "--base-url",
}


def error_line(e: Exception) -> str:
    """`Error: <message> (<flag hint>)`: the one line a failed command prints."""
    hint = HINTS.get(getattr(e, "hint", None) or "")
    return f"Error: {e}" + (f" ({hint})" if hint else "")


def handle_errors(fn: Callable) -> Callable:
    """Turn library errors into one `Error: ...` line on stderr plus the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import sqlite3

        try:
            return fn(*args, **kwargs)
        except GhostsentError as e:
            if isinstance(e, OutputClosedError):
                _quiet_stdout()
            line(error_line(e))
            sys.exit(e.exit_code)
        except BrokenPipeError:
            _quiet_stdout()  # `ghostsent list | head`: the reader has all it wanted
            sys.exit(EXIT_BROKEN_PIPE)
        except KeyboardInterrupt:
            echo("Interrupted; nothing partial was written.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except sqlite3.Error as e:  # a path the ledger wrapper missed: still one line, exit 4
            line(f"Error: ledger: {e}")
            sys.exit(EXIT_LEDGER)
        except OSError as e:
            line(f"Error: {str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}")
            sys.exit(EXIT_INPUT)

    return wrapper


ledger_option = click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Ledger SQLite file [env {LEDGER_ENV}; default ./ghostsent.db].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
allow_filtered_option = click.option(
    "--allow-filtered", is_flag=True,
    help="Use a word list, template or ghost even if it would trip pretraining filters (C4 bad words, '{', ...).")


def open_ledger(path: Path | None, create: bool = False):
    """The ledger at `path` (or the default). Only commands that write identifiers pass create=True;
    they say on stderr when they started a new ledger, so a typo in the path is noticed."""
    from ghostsent.errors import InputError
    from ghostsent.ledger import DEFAULT_TIMEOUT, Ledger

    try:
        timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)
    except ValueError:
        raise InputError(f"${TIMEOUT_ENV} must be a number of seconds") from None
    led = Ledger(path or default_ledger_path(), create=create, timeout=timeout)
    if led.created:
        echo(f"created new ledger at {led.path}", err=True)
    return led


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ghostsent")
def main() -> None:
    """ghostsent: insert ghost sentences into your text, then test whether a model memorised them.

    \b
    Exit codes: 0 ok / not detected, 1 detected (with --exit-code), 2 usage,
    3 bad input, 4 ledger problem, 5 model or API problem, 130 interrupted.
    """


# --- identifiers and the ledger -------------------------------------------------------------
# (commands: new, list, show, export, import, commit)

SEED_WARNING = ("Warning: --seed makes the passphrase predictable to anyone who knows the seed; use it for "
                "tests and studies only, never for a real watermark.")


def _default_owner() -> str:
    return os.environ.get("USER") or "me"


def _ident_json(ident, ledger, reveal: bool = False) -> dict:
    from ghostsent.ledger.commitments import identifier_commitment
    from ghostsent.ledger.commitments import reveal as reveal_of

    d = ident.to_dict(reveal=False)
    d["insertions"] = [i.to_dict() for i in ledger.insertions(ident.id)]
    d["commitment"] = identifier_commitment(ident)
    if reveal:
        d["reveal"] = reveal_of(ident)
    return d


@main.command()
@click.option("--owner", default=None, help="Who the identifier belongs to [default: $USER or 'me'].")
@click.option("--words", "n_words", default=12, show_default=True, type=click.IntRange(1),
              help="Number of random words in the passphrase.")
@click.option("--wordlist", default="en", show_default=True, help="Shipped list name (en, de, ...) or a file path.")
@click.option("--template", default=None,
              help="Built-in template name (none, post, project, document, author) or text with {words}.")
@click.option("--seed", default=None, type=int, help="Seeded draw: for tests and studies only.")
@allow_filtered_option
@ledger_option
@json_option
@handle_errors
def new(owner, n_words, wordlist, template, seed, allow_filtered, ledger_path, as_json):
    """Draw a new ghost sentence and record it in the ledger."""
    from ghostsent.passphrase import entropy_bits
    from ghostsent.wordlists import load_wordlist

    if seed is not None:
        echo(SEED_WARNING, err=True)
    wl = load_wordlist(wordlist)
    if not allow_filtered:
        from ghostsent.survive.screen import check_new_identifier
        check_new_identifier(wl, template)
    with open_ledger(ledger_path, create=True) as led:
        ident = led.new_identifier(owner or _default_owner(), wordlist, n_words=n_words, template=template, seed=seed)
    bits = entropy_bits(ident.n_words, wl.size)
    data = {**ident.to_dict(), "wordlist_size": wl.size, "entropy_bits": round(bits, 2),
            "ledger": str(led.path)}

    def human() -> None:
        echo(ident.text)
        echo(f"id: {ident.id}  owner: {q(ident.owner)}  {ident.n_words} words from {wl.name} "
                   f"({wl.size} words)  entropy: {bits:.1f} bits")
        echo(f"recorded in {led.path}")

    emit(data, as_json, human)


@main.command("list")
@click.option("--owner", default=None, help="Only this owner's identifiers.")
@ledger_option
@json_option
@handle_errors
def list_cmd(owner, ledger_path, as_json):
    """List identifiers: id, owner, words, created, insertions."""
    with open_ledger(ledger_path) as led:
        rows = [{**i.to_dict(), "insertions": led.count_insertions(i.id)} for i in led.identifiers(owner)]

    def human() -> None:
        if not rows:
            echo("no identifiers" + (f" for owner {owner!r}" if owner else ""))
            return
        w = max(5, max(len(q(r["owner"])) for r in rows))
        echo(f"{'ID':<13} {'OWNER':<{w}} {'WORDS':>5} {'CREATED':<20} {'INSERTIONS':>10}  TEXT")
        for r in rows:
            text = r["text"] if len(r["text"]) <= 50 else r["text"][:49] + "…"
            echo(f"{r['id']:<13} {q(r['owner']):<{w}} {r['n_words']:>5} {r['created_at'][:19]:<20} "
                 f"{r['insertions']:>10}  {q(text)}")

    emit(rows, as_json, human)


@main.command()
@click.argument("identifier")
@click.option("--reveal", is_flag=True,
              help="Also print the salt and canonical JSON, so a third party can recompute the commitment.")
@ledger_option
@json_option
@handle_errors
def show(identifier, reveal, ledger_path, as_json):
    """Show one identifier (id or unique prefix) and where it was inserted."""
    from ghostsent.ledger.history import history

    with open_ledger(ledger_path) as led:
        data = _ident_json(led.get(identifier), led, reveal)
        data["history"] = history(led, data["id"]).to_dict()

    def human() -> None:
        echo(data["text"])
        for key in ("id", "owner", "n_words", "wordlist_name", "wordlist_sha256", "created_at", "drawn", "commitment"):
            echo(f"{key + ':':<17}{q(data[key])}")
        echo(f"insertions:      {len(data['insertions'])}")
        for ins in data["insertions"]:
            echo(f"  #{ins['id']} {q(ins['document'])} offset {ins['offset']} ({ins['strategy']}, {ins['created_at']})")
        _echo_history(data["history"], data["n_words"])
        if reveal:
            rv = data["reveal"]
            echo("reveal (publish these to prove the identifier existed when the root was published):")
            echo(f"  scheme:         {rv['scheme']}")
            echo(f"  salt:           {rv['salt']}")
            echo(f"  canonical_json: {rv['canonical_json']}")
            echo(f"  commitment:     {rv['commitment']}  (= sha256(unhex(salt) || canonical_json))")

    emit(data, as_json, human)


def _echo_history(h: dict, n_words: int) -> None:
    echo(f"tests: {h['n_tests']}; corrected p over all tests: {_fp(h['p_over_all'])} "
               "(the j-th test counts x j(j+1))")
    for t in h["tests"]:
        p = "unfinished (counts as p = 1)" if t["p_value"] is None else \
            f"p = {_fp(t['p_value'])}, corrected {_fp(t['p_history'] if t['p_history'] is not None else 1.0)}"
        echo(f"  #{t['number']} {t['started_at'][:19]} {t['kind']:<8} {t['model']}: {p}"
                   + ("" if t["stored"] else " (not stored)"))
    echo(f"shown to: {len(h['disclosures'])} disclosure(s)")
    for d in h["disclosures"]:
        w = d["words"]
        span = f"words 1-{max(w) + 1} of {n_words}" if w else "no words"
        echo(f"  {d['created_at'][:19]} {span} -> {d['endpoint']} ({d['via']})")


@main.command()
@click.option("-o", "--output", default="-", show_default=True, help="File to write, or - for stdout.")
@ledger_option
@json_option
@handle_errors
def export(output, ledger_path, as_json):
    """Export the ledger as JSON lines (identifiers with salts, insertions, runs).

    The file holds every passphrase and salt, like the ledger, so it is created private (0600); an
    existing file it replaces keeps its mode."""
    import io

    from ghostsent.fsio import atomic_write
    from ghostsent.ledger.transfer import export_jsonl

    with open_ledger(ledger_path) as led:
        buf = io.StringIO()
        n = export_jsonl(led, buf)
    if output == "-":
        click.echo(json_printable(buf.getvalue()), nl=False)  # same JSON, no raw bidi/C1 characters
        echo(f"exported {n} records", err=True)
        return
    out = Path(output)
    if not out.parent.exists():
        from ghostsent.errors import InputError
        raise InputError(f"{out}: folder {out.parent} does not exist")
    existing = out if out.is_file() else None
    atomic_write(out, buf.getvalue().encode("utf-8"), mode=None if existing else 0o600, like=existing)
    emit({"output": str(out), "records": n}, as_json, f"exported {n} records to {out}")


@main.command("import")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True))
@ledger_option
@json_option
@handle_errors
def import_cmd(source, ledger_path, as_json):
    """Import a JSONL export, all or nothing; refuses conflicting ids or passphrases."""
    import io

    from ghostsent.errors import InputError
    from ghostsent.ledger.transfer import import_jsonl

    # Read the whole file first: a missing or undecodable file must not get as far as the ledger.
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        text = raw.decode("utf-8")
    except OSError as e:
        raise InputError(f"{source}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{source}: not UTF-8 at byte {e.start}") from None
    with open_ledger(ledger_path, create=True) as led:
        counts = import_jsonl(led, io.StringIO(text), "<stdin>" if source == "-" else source,
                              warn=lambda m: line(f"Warning: {m}"))

    def human() -> None:
        for kind, c in counts.items():
            echo(f"{kind}: {c['added']} added, {c['skipped']} identical already present")

    emit(counts, as_json, human)


@main.command()
@ledger_option
@json_option
@handle_errors
def commit(ledger_path, as_json):
    """Print the commitment root over all identifiers (publish it) and each identifier's commitment."""
    from ghostsent.ledger.commitments import ledger_commitment

    with open_ledger(ledger_path) as led:
        data = ledger_commitment(led).to_dict()

    def human() -> None:
        echo(f"root: {data['root']}  ({data['count']} identifiers, {data['scheme']})")
        for item in data["identifiers"]:
            echo(f"  {item['id']}  {item['commitment']}")

    emit(data, as_json, human)


# --- insertion ------------------------------------------------------------------------------
# (commands: insert, tag-jsonl)

def _position_option(fn: Callable) -> Callable:
    from ghostsent.insert import DEFAULT_POSITION, POSITIONS

    return click.option("--position", type=click.Choice(POSITIONS), default=DEFAULT_POSITION, show_default=True,
                        help="Which sentence boundary: one in the second half, the first, the last, or any.")(fn)


@main.command()
@click.argument("identifier")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write tagged copies under this folder [default: ./tagged].")
@click.option("--in-place", is_flag=True, help="Rewrite the files themselves (atomically; keeps PATH.bak).")
@click.option("--no-backup", is_flag=True, help="With --in-place: do not keep PATH.bak.")
@click.option("--dry-run", is_flag=True, help="Show where each ghost would go; write nothing.")
@_position_option
@click.option("--encoding", default=None, help="Text encoding of the files [default: UTF-8, BOM honoured].")
@click.option("--seed", default=None, type=int, help="Seed the position choice (tests only).")
@allow_filtered_option
@ledger_option
@json_option
@handle_errors
def insert(identifier, paths, out_dir, in_place, no_backup, dry_run, position, encoding, seed, allow_filtered,
           ledger_path, as_json):
    """Insert IDENTIFIER's ghost sentence into each text file at a sentence boundary.

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
                            warn=None if as_json else (lambda m: line(f"Warning: {m}")))
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


@main.command("tag-jsonl")
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
@click.option("--template", default=None, help="Template for new identifiers (name or text with {words}).")
@_position_option
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
@handle_errors
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
    warn = lambda m: line(m)  # noqa: E731
    check = None
    if not allow_filtered:
        from ghostsent.survive.screen import check_identifier, check_new_identifier
        from ghostsent.wordlists import load_wordlist
        check_new_identifier(load_wordlist(wordlist), template)
        check = check_identifier
    try:
        with open_ledger(ledger_path, create=True) as led:
            summary = tag_jsonl(led, in_path, out_path, opts, warn=warn, check_ghost=check)
    except KeyboardInterrupt:
        echo("Interrupted; the ledger is consistent and OUT was not written.", err=True)
        sys.exit(EXIT_INTERRUPTED)

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

    if as_json and to_stderr:
        click.echo(json_printable(json.dumps(summary, indent=2, ensure_ascii=False, default=str)), err=True)
    else:
        emit(summary, as_json, human)

# --- detection ------------------------------------------------------------------------------
# (commands: probe, card, check, ppl-test, audit)


def model_options(fn: Callable) -> Callable:
    """--model and the options that say how to reach it (shared by every detection command)."""
    opts = [
        click.option("--model", "-m", "model", default=None,
                     help="default (embedded SmolLM2-135M-Instruct), hf:PATH_OR_NAME, or openai:MODEL."),
        click.option("--gguf", default=None, help="GGUF file inside an hf: directory."),
        click.option("--base-url", default=None, help="Base URL of an OpenAI-compatible API (openai: models)."),
        click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
                     help="Environment variable holding the API key (the key itself is never logged)."),
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


def _load(model: str | None, gguf: str | None, base_url: str | None, api_key_env: str):
    from ghostsent.targets import load_target

    return load_target(model, gguf=gguf, base_url=base_url, api_key_env=api_key_env)


def _run_and_report(kind: str, target, subjects, settings, reference, ledger, as_json: bool,
                    report_dir: Path | None, no_store: bool, exit_code: bool) -> None:
    import time as _time

    from ghostsent.detection.probe import WARNING
    from ghostsent.detection.registry import TESTS
    from ghostsent.detection.session import run_session
    from ghostsent.detection.verdict import NOT_PROVEN, TIE_ORDER

    standing = (NOT_PROVEN, WARNING)  # in every report; the other warnings are printed too
    out = report_dir or Path("ghostsent-reports") / f"{kind}-{_time.strftime('%Y%m%d-%H%M%S')}"
    session = run_session(ledger, target, subjects, settings, reference=reference, kind=kind, store=not no_store,
                          progress=not as_json, report_dir=out)
    res, run_id, paths = session.result, session.run_id, session.report

    def human() -> None:
        echo(res.verdict)
        for r in res.subjects:
            parts = [TESTS[n].summary(r.outcomes[n]) for n in TIE_ORDER if n in r.outcomes]
            holm_p = (f" test #{r.test_number or 1}, corrected p={_fp(r.p_holm)}" if r.p_holm is not None else "")
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


def _fp(p: float) -> str:
    from ghostsent.stats import format_p

    return format_p(p)


def _ks(value: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"--k must be comma-separated integers, got {value!r}")
    if not ks or min(ks) < 1:
        raise click.BadParameter("--k values must be >= 1")
    return ks


@main.command()
@click.argument("identifier")
@model_options
@click.option("--k", "k_values", default="2,3,4", show_default=True, help="Numbers of held-out last words, comma-separated.")
@click.option("--samples", default=1, show_default=True, type=click.IntRange(1), help="Replies per prompt (needs --temperature).")
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0), help="0 = greedy.")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["raw", "chat"]),
              help="raw text continuation and/or chat instructions [default: what the model supports].")
@detection_options
@ledger_option
@json_option
@handle_errors
def probe(identifier, model, gguf, base_url, api_key_env, k_values, samples, temperature, modes, controls, alpha,
          seed, report_dir, no_store, exit_code, wordlist, ledger_path, as_json):
    """Last-k words probe: does the model complete the ghost sentence? A valid p-value (an upper bound)."""
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.detection.subjects import subjects_from_ledger

    with open_ledger(ledger_path) as ledger:
        subjects = subjects_from_ledger([ledger.get(identifier)], wordlist)
        settings = DetectionSettings(tests=("probe",), ks=_ks(k_values), samples=samples, temperature=temperature,
                                     modes=tuple(modes) or None, controls=controls, alpha=alpha, seed=seed)
        target = _load(model, gguf, base_url, api_key_env)
        _run_and_report("probe", target, subjects, settings, None, ledger, as_json, report_dir, no_store, exit_code)


@main.command("ppl-test")
@click.argument("identifier")
@model_options
@click.option("--nulls", "n_nulls", default=2000, show_default=True, type=click.IntRange(1),
              help="Fresh passphrases the ghost is ranked against (2000: enough for p < 1e-3 on a first test).")
@click.option("--reference", default=None, help="Reference model released before the identifier existed (same forms as --model).")
@click.option("--reference-gguf", default=None, help="GGUF file for an hf: reference.")
@detection_options
@ledger_option
@json_option
@handle_errors
def ppl_test(identifier, model, gguf, base_url, api_key_env, n_nulls, reference, reference_gguf, controls, alpha, seed,
             report_dir, no_store, exit_code, wordlist, ledger_path, as_json):
    """Perplexity test: rank the ghost's likelihood among fresh passphrases. Exact p-value and exposure.

    Each test of an identifier is counted: its j-th test is held to alpha/(j(j+1)) (see `ghostsent show`)."""
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.detection.subjects import subjects_from_ledger

    with open_ledger(ledger_path) as ledger:
        subjects = subjects_from_ledger([ledger.get(identifier)], wordlist)
        settings = DetectionSettings(tests=("ppl",), n_nulls=n_nulls, controls=controls, alpha=alpha, seed=seed)
        target = _load(model, gguf, base_url, api_key_env)
        ref = _load(reference, reference_gguf, base_url, api_key_env) if reference else None
        _run_and_report("ppl-test", target, subjects, settings, ref, ledger, as_json, report_dir, no_store, exit_code)


@main.command()
@model_options
@click.option("--owner", default=None, help="Only this owner's identifiers [default: every identifier].")
@click.option("--tests", "tests", default="probe,ppl", show_default=True, help="Which tests: probe, ppl or both.")
@click.option("--k", "k_values", default="2,3,4", show_default=True)
@click.option("--nulls", "n_nulls", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--reference", default=None, help="Reference model for the perplexity test.")
@click.option("--reference-gguf", default=None)
@detection_options
@ledger_option
@json_option
@handle_errors
def audit(model, gguf, base_url, api_key_env, owner, tests, k_values, n_nulls, reference, reference_gguf, controls,
          alpha, seed, report_dir, no_store, exit_code, wordlist, ledger_path, as_json):
    """Test every identifier (or one owner's) at once: Holm per identifier plus one combined answer."""
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.detection.subjects import subjects_from_ledger
    from ghostsent.errors import LedgerError

    chosen = tuple(t.strip() for t in tests.split(",") if t.strip())
    bad = [t for t in chosen if t not in ("probe", "ppl")]
    if bad or not chosen:
        raise click.BadParameter(f"--tests takes probe and/or ppl, got {tests!r}")
    with open_ledger(ledger_path) as ledger:
        idents = ledger.identifiers(owner)
        if not idents:
            raise LedgerError(f"no identifiers{' for owner ' + repr(owner) if owner else ''} in {ledger.path}")
        subjects = subjects_from_ledger(idents, wordlist)
        settings = DetectionSettings(tests=chosen, ks=_ks(k_values), n_nulls=n_nulls, controls=controls, alpha=alpha, seed=seed)
        target = _load(model, gguf, base_url, api_key_env)
        ref = _load(reference, reference_gguf, base_url, api_key_env) if reference and "ppl" in chosen else None
        _run_and_report("audit", target, subjects, settings, ref, ledger, as_json, report_dir, no_store, exit_code)


def _ks_for(value: str | None, n_words: int) -> tuple[int, ...] | None:
    """--k for an identifier of n words: each 1 <= k < n, else a usage error (exit 2)."""
    if value is None:
        return None
    ks = _ks(value)
    bad = [k for k in ks if k >= n_words]
    if bad:
        raise click.BadParameter(f"k={bad[0]}: a {n_words}-word passphrase allows 1 <= k <= {n_words - 1}",
                                 param_hint="--k")
    return ks


@main.command()
@click.argument("identifier")
@click.option("--k", "k_values", default="2,3,4", show_default=True,
              help="Held-out words per prompt. Every prompt's words count as shown: check scores only the last min(k).")
@ledger_option
@json_option
@handle_errors
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


@main.command()
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
@handle_errors
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
             f"words (which no prompt showed); p = {_fp(out.result.p_value)}, test #{out.test_number} of "
             f"this identifier, corrected p = {_fp(out.p_history)} (threshold {alpha:g})")
        echo(WARNING)

    emit(d, as_json, human)
    if exit_code and out.detected:
        sys.exit(1)

# --- survival -------------------------------------------------------------------------------
# (command: survive)

@main.command()
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
@handle_errors
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


# --- study ----------------------------------------------------------------------------------
# (commands: study, demo)


def _int_list(value: str, name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{name} takes comma-separated integers, got {value!r}")
    if not out:
        raise click.BadParameter(f"{name} is empty")
    return out


def _str_list(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


@main.command()
@click.option("--corpus", default="builtin:kjv", show_default=True,
              help="Folder of text files, a JSONL file, builtin:kjv (Debian bible-kjv) or builtin:pydoc.")
@click.option("--text-field", default="text", show_default=True, help="JSONL field holding the text.")
@click.option("--owner-field", default=None, help="JSONL field holding the owner.")
@click.option("--documents", "n_documents", default=300, show_default=True, type=click.IntRange(1))
@click.option("--min-words", default=100, show_default=True, type=click.IntRange(1))
@click.option("--max-words", default=160, show_default=True, type=click.IntRange(1),
              help="Cut each document to an excerpt of at most this many words (at a sentence boundary).")
@click.option("--repetitions", default="1,2,3,5,10,20", show_default=True, help="Repetition counts (grid axis).")
@click.option("--ids-per-cell", default=2, show_default=True, type=click.IntRange(1))
@click.option("--controls", "n_controls", default=12, show_default=True, type=click.IntRange(1))
@click.option("--words", default="12", show_default=True, help="Passphrase lengths (grid axis).")
@click.option("--position", "positions", default="latter-half", show_default=True, help="Position strategies (grid axis).")
@click.option("--template", "templates", default="none", show_default=True, help="Prefix templates (grid axis; names only).")
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
@click.option("--out", "out_dir", default="ghostsent-study", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; rerunning with the same folder resumes.")
@json_option
@handle_errors
def study(corpus, text_field, owner_field, n_documents, min_words, max_words, repetitions, ids_per_cell, n_controls, words,
          positions, templates, wordlists, model, gguf, method, lr, epochs, seq_len, batch_size, grad_accum, max_steps,
          n_nulls, k_values, alpha, seed, pipeline, out_dir, as_json):
    """Insert, fine-tune, detect: measure how many repetitions each test needs."""
    from ghostsent.study import StudyConfig, run_study

    cfg = StudyConfig(
        corpus=corpus, text_field=text_field, owner_field=owner_field, min_words=min_words, max_words=max_words,
        n_documents=n_documents, repetitions=_int_list(repetitions, "--repetitions"), ids_per_cell=ids_per_cell,
        n_controls=n_controls, words=_int_list(words, "--words"), positions=_str_list(positions),
        templates=_str_list(templates), wordlists=_str_list(wordlists), model=model, gguf=gguf, method=method, lr=lr,
        epochs=epochs, seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum, max_steps=max_steps,
        n_nulls=n_nulls, ks=_ks(k_values), alpha=alpha, seed=seed, pipeline=None if pipeline == "none" else pipeline,
    )
    log = (lambda m: echo(m, err=True)) if as_json else click.echo
    res = run_study(cfg, out_dir, progress=not as_json, log=log)
    summary = {r["key"]: {k: v for k, v in r["summary"].items() if k not in ("roc", "control_p_values")} for r in res["runs"]}
    emit({"out": str(out_dir), "results": str(Path(out_dir) / "results.json"), "summary": summary,
          "seconds": res["seconds"]}, as_json,
         lambda: echo(f"\n{(Path(out_dir) / 'results.md').read_text()}\nResults: {out_dir}/results.json"))


@main.command()
@click.option("--out", "out_dir", default="ghostsent-demo", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the reports go (the only thing the demo leaves behind).")
@click.option("--corpus", default=None, help="Corpus [default: builtin:kjv if installed, else builtin:pydoc].")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Record the demo identifier in this ledger [default: a throw-away one].")
@click.option("--seed", type=int, default=None, help="Reproducible run (tests only).")
@json_option
@handle_errors
def demo(out_dir, corpus, ledger_path, seed, as_json):
    """The whole loop in about 5 minutes: tag, fine-tune, detect, report."""
    from ghostsent.demo import run_demo
    from ghostsent.stats import format_p

    log = (lambda m: echo(m, err=True)) if as_json else click.echo
    res = run_demo(out_dir, corpus=corpus, ledger_path=ledger_path, progress=not as_json, log=log, seed=seed)

    def human() -> None:
        echo("")
        echo(f"{'model':<12} {'last-k probe p':>15} {'perplexity rank':>16} {'ppl p':>9}  verdict")
        for r in res.rows:
            echo(f"{r['model']:<12} {format_p(r['probe_p']):>15} {str(r['ppl_rank']) + '/' + str(r['ppl_n']):>16} "
                       f"{format_p(r['ppl_p']):>9}  {'DETECTED' if r['detected'] else 'not detected'}")
        echo(f"\nFull reports: {res.report_dir}/untouched/report.md and {res.report_dir}/fine-tuned/report.md "
                   f"({res.seconds:.0f} s in all)")

    emit(res.__dict__, as_json, human)


# --- platform scale (issue 12): `tag` (any format, local or Spark) and `ledger merge` -------------
# One block, to move into cli/tagging.py and cli/ledger.py with the cli/ package.

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
            from ghostsent.spark import local_session, tag_spark
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
    "tag", callback=handle_errors(_tag), help=_tag.__doc__ + "\n\n`tag-jsonl` is the same for JSONL.",
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
main.add_command(tag_cmd)


@main.group("ledger")
def ledger_group() -> None:
    """Ledger maintenance: merge insertion manifests from distributed jobs."""


@ledger_group.command("merge")
@click.argument("manifest", type=click.Path(exists=True, path_type=Path))
@ledger_option
@json_option
@handle_errors
def ledger_merge(manifest, ledger_path, as_json):
    """Add a job's insertion manifest (Parquet file or folder) to the ledger: all or nothing, and rows
    the ledger already holds are skipped, so merging twice adds nothing twice."""
    from ghostsent.ledger.manifest import merge_manifest

    with open_ledger(ledger_path) as led:
        res = merge_manifest(led, manifest)
    emit(res.to_dict(), as_json, lambda: echo(f"{res.rows} rows in {len(res.files)} file(s): {res.added} added, "
                                              f"{res.skipped} already in the ledger"))
