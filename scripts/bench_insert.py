#!/usr/bin/env python
"""Throughput of `tag-jsonl` against a plain read-parse-serialise-write loop (same JSON library).

Generates a JSONL corpus of --size-mb (default 100 MB) in a temp dir with random-ish sentences and
several owners, then for each case times (1) the baseline loop `json.loads` + `json.dumps` + write +
fsync over the whole file and (2) the real tag-jsonl code path (ghostsent.tagging.tag_jsonl with a real
SQLite ledger, checkpoints and fsyncs) over the same file. Both use the stdlib json module. Each
measurement is the best of --repeat runs, and the baseline is rerun right before each case so that
both sides see the same machine load. Prints MB/s for both, the ratio and whether it meets the goal
(>= 0.7x).

Cases (share of records that get a ghost, via --max-per-owner as the CLI takes it):
  none   --max-per-owner 0         every line parsed and copied, nothing inserted
  2.7%   --max-per-owner ~ 2.7 % of an owner's records
  27%    --max-per-owner ~ 27 % of an owner's records
  all    neither --max-per-owner nor --fraction: tag-jsonl's default, every record tagged

With --formats jsonl,parquet,csv the same corpus is also converted to Parquet and CSV (pyarrow) and
each case timed there too: the baseline is then that format's plain per-record loop (read the table,
`to_pylist`, `Table.from_pylist` with the same schema, write, fsync) against `ghostsent tag` (tag_table:
the same rules, ledger and atomic output). `--workers` applies to JSONL only.

With --workers 1,2 each case is also run with `--workers 2` and its speed-up over one process printed
(goal: >= 1.7x on 2 cores; the output and ledger are the same, tests/test_tagging.py).

    python scripts/bench_insert.py [--size-mb 100] [--owners 50] [--repeat 2] [--cases none,2.7%,27%,all]
                                   [--workers 1,2] [--formats jsonl,parquet,csv]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which "
         "but have an they you were her she there been one all we their has would when if so no will "
         "data model river garden quantum lantern harbour violet engine meadow signal copper thunder").split()

CASES = {"none": 0.0, "2.7%": 0.027, "27%": 0.27, "all": None}
GOAL = 0.7
CLOCK = time.perf_counter  # --clock cpu: time.process_time (one process; steadier on a loaded machine)
WORKERS_GOAL = 1.7


def make_corpus(path: Path, size_mb: float, owners: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    target = int(size_mb * 1_000_000)
    n = 0
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            sents = []
            for _ in range(rng.randint(3, 12)):
                ws = [rng.choice(WORDS) for _ in range(rng.randint(5, 20))]
                sents.append(" ".join(ws).capitalize() + rng.choice([".", ".", ".", "!", "?"]))
            rec = {"id": f"doc-{n}", "author": f"user{rng.randrange(owners)}", "lang": "en",
                   "body": " ".join(sents), "meta": {"source": "bench", "n": n}}
            line = json.dumps(rec) + "\n"
            f.write(line)
            written += len(line)
            n += 1
    return n


def baseline(inp: Path, out: Path) -> float:
    """The practical limit: read, parse, serialise and write every line, then fsync (stdlib json)."""
    t0 = CLOCK()
    loads, dumps = json.loads, json.dumps
    with open(inp, "rb") as fin, open(out, "wb") as fout:
        for raw in fin:
            obj = loads(raw)
            fout.write(dumps(obj, ensure_ascii=True).encode("utf-8") + b"\n")
        fout.flush()
        os.fsync(fout.fileno())
    dt = CLOCK() - t0
    out.unlink()
    return dt


def to_table_format(inp: Path, fmt: str) -> Path:
    """The JSONL corpus as a Parquet or CSV file (nested `meta` flattened to text for CSV)."""
    import pyarrow as pa

    from ghostsent.tagging.tables import write_table

    rows = [json.loads(line) for line in inp.open("rb")]
    if fmt == "csv":
        rows = [{**r, "meta": json.dumps(r["meta"])} for r in rows]
    path = inp.with_suffix("." + fmt)
    path.write_bytes(write_table(pa.Table.from_pylist(rows), fmt))
    return path


def baseline_table(inp: Path, out: Path, fmt: str) -> float:
    """A table format's plain per-record loop: read, rows to Python and back (same schema), write, fsync."""
    import pyarrow as pa

    from ghostsent.tagging.tables import read_table, write_table

    t0 = CLOCK()
    table = read_table(str(inp), fmt)
    data = write_table(pa.Table.from_pylist(table.to_pylist(), schema=table.schema), fmt)
    with open(out, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    dt = CLOCK() - t0
    out.unlink()
    return dt


def real(inp: Path, out: Path, ledger_path: Path, max_per_owner: int | None, workers: int = 1,
         fmt: str = "jsonl") -> tuple[float, dict]:
    """tag-jsonl as the CLI runs it, into a fresh ledger (so identifier creation is included)."""
    from ghostsent.ledger import Ledger
    from ghostsent.tagging import JsonlOptions, tag_jsonl
    from ghostsent.tagging.tables import tag_table

    for p in (out, ledger_path, Path(str(ledger_path) + "-wal"), Path(str(ledger_path) + "-shm")):
        if p.exists():
            p.unlink()
    opts = JsonlOptions(text_field="body", owner_field="author", max_per_owner=max_per_owner, workers=workers)
    with Ledger(ledger_path) as led:
        t0 = CLOCK()
        summary = (tag_jsonl(led, str(inp), str(out), opts) if fmt == "jsonl"
                   else tag_table(led, str(inp), str(out), opts, fmt))
        dt = CLOCK() - t0
    out.unlink()
    return dt, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=100.0)
    ap.add_argument("--owners", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=2, help="Best of N runs for each side (default 2).")
    ap.add_argument("--cases", default=",".join(CASES), help=f"Comma-separated, from {', '.join(CASES)}.")
    ap.add_argument("--dir", default=None, help="Work here instead of a fresh temp dir.")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this process's CPU seconds (steadier under load; --workers 1 only).")
    ap.add_argument("--formats", default="jsonl", help="Comma-separated, from jsonl, parquet, csv.")
    ap.add_argument("--workers", default="1", help="Comma-separated worker counts to time (the first is the reference).")
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.clock == "cpu":
        if args.workers != "1":
            ap.error("--clock cpu counts this process only; use it with --workers 1")
        global CLOCK
        CLOCK = time.process_time
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        d = Path(d)
        inp = d / "corpus.jsonl"
        t0 = time.perf_counter()
        n = make_corpus(inp, args.size_mb, args.owners)
        mb = inp.stat().st_size / 1e6
        print(f"corpus: {n} records, {mb:.1f} MB ({inp.stat().st_size} bytes), {args.owners} owners "
              f"(generated in {time.perf_counter() - t0:.1f} s); best of {args.repeat} per side; "
              f"stdlib json on both sides; {args.clock} clock", flush=True)
        with open(inp, "rb") as f:  # warm the page cache so neither side pays the first read
            while f.read(1 << 24):
                pass
        per_owner = n / args.owners
        for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
            results += run_format(fmt, inp, d, cases, cap_for=lambda share: None if share is None
                                  else round(share * per_owner), n=n, args=args)
    print("summary: " + "; ".join(f"{c} {r:.2f}x {'pass' if ok else 'FAIL'}" for c, r, ok in results))
    return 0


def run_format(fmt: str, corpus: Path, d: Path, cases: list[str], cap_for, n: int, args) -> list:
    """Every case in one format: the baseline rerun before each, then tagging (best of --repeat each)."""
    inp = corpus if fmt == "jsonl" else to_table_format(corpus, fmt)
    mb = inp.stat().st_size / 1e6
    if fmt != "jsonl":
        print(f"[{fmt}] {inp.stat().st_size} bytes; baseline: read, to_pylist, from_pylist, write", flush=True)
    results = []
    workers = [int(x) for x in args.workers.split(",")] if fmt == "jsonl" else [1]
    for case in cases:
        cap = cap_for(CASES[case])
        if fmt == "jsonl":
            tb = min(baseline(inp, d / "base.jsonl") for _ in range(args.repeat))
        else:
            tb = min(baseline_table(inp, d / f"base.{fmt}", fmt) for _ in range(args.repeat))
        per_w = {}
        for w in workers:
            runs = [real(inp, d / f"tagged.{fmt}", d / "ledger.db", cap, w, fmt) for _ in range(args.repeat)]
            per_w[w] = min(runs, key=lambda r: r[0])
        ratio = report(fmt, case, cap, tb, per_w, mb, n)
        results.append((f"{fmt} {case}", ratio, ratio >= GOAL))
    return results


def report(fmt: str, case: str, cap: int | None, tb: float, per_w: dict, mb: float, n: int) -> float:
    """Print one case's line (and the workers' speed-ups); return the single-process ratio."""
    w0 = min(per_w)
    tr, summary = per_w[w0]
    ratio = tb / tr
    ok = ratio >= GOAL
    setting = "no cap (default)" if cap is None else f"--max-per-owner {cap}"
    print(f"[{fmt} {case:>4}] {setting}: {summary['inserted']} insertions "
          f"({100 * summary['inserted'] / n:.1f} % of records)\n"
          f"       baseline {mb / tb:6.1f} MB/s ({tb:.2f} s)   ghostsent {mb / tr:6.1f} MB/s ({tr:.2f} s)   "
          f"ratio {ratio:.2f}x  {'PASS' if ok else 'FAIL'} (goal >= {GOAL}x)", flush=True)
    for w, (tw, _) in sorted(per_w.items()):
        if w != w0:
            print(f"       --workers {w}: {mb / tw:6.1f} MB/s ({tw:.2f} s)  {tr / tw:.2f}x one process, "
                  f"{tb / tw:.2f}x baseline  ({'PASS' if tr / tw >= WORKERS_GOAL else 'FAIL'} goal >= "
                  f"{WORKERS_GOAL}x)", flush=True)
    return ratio


if __name__ == "__main__":
    sys.exit(main())
