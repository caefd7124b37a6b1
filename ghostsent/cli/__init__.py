"""The `ghostsent` command: a thin click layer over the library.

One module per command group, each command parse -> one library call -> render:

    ledger.py    new, list, show, export, import, commit (and Merkle proofs), verify-proof, ledger path,
                 ledger merge
    tagging.py   insert, tag-jsonl, tag
    detect.py    probe, ppl-test, rank-test, audit, card, check
    survive.py   survive
    study.py     study, demo
    serve.py     serve (the tagging service)

This module holds what they share: the group (which imports a command's module only when that command
runs, so `ghostsent new` never loads torch), the shared options, output (`emit`, `echo`), and the ONE
place where errors and Ctrl-C become a line on stderr and an exit code (`guarded`). Every command takes
`--json`. Library errors carry a hint key (never a flag name); HINTS turns it into the flag to change.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ghostsent import __version__
from ghostsent.errors import (EXIT_BROKEN_PIPE, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_LEDGER, GhostsentError,
                              OutputClosedError)
from ghostsent.names import json_printable, printable

LEDGER_ENV = "GHOSTSENT_LEDGER"
TIMEOUT_ENV = "GHOSTSENT_LEDGER_TIMEOUT"  # seconds to wait for a ledger another process is writing

# command name -> "module:function" under ghostsent.cli (help lists them in this order)
COMMANDS = {
    "new": "ledger:new", "list": "ledger:list_cmd", "show": "ledger:show", "export": "ledger:export",
    "import": "ledger:import_cmd", "commit": "ledger:commit", "verify-proof": "ledger:verify_proof_cmd",
    "ledger": "ledger:ledger_group",
    "insert": "tagging:insert", "tag-jsonl": "tagging:tag_jsonl_cmd", "tag": "tagging:tag_cmd",
    "probe": "detect:probe", "ppl-test": "detect:ppl_test", "rank-test": "detect:rank_test", "audit": "detect:audit",
    "card": "detect:card",
    "check": "detect:check",
    "survive": "survive:survive",
    "study": "study:study", "demo": "study:demo",
    "serve": "serve:serve",
}

INTERRUPTED = "Interrupted."  # what was kept (if anything) the library has said in a warning before


OLD_DEFAULT = Path("ghostsent.db")  # where 0.1 kept the ledger: the current folder


def default_ledger_path() -> "str | Path":
    """$GHOSTSENT_LEDGER (a file path or a postgresql:// URL, kept as text: a Path would fold its //),
    else ghostsent.db in the user data folder (platformdirs), not the current folder: one ledger per
    user, wherever a command runs."""
    if os.environ.get(LEDGER_ENV):
        return os.environ[LEDGER_ENV]
    from platformdirs import user_data_path

    return user_data_path("ghostsent", appauthor=False) / "ghostsent.db"


def old_ledger_notice(path: "str | Path | None") -> str | None:
    """A 0.1 ledger (./ghostsent.db) in the current folder while the default is used: say how to keep
    using it rather than switching ledgers silently."""
    if path is not None or os.environ.get(LEDGER_ENV) or not OLD_DEFAULT.is_file():
        return None
    if os.path.realpath(OLD_DEFAULT) == os.path.realpath(default_ledger_path()):
        return None
    return (f"Note: ./{OLD_DEFAULT} is here, but the default ledger is now {default_ledger_path()}; to keep "
            f"using ./{OLD_DEFAULT} pass --ledger {OLD_DEFAULT} or set {LEDGER_ENV}={OLD_DEFAULT.resolve()}")


# ------------------------------------------------------------------------------------------- output
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


def emit(data: Any, as_json: bool, human: Callable[[], None] | str | None = None, err: bool = False) -> None:
    """Print `data` as one JSON document, or the human form (on stderr with err=True)."""
    if as_json:
        click.echo(json_printable(json.dumps(data, indent=2, ensure_ascii=False, default=str)), err=err)
    elif callable(human):
        human()
    elif human is not None:
        echo(human, err=err)


def fmt_p(p: float) -> str:
    from ghostsent.stats import format_p

    return format_p(p)


# ------------------------------------------------------------------------------- errors and Ctrl-C
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
    "commitment": "give --commitment C for a flat-root proof",
    "glob": "--glob PATTERN",
    "rank_mode": "--rank-mode completions or --rank-mode chat",
    # study
    "repetitions": "--repetitions", "max_words": "--max-words / --min-words", "ids_per_cell": "--ids-per-cell / --controls",
    "pipeline": "--pipeline", "screen": "--screen", "k": "--k", "documents": "--documents, --corpus or --repetitions", "nulls": "--nulls",
    "study_out": "--out", "dilution": "--dilution", "dilution_documents": "--dilution or --documents",
}


def error_line(e: Exception) -> str:
    """`Error: <message> (<flag hint>)`: the one line a failed command prints."""
    hint = HINTS.get(getattr(e, "hint", None) or "")
    return f"Error: {e}" + (f" ({hint})" if hint else "")


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush stays silent."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def guarded(run: Callable[[], Any]) -> Any:
    """Run a command; library errors become one `Error: ...` line on stderr plus the documented exit
    code (ghostsent/errors.py), Ctrl-C becomes exit 130. The only place the CLI handles either."""
    import sqlite3

    try:
        return run()
    except GhostsentError as e:
        if isinstance(e, OutputClosedError):
            _quiet_stdout()
        line(error_line(e))
        sys.exit(e.exit_code)
    except BrokenPipeError:
        _quiet_stdout()  # `ghostsent list | head`: the reader has all it wanted
        sys.exit(EXIT_BROKEN_PIPE)
    except KeyboardInterrupt:
        echo(INTERRUPTED, err=True)
        sys.exit(EXIT_INTERRUPTED)
    except sqlite3.Error as e:  # a path the ledger wrapper missed: still one line, exit 4
        line(f"Error: ledger: {e}")
        sys.exit(EXIT_LEDGER)
    except OSError as e:
        line(f"Error: {str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}")
        sys.exit(EXIT_INPUT)


# ------------------------------------------------------------------------------------------- group
def _with_envvars(cmd: click.Command, name: str) -> click.Command:
    """GHOSTSENT_<COMMAND>_<OPTION> for each option, named after its long flag (--words: GHOSTSENT_NEW_WORDS),
    where click's auto_envvar_prefix would use the parameter's internal name (n_words)."""
    prefix = f"GHOSTSENT_{name.replace('-', '_').upper()}_"
    for p in cmd.params:
        if isinstance(p, click.Option) and p.envvar is None:
            p.envvar = prefix + max(p.opts, key=len).lstrip("-").replace("-", "_").upper()
    return cmd



class LazyGroup(click.Group):
    """Commands from COMMANDS, each module imported when its command is asked for; every command runs
    inside `guarded`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return _with_envvars(getattr(importlib.import_module(f"ghostsent.cli.{module}"), attr), name)

    def invoke(self, ctx: click.Context) -> Any:
        return guarded(lambda: super(LazyGroup, self).invoke(ctx))


# Every option can also come from the environment: GHOSTSENT_<COMMAND>_<OPTION> (e.g. GHOSTSENT_PROBE_MODEL,
# GHOSTSENT_AUDIT_ALPHA); --ledger from GHOSTSENT_LEDGER for every command (docs/cli.md).
@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                              "auto_envvar_prefix": "GHOSTSENT"})
@click.version_option(version=__version__, prog_name="ghostsent")
def main() -> None:
    """ghostsent: insert ghost sentences into your text, then test whether a model memorised them.

    \b
    Exit codes: 0 ok / not detected, 1 detected (with --exit-code), 2 usage,
    3 bad input, 4 ledger problem, 5 model or API problem, 130 interrupted.
    """


# ------------------------------------------------------------------------------------ shared options
ledger_option = click.option(
    "--ledger",
    "ledger_path",
    default=None,
    envvar=LEDGER_ENV,
    help=f"Ledger: a SQLite file, or postgresql://USER@HOST/DB [env {LEDGER_ENV}; default: ghostsent.db in "
         "the user data folder, see `ghostsent ledger path`].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
allow_filtered_option = click.option(
    "--allow-filtered", is_flag=True,
    help="Use a word list, template or ghost even if it would trip pretraining filters (C4 bad words, '{', ...).")

SEED_WARNING = ("Warning: --seed makes the passphrase predictable to anyone who knows the seed; use it for "
                "tests and studies only, never for a real watermark.")


def position_option(fn: Callable) -> Callable:
    from ghostsent.insert import DEFAULT_POSITION, POSITIONS

    return click.option("--position", type=click.Choice(POSITIONS), default=DEFAULT_POSITION, show_default=True,
                        help="Which sentence boundary: one in the second half, the first, the last, or any.")(fn)


def int_list(value: str, name: str, minimum: int | None = None) -> tuple[int, ...]:
    """A comma-separated list of integers for option `name` (a usage error otherwise)."""
    try:
        out = tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{name} takes comma-separated integers, got {value!r}") from None
    if not out:
        raise click.BadParameter(f"{name} is empty")
    if minimum is not None and min(out) < minimum:
        raise click.BadParameter(f"{name} values must be >= {minimum}")
    return out


def str_list(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


def open_ledger(path: "str | Path | None", create: bool = False):
    """The ledger at `path` (or the default). Only commands that write identifiers pass create=True;
    they say on stderr when they started a new ledger, so a typo in the path is noticed."""
    from ghostsent.errors import InputError
    from ghostsent.ledger import DEFAULT_TIMEOUT
    from ghostsent.ledger import open_ledger as open_location

    try:
        timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)
    except ValueError:
        raise InputError(f"${TIMEOUT_ENV} must be a number of seconds") from None
    notice = old_ledger_notice(path)
    if notice:
        line(notice)
    target = path or default_ledger_path()
    if path is None and create and isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    led = open_location(target, create=create, timeout=timeout)
    if led.created:
        echo(f"created new ledger at {led.path}", err=True)
    return led
