"""Tag a table file (Parquet, CSV) with pyarrow: the same rules (core.tag_record, keyed selection) as
JSONL, the same schema out, every other column untouched.

Rows are numbered from 1 (a row's key without an id field, and its document name "IN:row N"). The
output is written to a temp file beside OUT and renamed inside the ledger transaction that records the
insertions (fsio.atomic_write): either OUT exists and the ledger holds its insertions, or neither. A
table is tagged in one go (not resumable: rerun it; the keyed hash makes the same output).
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any, Callable

from ghostsent.errors import InputError
from ghostsent.extras import require
from ghostsent.fsio import atomic_write, same_file
from ghostsent.names import path_label
from ghostsent.tagging.arrow import check_text_field, replaced, text_path
from ghostsent.tagging.core import (ALREADY_TAGGED, MISSING, NO_BOUNDARY, NOT_SELECTED, BadRecord, RecordRules,
                                    eligible, get_field, rank_record, tag_record)
from ghostsent.tagging.jsonl import JsonlOptions, LedgerGhosts, job_selection
from ghostsent.tagging.selection import SmallestRanks, rank_of

TABLE_FORMATS = ("parquet", "csv")


def read_table(path: str, fmt: str) -> Any:
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq
            return pq.read_table(path)
        import pyarrow.csv as pcsv
        # Every CSV column stays text: no number or date guessing, so untouched cells keep their spelling.
        names = pcsv.open_csv(path).schema.names
        return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False))
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: cannot read as {fmt} ({e})") from None


def write_table(table: Any, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "parquet":
        import pyarrow.parquet as pq
        pq.write_table(table, buf)
    else:
        import pyarrow.csv as pcsv
        pcsv.write_csv(table, buf)
    return buf.getvalue()


def _thresholds(rows: list[dict], rules: RecordRules, ghosts: LedgerGhosts) -> tuple[dict[str, int], dict]:
    ranks = SmallestRanks(rules.selection.max_per_owner)
    for pos, rec in enumerate(rows, 1):
        try:
            r = rank_record(rec, rules, pos)
        except BadRecord:
            continue
        if rules.selection.admits(r.digest):
            ranks.offer(r.owner, rank_of(r.digest), lambda r=r: eligible(r, ghosts))
    return ranks.thresholds(), ranks.placed()


@dataclass
class ArrowTag:
    """A tagged Arrow table, the insertions to record and the run's summary."""

    table: Any
    pending: list[tuple]
    summary: dict


def _tag_rows(rows: list[dict], rules: RecordRules, ghosts: LedgerGhosts, label: str,
              skip_bad: bool) -> tuple[list, list, dict, list, set]:
    policy = rules.policy
    counts = dict(records=0, inserted=0, already_tagged=0, no_boundary=0, not_selected=0, bad=0)
    texts, pending, bad, owners = [], [], [], set()
    for pos, rec in enumerate(rows, 1):
        text = get_field(rec, policy.text_field)
        text = None if text is MISSING else text
        try:
            rt = tag_record(rec, ghosts, rules, pos)
        except BadRecord as e:
            if not skip_bad:
                raise InputError(f"{label}, row {pos}: {e}; such rows can be copied through unchanged",
                                 hint="skip_bad") from None
            counts["bad"] += 1
            bad.append({"row": pos, "reason": str(e)})
            texts.append(text)
            continue
        counts["records"] += 1
        owners.add(rt.owner)
        status = rt.tag.status
        if status in (NOT_SELECTED, ALREADY_TAGGED, NO_BOUNDARY):
            counts[status.replace("-", "_")] += 1
            texts.append(text)
            continue
        doc = f"{label}:{policy.id_field}={rt.record_id}" if policy.id_field else f"{label}:row {pos}"
        pending.append(rt.tag.insertion(rt.ghost.identifier_id, doc, policy.position))
        counts["inserted"] += 1
        texts.append(rt.tag.new_text)
    return texts, pending, counts, bad, owners


def read_columns(columns: list[str], policy: Any) -> list[int]:
    """The top-level columns the rules read (text, owner and id fields, dotted paths included): only
    these become Python rows; every other column stays in Arrow and is written back as it was read."""
    names = [f for f in (policy.text_field, policy.owner_field, policy.id_field) if f]
    tops = {text_path(columns, n)[0] for n in names}
    return [i for i, c in enumerate(columns) if c in tops]  # by index: a repeated name reads as before


def tag_arrow(ledger: Any, table: Any, label: str, opts: JsonlOptions,
              check_ghost: Callable[[Any], None] | None = None) -> ArrowTag:
    """Tag a pyarrow Table's text column (rows numbered from 1); nothing is recorded yet."""

    wordlist = opts.validate()
    policy = opts.policy()
    check_text_field(table.schema, policy.text_field, label)
    rows = table.select(read_columns(table.column_names, policy)).to_pylist()
    rules = RecordRules(policy, job_selection(ledger, opts))
    ghosts = LedgerGhosts(ledger, opts, wordlist, check_ghost)
    if rules.selection.needs_first_pass:
        rules.selection.thresholds, rules.selection.placed = _thresholds(rows, rules, ghosts)
    texts, pending, counts, bad, owners = _tag_rows(rows, rules, ghosts, label, opts.skip_bad)
    path = text_path(table.column_names, policy.text_field)
    i = table.column_names.index(path[0])
    out = table.set_column(i, table.schema.field(i), replaced(table.column(i), path[1:], texts))
    summary = {"input": label, "rows": len(rows), **counts, "owners": len(owners), "new_identifiers": ghosts.new,
               "bad_rows": bad, "selection": rules.selection.rule()}
    return ArrowTag(out, pending, summary)


def _recorder(ledger: Any, opts: JsonlOptions, fmt: str, tagged: ArrowTag) -> Callable[[], None]:
    """What the ledger records when the output is renamed into place: insertions and a 'tag' run."""
    def record() -> None:
        ledger.add_insertions(tagged.pending)
        ledger.add_run("tag", {}, opts.settings() | {"format": fmt, "selection": tagged.summary["selection"]},
                       {k: v for k, v in tagged.summary.items() if k != "bad_rows"})
    return record


def _check_output(ledger: Any, in_path: str, out_path: str) -> None:
    if os.path.lexists(out_path):
        raise InputError(f"{out_path}: already exists; remove it or choose another output")
    if os.path.exists(in_path) and (same_file(in_path, out_path) or same_file(ledger.path, out_path)):
        raise InputError(f"{out_path}: is the input or the ledger; choose another output")


def tag_table(ledger: Any, in_path: str, out_path: str, opts: JsonlOptions, fmt: str,
              check_ghost: Callable[[Any], None] | None = None) -> dict:
    """Tag the table at `in_path` into `out_path` (same format and schema); returns the summary."""
    require("formats", "pyarrow", what=f"tagging {fmt}")
    opts.validate()
    _check_output(ledger, in_path, out_path)
    tagged = tag_arrow(ledger, read_table(in_path, fmt), path_label(in_path), opts, check_ghost)
    tagged.summary |= {"output": out_path, "format": fmt}
    atomic_write(out_path, write_table(tagged.table, fmt), ledger=ledger,
                 before_rename=_recorder(ledger, opts, fmt, tagged))
    return tagged.summary


def tag_hf_dataset(ledger: Any, in_path: str, out_path: str, opts: JsonlOptions,
                   check_ghost: Callable[[Any], None] | None = None) -> dict:
    """Tag a Hugging Face `datasets` Dataset saved with save_to_disk into a new one at `out_path` (same
    features). Written to a temp folder beside OUT, renamed inside the ledger transaction."""
    import shutil
    import tempfile

    require("hf", what="tagging a Hugging Face dataset")
    import datasets

    opts.validate()
    _check_output(ledger, in_path, out_path)
    try:
        ds = datasets.load_from_disk(in_path)
    except (FileNotFoundError, ValueError) as e:
        raise InputError(f"{in_path}: not a dataset saved with save_to_disk ({e})") from None
    if not isinstance(ds, datasets.Dataset):
        raise InputError(f"{in_path}: a DatasetDict; tag each split's folder on its own")
    tagged = tag_arrow(ledger, ds.data.table, path_label(in_path), opts, check_ghost)
    tagged.summary |= {"output": out_path, "format": "hf"}
    tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out_path)), prefix=".ghostsent-")
    try:
        datasets.Dataset(datasets.table.InMemoryTable(tagged.table), info=ds.info.copy()).save_to_disk(tmp)
        with ledger.transaction():
            _recorder(ledger, opts, "hf", tagged)()
            os.rename(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return tagged.summary
