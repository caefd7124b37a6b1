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

The text field must be a top-level string column; the owner and id fields may be nested (a.b).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ghostsent.errors import InputError
from ghostsent.insert import placer
from ghostsent.tagging.core import (NO_BOUNDARY, TAGGED, BadRecord, OwnerGhost, RecordRules, TagPolicy, eligible,
                                    owner_name, rank_record, tag_record)
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


def _rules(policy: TagPolicy, secret: bytes, key_id: str, max_per_owner: int | None, fraction: float | None,
           thresholds: dict[str, int] | None = None) -> RecordRules:
    return RecordRules(policy, Selection(SelectionKey(secret, key_id), max_per_owner, fraction, thresholds))


def _records(rows: Iterable[tuple[Any, int]]) -> Iterator[tuple[Any, dict, int]]:
    for row, idx in rows:
        yield row, row.asDict(recursive=True), idx + 1


def _owners_of(policy: TagPolicy) -> Callable:
    def run(rows: Iterable) -> Iterator[str]:
        get = RecordRules(policy, Selection(SelectionKey(b"", ""))).get_owner
        for _, rec, _ in _records(rows):
            try:
                yield owner_name(get(rec), policy.owner_field)
            except (BadRecord, TypeError):
                continue
    return run


def _smallest_of(rules_args: tuple, ghosts_bc: Any, position: str) -> Callable:
    def run(rows: Iterable) -> Iterator[tuple[str, list[int]]]:
        rules, ghosts = _rules(*rules_args), _Ghosts(ghosts_bc.value, position)
        ranks = SmallestRanks(rules.selection.max_per_owner)
        for _, rec, pos in _records(rows):
            try:
                r = rank_record(rec, rules, pos)
            except BadRecord:
                continue
            if rules.selection.admits(r.digest):
                ranks.offer(r.owner, rank_of(r.digest), lambda: eligible(r, ghosts))
        for owner, h in ranks.heaps.items():
            yield owner, sorted(-x for x in h)
    return run


def _tag_partition(rules_args: tuple, ghosts_bc: Any, position: str, text_index: int, label: str) -> Callable:
    def run(rows: Iterable) -> Iterator[tuple[tuple, tuple | None, str, str]]:
        rules, ghosts = _rules(*rules_args), _Ghosts(ghosts_bc.value, position)
        policy = rules.policy
        for row, rec, pos in _records(rows):
            values = tuple(row)
            try:
                rt = tag_record(rec, ghosts, rules, pos)
            except BadRecord as e:
                yield values, None, "bad", f"row {pos}: {e}"
                continue
            if rt.tag.status != TAGGED:
                yield values, None, rt.tag.status, ""
                continue
            doc = f"{label}:{policy.id_field}={rt.record_id}" if policy.id_field else f"{label}:row {pos}"
            new = values[:text_index] + (rt.tag.new_text,) + values[text_index + 1:]
            yield new, rt.tag.insertion(rt.ghost.identifier_id, doc, policy.position), TAGGED, ""
    return run


def _thresholds(indexed: Any, rules_args: tuple, ghosts_bc: Any, position: str, n: int) -> dict[str, int]:
    merged = indexed.mapPartitions(_smallest_of(rules_args, ghosts_bc, position)) \
        .reduceByKey(lambda a, b: sorted(a + b)[:n]).collectAsMap()
    return {owner: ranks[-1] for owner, ranks in merged.items() if ranks}


def tag_dataframe(df: Any, ledger: Any, opts: JsonlOptions, label: str,
                  check_ghost: Callable[[Any], None] | None = None) -> tuple[Any, Any, dict]:
    """(tagged DataFrame, manifest DataFrame, run facts) for `df`; nothing is written yet. The tagged
    rows keep df's schema and order; `label` names the input in the ledger's document names."""
    from pyspark.sql import types as T

    wordlist = opts.validate()
    policy = opts.policy()
    if policy.text_field not in df.columns:
        raise InputError(f"{label}: no top-level column {policy.text_field!r} (the text field must be one)")
    spark = df.sparkSession
    indexed = df.rdd.zipWithIndex()
    owners = sorted(set(indexed.mapPartitions(_owners_of(policy)).distinct().collect()))
    table, new_ids = {}, 0
    for owner in owners:  # the ledger is the source of truth: identifiers are drawn here, once
        ident, new = owner_identifier(ledger, owner, opts, wordlist)
        new_ids += new
        if check_ghost is not None:
            check_ghost(ident)
        table[owner] = (ident.id, ident.text)
    ghosts_bc = spark.sparkContext.broadcast(table)
    sel = job_selection(ledger, opts)
    rules_args = (policy, sel.key.secret, sel.key.key_id, sel.max_per_owner, sel.fraction)
    if sel.needs_first_pass:
        sel.thresholds = _thresholds(indexed, rules_args, ghosts_bc, policy.position, sel.max_per_owner)
    text_index = df.columns.index(policy.text_field)
    tagged = indexed.mapPartitions(_tag_partition(rules_args + (sel.thresholds,), ghosts_bc, policy.position,
                                                  text_index, label)).cache()
    manifest_schema = T.StructType([T.StructField(c, T.LongType() if c == "offset" else T.StringType(), False)
                                    for c in ("identifier_id", "document", "sha256_before", "sha256_after",
                                              "offset", "strategy")])
    out_df = spark.createDataFrame(tagged.map(lambda t: t[0]), df.schema)
    man_df = spark.createDataFrame(tagged.filter(lambda t: t[1] is not None).map(lambda t: t[1]), manifest_schema)
    facts = {"tagged": tagged, "owners": len(owners), "new_identifiers": new_ids, "selection": sel.rule()}
    return out_df, man_df, facts


def _counts(tagged: Any, skip_bad: bool) -> dict[str, int]:
    by = tagged.map(lambda t: t[2]).countByValue()
    counts = {"records": sum(v for k, v in by.items() if k != "bad"), "inserted": by.get(TAGGED, 0),
              "already_tagged": by.get("already-tagged", 0), "no_boundary": by.get(NO_BOUNDARY, 0),
              "not_selected": by.get("not-selected", 0), "bad": by.get("bad", 0)}
    if counts["bad"] and not skip_bad:
        first = tagged.filter(lambda t: t[2] == "bad").map(lambda t: t[3]).first()
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
