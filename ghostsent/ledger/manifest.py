"""Insertion manifests: the insertions a distributed job (Spark, datatrove) made, as Parquet, merged into
the ledger afterwards by `ghostsent ledger merge MANIFEST`.

A worker cannot write to the ledger (there may be thousands, and SQLite has one writer); it writes one
manifest row per insertion instead. The identifiers were created in the ledger before the job ran (on
the driver), so a manifest only refers to identifiers the ledger holds.

Guarantees of `merge_manifest` (tests/test_manifest.py):

* All or nothing: every row is checked (columns and types, hex digests, offset, strategy, a known
  identifier) before one transaction adds them; a bad row names file, row and field, and adds nothing.
* Idempotent: a row whose (identifier, document, sha256 after) the ledger already holds is skipped, and
  so is a repeat within the manifest. Merging the same manifest twice, or the manifest of a re-run of a
  failed job (the keyed-hash selection makes the same records and bytes), adds nothing twice.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ghostsent.errors import InputError, LedgerError
from ghostsent.ledger.records import STRATEGIES

COLUMNS = ("identifier_id", "document", "sha256_before", "sha256_after", "offset", "strategy")
META_KEY = b"ghostsent.manifest"
FORMAT = "ghostsent-insertions-v1"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def manifest_schema(meta: dict | None = None) -> Any:
    import pyarrow as pa

    schema = pa.schema([("identifier_id", pa.string()), ("document", pa.string()), ("sha256_before", pa.string()),
                        ("sha256_after", pa.string()), ("offset", pa.int64()), ("strategy", pa.string())])
    return schema.with_metadata({META_KEY: json.dumps({"format": FORMAT, **(meta or {})}).encode()})


def rows_table(rows: Iterable[tuple], meta: dict | None = None) -> Any:
    """A pyarrow Table of insertion rows (ledger InsertionRow tuples)."""
    import pyarrow as pa

    cols: list[list] = [[] for _ in COLUMNS]
    for r in rows:
        for c, v in zip(cols, r):
            c.append(v)
    return pa.Table.from_arrays([pa.array(c, type=t.type) for c, t in zip(cols, manifest_schema())],
                                schema=manifest_schema(meta))


def write_manifest(rows: Iterable[tuple], path: "str | Path", meta: dict | None = None) -> int:
    """Write insertion rows as one Parquet file, atomically (temp file + rename); returns the count."""
    import pyarrow.parquet as pq

    table = rows_table(rows, meta)
    tmp = f"{path}.partial"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return table.num_rows


@dataclass
class MergeResult:
    files: list[str]
    rows: int = 0
    added: int = 0
    skipped: int = 0                      # already in the ledger, or repeated in the manifest
    meta: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"files": self.files, "rows": self.rows, "added": self.added, "skipped": self.skipped,
                "jobs": self.meta}


def manifest_files(path: "str | Path") -> list[str]:
    """A Parquet file, or a folder of them (a Spark output: part-*.parquet; _SUCCESS etc. ignored)."""
    p = Path(path)
    if p.is_file():
        return [str(p)]
    if not p.is_dir():
        raise InputError(f"{path}: no such manifest file or folder")
    files = sorted(str(f) for f in p.rglob("*.parquet") if not f.name.startswith(("_", ".")))
    if not files:
        raise InputError(f"{path}: a folder without Parquet files (is it a manifest?)")
    return files


def _rows(file: str) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{file}: not a Parquet manifest ({e})") from None
    missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{file}: not an insertion manifest (missing column {missing[0]!r})")
    n = 0
    for batch in pf.iter_batches(columns=list(COLUMNS), batch_size=65536):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _check(row: dict, where: str) -> tuple:
    for name in ("identifier_id", "document", "strategy"):
        if not isinstance(row[name], str) or not row[name]:
            raise InputError(f"{where}: field {name!r} must be a non-empty string")
    for name in ("sha256_before", "sha256_after"):
        if not isinstance(row[name], str) or not _HEX64.match(row[name]):
            raise InputError(f"{where}: field {name!r} must be 64 lowercase hex digits")
    if type(row["offset"]) is not int or row["offset"] < 0:
        raise InputError(f"{where}: field 'offset' must be an integer >= 0")
    if row["strategy"] not in STRATEGIES:
        raise InputError(f"{where}: field 'strategy' {row['strategy']!r} is not one of {', '.join(STRATEGIES)}")
    return tuple(row[c] for c in COLUMNS)


def _file_meta(file: str) -> dict:
    import pyarrow.parquet as pq

    raw = (pq.read_schema(file).metadata or {}).get(META_KEY)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def merge_manifest(ledger: Any, path: "str | Path") -> MergeResult:
    """Check every row of the manifest at `path`, then add the new ones in one transaction."""
    from ghostsent.extras import require

    require("formats", "pyarrow", what="merging a manifest (Parquet)")
    files = manifest_files(path)
    result = MergeResult(files)
    seen: set[tuple[str, str, str]] = set()
    new: list[tuple] = []
    known: dict[str, bool] = {}
    for file in files:
        meta = _file_meta(file)
        if meta and meta not in result.meta:
            result.meta.append(meta)
        for n, row in _rows(file):
            r = _check(row, f"{file}, row {n}")
            if r[0] not in known:
                known[r[0]] = ledger.find(r[0]) is not None
            if not known[r[0]]:
                raise LedgerError(f"{file}, row {n}: identifier {r[0]} is not in {ledger.path} (merge the "
                                  f"manifest into the ledger the job drew its identifiers from)")
            result.rows += 1
            if (r[0], r[1], r[3]) in seen:
                result.skipped += 1
                continue
            seen.add((r[0], r[1], r[3]))
            new.append(r)
    with ledger.transaction():
        fresh = [r for r in new if not ledger.has_insertion(r[0], r[1], r[3])]
        result.skipped += len(new) - len(fresh)
        result.added = ledger.add_insertions(fresh)
    return result
