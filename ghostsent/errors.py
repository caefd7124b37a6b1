"""Exceptions and the exit codes they map to.

Every user-facing failure is a GhostsentError subclass whose message names the file, line or field at
fault; the CLI turns it into one line on stderr and the exit code below, never a traceback. Library
messages never name command-line flags: an error that a flag can fix carries a `hint` key, and the CLI
(ghostsent/cli/__init__.py, HINTS) adds the flag. Exit codes are documented in docs/cli.md.
"""
from __future__ import annotations

# Exit codes (documented in README and docs/cli.md). 0 = success / "not detected"; 1 = "detected" for detection
# commands run with --exit-code; 2 = usage error (click's own).
EXIT_OK = 0
EXIT_DETECTED = 1
EXIT_USAGE = 2
EXIT_INPUT = 3      # bad input file, word list, JSONL line, template; an output that cannot be written
EXIT_LEDGER = 4     # ledger conflict, unknown identifier, schema problem
EXIT_MODEL = 5      # model missing, cannot load, API/capability failure
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


class GhostsentError(Exception):
    """`hint`: a key naming what the user can change (e.g. "resume", "wordlist"); see cli.HINTS."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def again(self, message: str) -> "GhostsentError":
        """The same kind of error (and hint) with another message."""
        err = type(self)(message, hint=self.hint)
        err.exit_code = self.exit_code
        return err


class InputError(GhostsentError):
    """Bad user input: a file, a line of it, a field, a word list or a template."""
    exit_code = EXIT_INPUT


class OutputError(InputError):
    """An output file or folder cannot be written (read-only, full disk, held by another run)."""
    exit_code = EXIT_INPUT


class OutputClosedError(GhostsentError):
    """Standard output was closed by its reader before everything was written."""
    exit_code = EXIT_BROKEN_PIPE


class WorkerDied(GhostsentError):
    """A worker process of a parallel run ended before the run did (killed, out of memory)."""
    exit_code = EXIT_INPUT


class LedgerError(GhostsentError):
    exit_code = EXIT_LEDGER


class ModelError(GhostsentError):
    exit_code = EXIT_MODEL


class CapabilityError(ModelError):
    """A server cannot give the prompt log-probabilities the perplexity test needs."""


class MissingExtraError(GhostsentError):
    """A feature needs an optional dependency group (`pip install 'ghostsent[EXTRA]'`). Exit 5 when the
    feature is a model (detect, study), 3 otherwise (see ghostsent/extras.py)."""

    def __init__(self, message: str = "", *, hint: str | None = None, exit_code: int = EXIT_INPUT) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code
