"""Tag a Spark DataFrame (any table Spark reads: Parquet, JSON, CSV, Delta, Hive) on any cluster.

The job, in four Spark stages, with the ledger only on the driver (docs/scale.md):

1. owners: the distinct owners of the readable records are collected to the driver, which gets or draws
   each one's identifier in the ledger (the source of truth) and broadcasts {owner: (id, ghost text)}.
2. with --max-per-owner only: each partition keeps, per owner, the N smallest keyed ranks of its
   eligible records (tagging/selection.py); the driver merges them into one threshold per owner.
3. tag: every partition calls ghostsent.tagging.core.tag_record on each row: the same rule, the same
   keyed hash and so the same choice and bytes as the single-process `ghostsent tag`, whatever the
   partitioning, order or task retries.
4. write: the tagged table (same schema, every other column untouched) and a Parquet manifest of the
   insertions, which `ghostsent ledger merge MANIFEST` adds to the ledger idempotently.

The text, owner and id fields may be nested (a.b, as in the JSONL tagger): a nested text field is
replaced inside its struct (every sibling field and the struct's nulls kept).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ghostsent.errors import InputError
from ghostsent.extras import require
from ghostsent.insert import placer
from ghostsent.tagging.arrow import replaced, text_path
from ghostsent.tagging.core import (MISSING, NO_BOUNDARY, TAGGED, BadRecord, OwnerGhost, RecordRules, TagPolicy,
                                    eligible, get_field, owner_name, rank_record, tag_record)
from ghostsent.tagging.jsonl import JsonlOptions, job_selection, owner_identifier
from ghostsent.tagging.selection import Selection, SelectionKey, SmallestRanks, rank_of


@dataclass
class SparkResult:
    """What a Spark tagging job did: counts, the rule, and where the outputs went."""

    output: str
    manifest: str
    counts: dict[str, int]
    owners: int
    new_identifiers: int
    selection: dict

    def to_dict(self) -> dict:
        return {"output": self.output, "manifest": self.manifest, **self.counts, "owners": self.owners,
                "new_identifiers": self.new_identifiers, "selection": self.selection}


class _Ghosts:
    """Executor-side ghosts from the broadcast {owner: (identifier id, ghost text)}."""

    def __init__(self, table: dict[str, tuple[str, str]], position: str) -> None:
        self.table, self.position = table, position
        self.made: dict[str, OwnerGhost] = {}

    def ghost_for(self, owner: str) -> OwnerGhost:
        g = self.made.get(owner)
        if g is None:
            ident_id, text = self.table[owner]
            g = self.made[owner] = OwnerGhost(ident_id, text, placer(text, self.position))
        return g


_SHIFT = 1 << 63
_POS = "__ghostsent_row"      # the 1-based row number, added when the policy has no id field
_INS = ("identifier_id", "document", "sha256_before", "sha256_after", "offset", "strategy")
_EXTRA = tuple("__ghostsent_" + c for c in _INS) + ("__ghostsent_status", "__ghostsent_detail")


def _rules(policy: TagPolicy, secret: bytes, key_id: str, max_per_owner: int | None, fraction: float | None,
           thresholds: dict[str, int] | None = None) -> RecordRules:
    return RecordRules(policy, Selection(SelectionKey(secret, key_id), max_per_owner, fraction, thresholds))


def _records(batches: Iterable[Any]) -> Iterator[tuple[Any, list[dict]]]:
    """Arrow record batches and their rows as dicts (structs as nested dicts, as a JSON reader gives)."""
    for batch in batches:
        yield batch, batch.to_pylist()


def _position(rec: dict, k: int) -> int:
    return rec.pop(_POS) if _POS in rec else k


def _smallest_of(rules_args: tuple, ghosts_bc: Any, position: str) -> Callable:
    def run(batches: Iterable) -> Iterator[Any]:
        import pyarrow as pa

        rules, ghosts = _rules(*rules_args), _Ghosts(ghosts_bc.value, position)
        ranks = SmallestRanks(rules.selection.max_per_owner)
        for _, rows in _records(batches):
            for rec in rows:
                try:
                    r = rank_record(rec, rules, _position(rec, 0))
                except BadRecord:
                    continue
                if rules.selection.admits(r.digest):
                    ranks.offer(r.owner, rank_of(r.digest), lambda r=r: eligible(r, ghosts))
        owners = list(ranks.heaps)  # ranks are unsigned 64-bit: shifted into int64 for Spark's LongType
        yield pa.RecordBatch.from_arrays([pa.array(owners, pa.string()), pa.array(
            [sorted(-x - _SHIFT for x in ranks.heaps[o]) for o in owners], pa.list_(pa.int64()))],
            names=["owner", "ranks"])
    return run


def _tag_rows(rows: list[dict], rules: RecordRules, ghosts: _Ghosts, label: str) -> Iterator[tuple]:
    """(new text, insertion row or Nones, status, detail) for each row of a batch."""
    policy, none = rules.policy, (None,) * len(_INS)
    for rec in rows:
        pos = _position(rec, 0)
        try:
            rt = tag_record(rec, ghosts, rules, pos)
        except BadRecord as e:
            old = get_field(rec, policy.text_field)
            yield None if old is MISSING else old, none, "bad", f"{'row ' + str(pos) if pos else 'a row'}: {e}"
            continue
        if rt.tag.status != TAGGED:
            yield rt.tag.text, none, rt.tag.status, None
            continue
        doc = f"{label}:{policy.id_field}={rt.record_id}" if policy.id_field else f"{label}:row {pos}"
        yield rt.tag.new_text, rt.tag.insertion(rt.ghost.identifier_id, doc, policy.position), TAGGED, None


def _tag_partition(rules_args: tuple, ghosts_bc: Any, position: str, text_field: str, label: str) -> Callable:
    def run(batches: Iterable) -> Iterator[Any]:
        import pyarrow as pa

        rules, ghosts = _rules(*rules_args), _Ghosts(ghosts_bc.value, position)
        for batch, rows in _records(batches):
            out = list(zip(*_tag_rows(rows, rules, ghosts, label))) or [[], [], [], []]
            texts, ins, status, detail = out
            cols = dict(zip(batch.schema.names, batch.columns))
            cols.pop(_POS, None)
            path = text_path(batch.schema.names, text_field)
            cols[path[0]] = replaced(cols[path[0]], path[1:], texts)
            ins_cols = list(zip(*ins)) if ins else [[] for _ in _INS]
            for name, values in zip(_INS, ins_cols):
                cols["__ghostsent_" + name] = pa.array(values, pa.int64() if name == "offset" else pa.string())
            cols["__ghostsent_status"] = pa.array(status, pa.string())
            cols["__ghostsent_detail"] = pa.array(detail, pa.string())
            yield pa.RecordBatch.from_arrays(list(cols.values()), names=list(cols))
    return run


def _check_text_field(schema: Any, name: str, label: str) -> None:
    """InputError unless the text field is a string column, top level or nested in structs."""
    from pyspark.sql import types as T

    typ: Any = schema
    for part in text_path(schema.names, name):
        if not isinstance(typ, T.StructType) or part not in typ.names:
            raise InputError(f"{label}: no column {name!r} (the text field: a column or a path a.b into structs)")
        typ = typ[part].dataType
    if not isinstance(typ, T.StringType):
        raise InputError(f"{label}: the text field {name!r} is {typ.simpleString()}, not a string column")


def _with_positions(df: Any) -> Any:
    """df plus the 1-based row number column (zipWithIndex: the order Spark reads the input in)."""
    from pyspark.sql import types as T

    schema = T.StructType(df.schema.fields + [T.StructField(_POS, T.LongType(), False)])
    return df.sparkSession.createDataFrame(df.rdd.zipWithIndex().map(lambda t: (*t[0], t[1] + 1)), schema)


def _owners(df: Any, policy: TagPolicy) -> list[str]:
    """The distinct owners (as the ledger stores them) of the rows whose owner field is usable."""
    from pyspark.sql import functions as F

    raw = [r[0] for r in df.select(F.col(policy.owner_field)).distinct().collect()]
    owners = set()
    for value in raw:
        try:
            owners.add(owner_name(value, policy.owner_field))
        except (BadRecord, TypeError):
            continue
    return sorted(owners)


def _identifiers(ledger: Any, owners: list[str], opts: JsonlOptions, wordlist: Any,
                 check_ghost: Callable[[Any], None] | None) -> tuple[dict[str, tuple[str, str]], int]:
    """{owner: (identifier id, ghost text)}, drawing new identifiers in ONE ledger transaction (one
    fsync, not one per owner)."""
    table, new_ids = {}, 0
    with ledger.transaction():
        for owner in owners:
            ident, new = owner_identifier(ledger, owner, opts, wordlist)
            new_ids += new
            if check_ghost is not None:
                check_ghost(ident)
            table[owner] = (ident.id, ident.text)
    return table, new_ids


def _thresholds(df: Any, rules_args: tuple, ghosts_bc: Any, position: str, n: int) -> dict[str, int]:
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("owner", T.StringType()), T.StructField("ranks", T.ArrayType(T.LongType()))])
    parts = df.mapInArrow(_smallest_of(rules_args, ghosts_bc, position), schema) \
        .rdd.map(lambda r: (r[0], list(r[1]))).reduceByKey(lambda a, b: sorted(a + b)[:n]).collectAsMap()
    return {owner: ranks[-1] + _SHIFT for owner, ranks in parts.items() if ranks}


def tag_dataframe(df: Any, ledger: Any, opts: JsonlOptions, label: str,
                  check_ghost: Callable[[Any], None] | None = None) -> tuple[Any, Any, dict]:
    """(tagged DataFrame, manifest DataFrame, run facts) for `df`; nothing is written yet. The tagged
    rows keep df's schema and order; `label` names the input in the ledger's document names."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    wordlist = opts.validate()
    policy = opts.policy()
    _check_text_field(df.schema, policy.text_field, label)
    columns = df.columns
    table, new_ids = _identifiers(ledger, _owners(df, policy), opts, wordlist, check_ghost)
    ghosts_bc = df.sparkSession.sparkContext.broadcast(table)
    sel = job_selection(ledger, opts)
    rules_args = (policy, sel.key.secret, sel.key.key_id, sel.max_per_owner, sel.fraction)
    src = df if policy.id_field else _with_positions(df)
    if sel.needs_first_pass:
        sel.thresholds = _thresholds(src, rules_args, ghosts_bc, policy.position, sel.max_per_owner)
    wide_schema = T.StructType(df.schema.fields + [
        T.StructField(c, T.LongType() if c.endswith("offset") else T.StringType(), True) for c in _EXTRA])
    wide = src.mapInArrow(_tag_partition(rules_args + (sel.thresholds,), ghosts_bc, policy.position,
                                         policy.text_field, label), wide_schema).persist(StorageLevel.DISK_ONLY)
    out_df = wide.select(*[F.col(f"`{c}`") for c in columns])
    man_df = wide.where(F.col("__ghostsent_identifier_id").isNotNull()).select(
        *[F.col("__ghostsent_" + c).alias(c) for c in _INS])
    return out_df, man_df, {"tagged": wide, "owners": len(table), "new_identifiers": new_ids,
                            "selection": sel.rule()}


def _counts(wide: Any, skip_bad: bool) -> dict[str, int]:
    by = {r[0]: r[1] for r in wide.groupBy("__ghostsent_status").count().collect()}
    counts = {"records": sum(v for k, v in by.items() if k != "bad"), "inserted": by.get(TAGGED, 0),
              "already_tagged": by.get("already-tagged", 0), "no_boundary": by.get(NO_BOUNDARY, 0),
              "not_selected": by.get("not-selected", 0), "bad": by.get("bad", 0)}
    if counts["bad"] and not skip_bad:
        first = wide.where("__ghostsent_status = 'bad'").select("__ghostsent_detail").first()[0]
        raise InputError(f"{first}; {counts['bad']} such record(s): skip them to copy them through unchanged",
                         hint="skip_bad")
    return counts


def read_table(spark: Any, path: str, fmt: str) -> Any:
    """A DataFrame of the input: parquet, json (JSON lines), csv (with a header row)."""
    if fmt == "parquet":
        return spark.read.parquet(path)
    if fmt == "jsonl":
        return spark.read.json(path)
    if fmt == "csv":
        return spark.read.option("header", True).csv(path)
    raise InputError(f"{path}: the spark engine reads parquet, jsonl or csv, not {fmt}")


def write_table(df: Any, path: str, fmt: str) -> None:
    writer = df.write.mode("errorifexists")
    {"parquet": writer.parquet, "jsonl": writer.json,
     "csv": lambda p: writer.option("header", True).csv(p)}[fmt](path)


def tag_spark(spark: Any, ledger: Any, in_path: str, out_path: str, manifest_path: str, opts: JsonlOptions,
              fmt: str = "parquet", check_ghost: Callable[[Any], None] | None = None) -> SparkResult:
    """Read `in_path`, tag it, write the tagged table to `out_path` (Spark output folder, same format)
    and the insertion manifest to `manifest_path` (Parquet folder); record the rule as a 'tag' run.
    The insertions reach the ledger with `ghostsent ledger merge MANIFEST` (merge_manifest)."""
    from ghostsent.names import path_label

    require("spark", what="the Spark engine")
    df = read_table(spark, in_path, fmt)
    out_df, man_df, facts = tag_dataframe(df, ledger, opts, path_label(in_path), check_ghost)
    try:
        counts = _counts(facts["tagged"], opts.skip_bad)
        write_table(out_df, out_path, fmt)
        man_df.write.mode("errorifexists").parquet(manifest_path)
    finally:
        facts["tagged"].unpersist()
    result = SparkResult(out_path, manifest_path, counts, facts["owners"], facts["new_identifiers"],
                         facts["selection"])
    ledger.add_run("tag", {"engine": "spark"}, opts.settings() | {"selection": facts["selection"]},
                   result.to_dict())
    return result


def local_session(master: str = "local[2]", app: str = "ghostsent") -> Any:
    """A SparkSession for one machine (tests, benchmarks, small corpora)."""
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(master).appName(app)
            .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
            .config("spark.driver.memory", "1g").getOrCreate())
