"""`--workers N`: tag_line in N processes, results back in input order.

The main process still does everything that makes a run safe: it reads the input (and hashes it for
--resume), writes the output, counts, and commits each checkpoint with its insertions. Workers only
compute each line's result (jsonl.tag_line), in chunks of CHUNK lines, at most 2N chunks ahead of the
writer (bounded memory). A worker draws a new owner's identifier in the ledger itself (its own
connection; BEGIN IMMEDIATE makes get-or-create safe across processes), so the output, the insertions
and the identifiers' words are the same as with one process; only which process drew an identifier
differs. Processes are started with "spawn": nothing of the parent's open ledger or files is inherited.
"""
from __future__ import annotations

import multiprocessing
from collections import deque
from typing import Any, Iterator


CHUNK = 1000
_STATE: dict[str, Any] = {}


def _init(ledger_location: str, timeout: float, opts: Any, lr: Any, check_ghost: Any) -> None:
    """Open the worker's ledger connection. A failure is kept and raised by the first chunk: an
    initializer that raises makes multiprocessing.Pool start workers again forever."""
    try:
        from ghostsent.ledger import open_ledger
        from ghostsent.tagging.jsonl import LedgerGhosts

        led = open_ledger(ledger_location, timeout=timeout)
        # a worker's ghosts: drawn or read in its own ledger connection, checked like the parent's
        _STATE.update(ghosts=LedgerGhosts(led, opts, opts.validate(), check_ghost), lr=lr)
    except Exception as e:  # noqa: BLE001 - re-raised in _chunk, in the parent
        _STATE["error"] = e


def _chunk(lines: list[bytes], lineno: int, in_offset: int) -> tuple[list[tuple], int]:
    """tag_line for consecutive lines; an unchanged line's bytes are not sent back (None)."""
    from ghostsent.tagging.jsonl import tag_line

    if "error" in _STATE:
        raise _STATE["error"]
    ghosts, lr = _STATE["ghosts"], _STATE["lr"]
    before = ghosts.new
    out = []
    for raw in lines:
        lineno += 1
        in_offset += len(raw)
        res = tag_line(raw, lineno, in_offset, ghosts, lr)
        out.append(res if res[0] is not raw else (None, *res[1:]))
    return out, ghosts.new - before


def _read_chunks(fin: Any, lineno: int, in_offset: int) -> Iterator[tuple[list[bytes], int, int]]:
    lines: list[bytes] = []
    start_line, start_off = lineno, in_offset
    for raw in fin:
        lines.append(raw)
        in_offset += len(raw)
        if len(lines) >= CHUNK:
            yield lines, start_line, start_off
            start_line, start_off, lines = start_line + len(lines), in_offset, []
    if lines:
        yield lines, start_line, start_off


def parallel_results(tagger: Any, lr: Any, lineno: int, in_offset: int) -> Iterator[tuple[bytes, tuple]]:
    """(line, result) for every line of tagger.fin, computed by tagger.opts.workers processes."""
    n = tagger.opts.workers
    ctx = multiprocessing.get_context("spawn")
    led = tagger.ledger
    args = (str(led.path), getattr(led, "timeout", 30.0), tagger.opts, lr, tagger.check_ghost)
    with ctx.Pool(n, initializer=_init, initargs=args) as pool:
        queue: deque = deque()
        for chunk in _read_chunks(tagger.fin, lineno, in_offset):
            queue.append((chunk[0], pool.apply_async(_chunk, chunk)))
            if len(queue) >= 2 * n:
                yield from _drain(tagger, *queue.popleft())
        while queue:
            yield from _drain(tagger, *queue.popleft())


def _drain(tagger: Any, lines: list[bytes], fut: Any) -> Iterator[tuple[bytes, tuple]]:
    results, new = fut.get()
    tagger.cp.counts["new_identifiers"] += new
    for raw, res in zip(lines, results):
        yield raw, (res if res[0] is not None else (raw, *res[1:]))
