"""Identifiers and the ledger: new, list, show, export, import, commit (and its Merkle proofs), verify-proof,
ledger path, ledger merge."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ghostsent.cli import (LEDGER_ENV, SEED_WARNING, default_ledger_path, old_ledger_notice, allow_filtered_option, echo, emit, fmt_p, json_option, ledger_option, line,
                           open_ledger, q)
from ghostsent.names import json_printable



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


@click.command()
@click.option("--owner", default=None, help="Who the identifier belongs to [default: $USER or 'me'].")
@click.option("--words", "n_words", default=12, show_default=True, type=click.IntRange(1),
              help="Number of random words in the passphrase.")
@click.option("--wordlist", default="en", show_default=True, help="Shipped list name (en, de, ...) or a file path.")
@click.option("--template", default=None,
              help="Built-in template name (none, post, project, document, author), natural (a lead-in drawn per identifier) or text with {words}  [default: post].")
@click.option("--seed", default=None, type=int, help="Seeded draw: for tests and studies only.")
@allow_filtered_option
@ledger_option
@json_option
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


@click.command("list")
@click.option("--owner", default=None, help="Only this owner's identifiers.")
@ledger_option
@json_option
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


@click.command()
@click.argument("identifier")
@click.option("--reveal", is_flag=True,
              help="Also print the salt and canonical JSON, so a third party can recompute the commitment.")
@ledger_option
@json_option
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
    echo(f"tests: {h['n_tests']}; corrected p over all tests: {fmt_p(h['p_over_all'])} "
               "(the j-th test counts x j(j+1))")
    for t in h["tests"]:
        p = "unfinished (counts as p = 1)" if t["p_value"] is None else \
            f"p = {fmt_p(t['p_value'])}, corrected {fmt_p(t['p_history'] if t['p_history'] is not None else 1.0)}"
        echo(f"  #{t['number']} {t['started_at'][:19]} {t['kind']:<8} {t['model']}: {p}"
                   + ("" if t["stored"] else " (not stored)"))
    echo(f"shown to: {len(h['disclosures'])} disclosure(s)")
    for d in h["disclosures"]:
        w = d["words"]
        span = f"words 1-{max(w) + 1} of {n_words}" if w else "no words"
        echo(f"  {d['created_at'][:19]} {span} -> {d['endpoint']} ({d['via']})")


@click.command()
@click.option("-o", "--output", default="-", show_default=True, help="File to write, or - for stdout.")
@ledger_option
@json_option
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


@click.command("import")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True))
@ledger_option
@json_option
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


@click.command()
@click.option("--proof", "proof_id", default=None, metavar="ID",
              help="Print this identifier's Merkle inclusion proof (JSON) instead of the list.")
@click.option("--reveal", is_flag=True, help="With --proof: include the salt and canonical JSON (discloses the passphrase).")
@ledger_option
@json_option
def commit(proof_id, reveal, ledger_path, as_json):
    """Print the commitment root over all identifiers (publish it) and each identifier's commitment."""
    from ghostsent.ledger.commitments import ledger_commitment, ledger_proof

    if reveal and proof_id is None:
        raise click.BadParameter("--reveal goes with --proof ID", param_hint="--reveal")
    with open_ledger(ledger_path) as led:
        if proof_id is not None:
            emit(ledger_proof(led, proof_id, with_reveal=reveal), True)
            return
        data = ledger_commitment(led).to_dict()

    def human() -> None:
        echo(f"root: {data['root']}  ({data['count']} identifiers, {data['scheme']})")
        echo(f"flat root: {data['flat_root']}  ({data['flat_scheme']}, as published before the Merkle tree)")
        for item in data["identifiers"]:
            echo(f"  {item['id']}  {item['commitment']}")

    emit(data, as_json, human)


@click.command("verify-proof")
@click.argument("proof_file", metavar="PROOF.json", type=click.File("r", encoding="utf-8"))
@click.option("--root", required=True, help="The published root (64 hex digits).")
@click.option("--commitment", default=None,
              help="The commitment to check, for a flat-root proof (the kept `commit --json` output).")
@json_option
def verify_proof_cmd(proof_file, root, commitment, as_json):
    """Check an inclusion proof against a published root. Exit 0 if it holds, 1 if not. No ledger needed."""
    import json

    from ghostsent.errors import InputError
    from ghostsent.ledger.commitments import verify_proof

    name = getattr(proof_file, "name", "proof")
    try:
        doc = json.loads(proof_file.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{name}: not valid JSON ({getattr(e, 'msg', e)})") from None
    res = verify_proof(doc, root, commitment, source=name)

    def human() -> None:
        if res.ok:
            echo(f"OK: commitment {res.commitment} is under root {res.root} ({res.scheme})")
            if res.ghost is not None:
                echo(f"ghost sentence: {q(res.ghost)}")
        else:
            echo(f"FAILED: {res.reason}")

    emit(res.to_dict(), as_json, human)
    if not res.ok:
        sys.exit(1)


@click.group("ledger")
def ledger_group() -> None:
    """Where the ledger is; merging insertion manifests from distributed jobs."""


@ledger_group.command("path")
@ledger_option
@json_option
def ledger_path_cmd(ledger_path, as_json):
    """Print the ledger a command would use here (--ledger, $GHOSTSENT_LEDGER, or the user data folder)."""
    path = ledger_path or default_ledger_path()
    source = "--ledger" if ledger_path else (LEDGER_ENV if os.environ.get(LEDGER_ENV) else "default")
    notice = old_ledger_notice(ledger_path)
    exists = None if "://" in str(path) else Path(path).is_file()  # a database URL: not a file to look for
    emit({"path": str(path), "exists": exists, "source": source, "notice": notice}, as_json,
         lambda: (echo(str(path)), notice and line(notice)))


# merge: insertion manifests from Spark / datatrove jobs (issue 12, docs/scale.md)
@ledger_group.command("merge")
@click.argument("manifest", type=click.Path(exists=True, path_type=Path))
@ledger_option
@json_option
def ledger_merge(manifest, ledger_path, as_json):
    """Add a job's insertion manifest (Parquet file or folder) to the ledger: all or nothing, and rows
    the ledger already holds are skipped, so merging twice adds nothing twice."""
    from ghostsent.ledger.manifest import merge_manifest

    with open_ledger(ledger_path) as led:
        res = merge_manifest(led, manifest)
    emit(res.to_dict(), as_json, lambda: echo(f"{res.rows} rows in {len(res.files)} file(s): {res.added} added, "
                                              f"{res.skipped} already in the ledger"))
