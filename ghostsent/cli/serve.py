"""The tagging service: serve (ghostsent/serve/service.py; docs/scale.md)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from ghostsent.cli import TIMEOUT_ENV, default_ledger_path, ledger_option, position_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8790, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Worker processes.")
@click.option("--max-bytes", default=1 << 20, show_default=True, type=click.IntRange(1024),
              help="Largest request body; bigger ones get 413.")
@click.option("--max-replies", default=64, show_default=True, type=click.IntRange(1), help="Most replies per /check.")
@click.option("--words", "n_words", default=12, show_default=True, type=click.IntRange(1),
              help="Passphrase length of identifiers drawn for new owners.")
@click.option("--wordlist", default="en", show_default=True, help="Word list for new owners' identifiers.")
@click.option("--template", default=None, help="Template for new owners' identifiers (name, natural, or text with {words})  [default: post].")
@position_option
@click.option("--allow-reveal", is_flag=True,
              help="Let GET /identifiers/OWNER?reveal=true return passphrases (default: never).")
@ledger_option
def serve(host, port, workers, max_bytes, max_replies, n_words, wordlist, template, position, allow_reveal,
          ledger_path):
    """Run the tagging service (POST /tag, POST /check, GET /identifiers/OWNER) until interrupted.

    Clients send `Authorization: Bearer $GHOSTSENT_SERVE_TOKEN`; the token is read from the environment
    only. See docs/scale.md."""
    from ghostsent.serve.service import ServiceConfig, serve as run_service

    try:
        timeout = float(os.environ.get(TIMEOUT_ENV) or 30.0)
    except ValueError:
        raise click.BadParameter(f"${TIMEOUT_ENV} must be a number of seconds") from None
    location = ledger_path or default_ledger_path()
    if isinstance(location, Path):  # the default ledger: its folder in the user data folder may be new
        location.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = ServiceConfig(str(location), max_bytes, max_replies, wordlist, n_words, template, position,
                           allow_reveal, timeout)
    run_service(config, host, port, workers)
