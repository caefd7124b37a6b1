#!/usr/bin/env python
"""Rows per second of the Spark engine (`ghostsent tag --engine spark`) on a local Spark.

Generates --rows (default 1,000,000) posts as Parquet (id, author, body, extra columns), then runs the
whole job as the CLI does (owners -> identifiers on the driver, the per-owner threshold pass when
--max-per-owner is set, the tagging map, the tagged table and the manifest written), then merges the
manifest into the ledger. Prints rows/s for the job and for the merge, and the cost per billion records
in core-hours at the measured rate (rows/s divided by the cores Spark used).

    python scripts/bench_spark.py [--rows 1000000] [--owners 10000] [--max-per-owner 3] [--master local[2]]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which "
         "data model river garden quantum lantern harbour violet engine meadow signal copper thunder").split()


def make_corpus(path: Path, rows: int, owners: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    writer = None
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        bodies = []
        for _ in range(n):
            sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))).capitalize() + "."
                     for _ in range(rng.randint(2, 6))]
            bodies.append(" ".join(sents))
        t = pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                      "author": [f"user{rng.randrange(owners)}" for _ in range(n)],
                      "body": bodies, "lang": ["en"] * n})
        writer = writer or pq.ParquetWriter(path, t.schema)
        writer.write_table(t)
    writer.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--owners", type=int, default=10_000)
    ap.add_argument("--max-per-owner", type=int, default=3)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    from ghostsent.ledger import Ledger
    from ghostsent.ledger.manifest import merge_manifest
    from ghostsent.tagging.spark import local_session, tag_spark
    from ghostsent.tagging import JsonlOptions

    cores = int(args.master[6:-1]) if args.master.startswith("local[") and args.master[6:-1].isdigit() else os.cpu_count()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        d = Path(d)
        t0 = time.perf_counter()
        make_corpus(d / "in.parquet", args.rows, args.owners)
        print(f"corpus: {args.rows} rows, {args.owners} owners, {(d / 'in.parquet').stat().st_size / 1e6:.0f} MB "
              f"Parquet ({time.perf_counter() - t0:.0f} s)", flush=True)
        spark = local_session(args.master, "ghostsent-bench")
        opts = JsonlOptions(text_field="body", owner_field="author", id_field="id",
                            max_per_owner=args.max_per_owner)
        with Ledger(d / "l.db") as led:
            t0 = time.perf_counter()
            res = tag_spark(spark, led, str(d / "in.parquet"), str(d / "out"), str(d / "manifest"), opts)
            dt = time.perf_counter() - t0
            t1 = time.perf_counter()
            m = merge_manifest(led, d / "manifest")
            dm = time.perf_counter() - t1
        spark.stop()
    rate = args.rows / dt
    print(f"spark job ({args.master}, {cores} cores): {args.rows} rows in {dt:.1f} s = {rate:,.0f} rows/s "
          f"({rate / cores:,.0f} rows/s per core); {res.counts['inserted']} insertions, "
          f"{res.new_identifiers} new identifiers")
    print(f"ledger merge: {m.added} rows in {dm:.2f} s = {m.added / max(dm, 1e-9):,.0f} rows/s")
    print(f"cost: 1e9 rows / ({rate / cores:,.0f} rows/s per core) = {1e9 / (rate / cores) / 3600:,.0f} core-hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
