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

from ghostsent.errors import EXIT_INTERRUPTED, GhostsentError

LEDGER_ENV = "GHOSTSENT_LEDGER"


def default_ledger_path() -> Path:
    return Path(os.environ.get(LEDGER_ENV) or "ghostsent.db")


def emit(data: Any, as_json: bool, human: Callable[[], None] | str | None = None) -> None:
    """Print `data` as one JSON document, or the human form."""
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    elif callable(human):
        human()
    elif human is not None:
        click.echo(human)


def handle_errors(fn: Callable) -> Callable:
    """Turn library errors into `Error: ...` on stderr plus a meaningful exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GhostsentError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted; nothing partial was written.", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


ledger_option = click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Ledger SQLite file [env {LEDGER_ENV}; default ./ghostsent.db].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def open_ledger(path: Path | None):
    from ghostsent.ledger import Ledger

    return Ledger(path or default_ledger_path())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ghostsent")
def main() -> None:
    """ghostsent: insert ghost sentences into your text, then test whether a model memorised them.

    \b
    Exit codes: 0 ok / not detected, 1 detected (with --fail-on-detect), 2 usage,
    3 bad input, 4 ledger problem, 5 model or API problem, 130 interrupted.
    """


# --- identifiers and the ledger -------------------------------------------------------------
# (commands: new, list, show, export, import, commit)

# --- insertion ------------------------------------------------------------------------------
# (commands: insert, tag-jsonl)

# --- detection ------------------------------------------------------------------------------
# (commands: probe, card, check, ppl-test, audit)

# --- study ----------------------------------------------------------------------------------
# (commands: study, demo)
