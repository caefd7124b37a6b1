"""`--workers N`: N processes tag chunks of lines end to end; the main process only reads, writes, adds up
and records.

A chunk is a run of consecutive input lines, sent as ONE bytes object (no per-line pickling). A worker
splits it into lines, runs jsonl.tag_line and jsonl.account on each (parse, select, place, splice, count:
everything one process does per line) and returns a ChunkResult: the chunk's output bytes, its tallies,
its insertion rows in order and its bad lines. The main process keeps everything that makes a run safe,
per chunk instead of per line: it reads the input (and hashes it for --resume), writes each chunk's
output in input order, adds up the tallies, and commits each checkpoint with its insertions in ONE
transaction, exactly as with one process. Chunks end at every checkpoint boundary, so checkpoints fall on
the same lines as with one process; at most 2N chunks are in flight (bounded memory). Output bytes go
back through the pool's pipe rather than into part files, so a killed run leaves no stray files: OUT.partial
and the checkpoint are the only state, as with one process.

With --max-per-owner, the first pass (each line's rank and owner) runs in the workers too; the main
process then walks each owner's records in rank order (jsonl.JsonlTagger._walk) and sends each chunk the
owners of its lines that the rule does not choose (copied as they are); the workers tag the other lines
with a rule that chooses every record, which for those lines is the job's rule. Lines past the first
pass's end (the input grew) get the job's thresholds with their chunk.

A worker draws a new owner's identifier in the ledger itself (its own connection; BEGIN IMMEDIATE makes
get-or-create safe across processes), so the output, the insertions and the identifiers' words are the
same as with one process; only which process drew an identifier differs. Processes are started with
"spawn": nothing of the main process's open ledger or files is inherited.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import os
import signal
from multiprocessing import popen_spawn_posix
from array import array
from collections import deque
from itertools import islice
from typing import Any, Iterator, NamedTuple

from ghostsent.errors import WorkerDied

CHUNK = 2000  # lines; a chunk also ends at each checkpoint boundary
_STATE: dict[str, Any] = {}
_COUNTS = ("records", "inserted", "already_tagged", "no_boundary", "not_selected", "blank")


class ChunkResult(NamedTuple):
    out: bytes                        # the chunk's output lines
    counts: dict[str, int]            # added to Checkpoint.counts
    owners: dict[str, list[int]]      # owner -> [records, ghosts carried], added to Checkpoint.owners
    rows: list[tuple]                 # insertion rows, in line order
    bad: list[tuple[int, str]]        # (line number, reason) of bad lines, in order
    new_identifiers: int


class ChunkState(NamedTuple):
    """What tagging a chunk needs in a process: its owners' ghosts, the job's line rules, and the same
    rules choosing every record (for --max-per-owner chunks, whose lines the main process pre-sorts)."""
    ghosts: Any
    lr: Any
    every: Any

    @classmethod
    def of(cls, ghosts: Any, lr: Any) -> "ChunkState":
        from ghostsent.tagging.core import RecordRules
        from ghostsent.tagging.jsonl import LineRules
        from ghostsent.tagging.selection import Selection

        every = LineRules(RecordRules(lr.rules.policy, Selection(lr.rules.selection.key)), lr.label, lr.position)
        return cls(ghosts, lr, every)


def _init(ledger_location: str, timeout: float, opts: Any, lr: Any, wordlist: Any, check_ghost: Any) -> None:
    """Open the worker's ledger connection. A failure is kept and raised by the first chunk: an
    initializer that raises makes multiprocessing.Pool start workers again forever."""
    # Ctrl-C reaches the whole process group: the main process handles it (and terminates the pool);
    # a worker stopping on its own could leave a half-sent result behind
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from ghostsent.ledger import open_ledger
        from ghostsent.tagging.jsonl import LedgerGhosts

        led = open_ledger(ledger_location, timeout=timeout)
        # a worker's ghosts: drawn or read in its own ledger connection, checked like the main process's
        _STATE["state"] = ChunkState.of(LedgerGhosts(led, opts, wordlist, check_ghost, defer_sync=True), lr)
    except Exception as e:  # noqa: BLE001 - re-raised in the chunk functions, in the main process
        _STATE["error"] = e


def _state() -> ChunkState:
    if "error" in _STATE:
        raise _STATE["error"]
    return _STATE["state"]


def _lines(blob: bytes) -> list[bytes]:
    """The lines of a chunk as iterating the file gave them (each ends with b"\\n" but the file's last)."""
    parts = blob.split(b"\n")
    last = parts.pop()
    lines = [p + b"\n" for p in parts]
    if last:
        lines.append(last)
    return lines


def _rank_chunk(*args: Any) -> tuple[bytes, list]:
    return rank_chunk(_state(), *args)


def rank_chunk(st: ChunkState, blob: bytes, lineno: int) -> tuple[bytes, list]:
    """The first pass over a chunk: each line's rank (array "Q" bytes) and owner (None: blank/unreadable)."""
    from ghostsent.tagging.jsonl import first_pass_record
    from ghostsent.tagging.selection import rank_of

    rules = st.lr.rules
    ranks, owners = array("Q"), []
    for raw in _lines(blob):
        lineno += 1
        r = first_pass_record(raw, rules, lineno)
        ranks.append(0 if r is None else rank_of(r.digest))
        owners.append(None if r is None else r.owner)
    return ranks.tobytes(), owners


def _tag_chunk(*args: Any) -> "ChunkResult":
    return tag_chunk(_state(), *args)


def tag_chunk(st: ChunkState, blob: bytes, lineno: int, in_offset: int, not_chosen: list | None,
              past: tuple[int, dict] | None) -> ChunkResult:
    """tag_line and account for each line of a chunk. `not_chosen` (--max-per-owner): per line, the
    owner of a record the rule does not choose (copied), or None (tagged by a rule choosing every
    record); `past`: (lines the first pass read, the job's thresholds) when the chunk reaches past them."""
    from ghostsent.tagging.jsonl import NOT_SELECTED, _BadLine, account, tag_line

    ghosts, lr = st.ghosts, st.lr
    first_end, job = (past[0], _with_thresholds(lr, past[1])) if past is not None else (None, lr)
    if not_chosen is not None:
        lr = st.every
    before = ghosts.new
    counts = dict.fromkeys(_COUNTS, 0)
    owners: dict[str, list[int]] = {}
    rows: list[tuple] = []
    bad: list[tuple[int, str]] = []
    outs = []
    for i, raw in enumerate(_lines(blob)):
        lineno += 1
        in_offset += len(raw)
        owner = not_chosen[i] if not_chosen is not None else None
        res = ((raw, NOT_SELECTED, owner, None, None, False) if owner is not None
               else tag_line(raw, lineno, in_offset, ghosts, job if first_end is not None and lineno > first_end else lr))
        try:
            outs.append(account(raw, res, counts, owners, rows))
        except _BadLine as e:
            bad.append((lineno, str(e)))
            outs.append(raw)
    return ChunkResult(b"".join(outs), counts, owners, rows, bad, ghosts.new - before)


def _with_thresholds(lr: Any, thresholds: dict) -> Any:
    """The job's LineRules with the first pass's thresholds (for lines the first pass did not see)."""
    import dataclasses

    from ghostsent.tagging.core import RecordRules

    sel = dataclasses.replace(lr.rules.selection, thresholds=thresholds)
    return dataclasses.replace(lr, rules=RecordRules(lr.rules.policy, sel))


class Workers(NamedTuple):
    """The N taggers of a run: N - 1 worker processes and the main process itself (`local`)."""
    pool: Any
    n: int
    local: ChunkState
    processes: tuple = ()   # the pool's processes as started: none of them may end before the run does

    def died(self) -> int | None:
        """The exit code of a worker process that has ended (-9: killed by SIGKILL), else None."""
        return next((p.exitcode for p in self.processes if p.exitcode is not None), None)


POLL_S = 0.2  # how often a wait for a chunk checks that the worker processes are alive


def _result(workers: Workers, fut: Any) -> Any:
    """A chunk's result, or WorkerDied as soon as a worker process has ended. multiprocessing.Pool
    replaces a dead worker but loses the chunk it held, so waiting on that chunk would never end: a
    worker killed by the out-of-memory killer or `kill -9` must stop the run (the main process then
    cleans up as for any failure: the last checkpoint stays, resumable), not hang it."""
    while not fut.ready():
        fut.wait(POLL_S)
        code = workers.died()
        if code is not None and not fut.ready():
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            raise WorkerDied(f"a tagging worker process ended during the run ({how}; e.g. the out-of-memory "
                             "killer); the run stopped")
    return fut.get()


@contextlib.contextmanager
def worker_pool(tagger: Any) -> Iterator[Workers]:
    """tagger.opts.workers taggers for both passes: N - 1 processes (terminated on the way out) and this
    one, which tags a chunk whenever it would otherwise wait (see _in_order)."""
    from ghostsent.tagging.jsonl import LedgerGhosts, LineRules

    led, opts = tagger.ledger, tagger.opts
    lr = LineRules(tagger.rules, tagger.paths.in_label, opts.position)
    local = ChunkState.of(LedgerGhosts(led, opts, tagger.wordlist, tagger.check_ghost, defer_sync=True), lr)
    args = (str(led.path), getattr(led, "timeout", 30.0), opts, lr, tagger.wordlist, tagger.check_ghost)
    pool = _QuietSpawn().Pool(opts.workers - 1, initializer=_init, initargs=args)
    # Pool keeps its processes in a private list; a snapshot at start is what died() watches
    processes = tuple(getattr(pool, "_pool", ()))
    try:
        yield Workers(pool, opts.workers, local, processes)
    finally:
        _stop(pool, processes)


STOP_S = 10.0  # how long the pool's own shutdown may take before its processes are killed


def _stop(pool: Any, processes: tuple) -> None:
    """Pool.terminate(), bounded. In CPython 3.11 it can wait forever for the pool's task-handler thread,
    found blocked on the task queue's write lock (about 1 run in 4 of tests/test_tagging.py's
    failing-initializer test, after the run's error was already raised: the run hung instead of
    reporting it). Every result the run needs has arrived by now, so after STOP_S the worker processes
    are killed and the run ends with its own outcome; the stuck thread is a daemon and the pool's
    finaliser has run, so neither blocks the interpreter's exit."""
    import threading

    stopper = threading.Thread(target=pool.terminate, name="ghostsent-pool-stop", daemon=True)
    stopper.start()
    stopper.join(STOP_S)
    if stopper.is_alive():
        for p in processes:
            if p.exitcode is None:
                p.kill()


class _QuietPopen(popen_spawn_posix.Popen):
    def _launch(self, process_obj: Any) -> None:
        with _quiet_stderr():
            super()._launch(process_obj)


class _QuietProcess(multiprocessing.context.SpawnProcess):
    _start_method = "spawn"

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _QuietPopen(process_obj)


class _QuietSpawn(multiprocessing.context.SpawnContext):
    """"spawn", with every process started (workers, and any the pool starts again later) on a
    standard error of /dev/null (_quiet_stderr)."""
    Process = _QuietProcess


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Standard error on /dev/null while a process is started (it inherits fd 2). Their errors come back to the main process as
    exceptions, which it reports in one line; what they could print themselves is only noise after the
    main process was killed (a worker still starting reads a cut-off pickle, multiprocessing's resource
    tracker lists its semaphores), and a killed run must show no traceback."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to protect
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _in_order(workers: Workers, calls: Iterator[tuple[Any, Any, tuple]]) -> Iterator[tuple[tuple, Any]]:
    """(args, result) for each (worker function, local function, args) of `calls`, in order. Up to
    2(N - 1) calls are in flight in the worker processes; whenever the oldest is not finished yet, this
    process runs the next call itself instead of waiting (while starting, the processes are still
    importing, and this one tags meanwhile), up to 4N results held at once (bounded memory)."""
    queue: deque = deque()  # (args, future or None, local result)
    in_flight, limit, cap = 0, 2 * (workers.n - 1), 4 * workers.n
    calls = iter(calls)
    more = True
    while more or queue:
        while more and in_flight < limit:
            call = next(calls, None)
            if call is None:
                more = False
                break
            queue.append((call[2], workers.pool.apply_async(call[0], call[2]), None))
            in_flight += 1
        if queue and (queue[0][1] is None or queue[0][1].ready() or not more or len(queue) >= cap):
            args, fut, res = queue.popleft()
            if fut is not None:
                res = _result(workers, fut)
                in_flight -= 1
            yield args, res
            continue
        call = next(calls, None) if more else None
        if call is None:
            more = False
            continue
        queue.append((call[2], None, call[1](workers.local, *call[2])))


def _blobs(fin: Any, sizes: Iterator[int]) -> Iterator[tuple[bytes, int]]:
    """(chunk bytes, number of lines) of consecutive lines of `fin`, each chunk at most the next size."""
    for size in sizes:
        lines = list(islice(fin, size))
        if not lines:
            return
        yield b"".join(lines), len(lines)


def parallel_first_pass(workers: Workers, fin: Any, seen: Any) -> None:
    """Fill jsonl._FirstPass `seen` with every line of `fin` (read from its start), ranked by the taggers."""
    def calls() -> Iterator[tuple[Any, Any, tuple]]:
        lineno = 0
        for blob, n in _blobs(fin, iter(lambda: CHUNK, None)):
            yield _rank_chunk, rank_chunk, (blob, lineno)
            lineno += n

    for (blob, _), (ranks, owners) in _in_order(workers, calls()):
        lengths = map(len, _lines(blob))
        r = array("Q")
        r.frombytes(ranks)
        for owner, rank, length in zip(owners, r, lengths):
            seen.add(owner, rank, length)


def parallel_loop(tagger: Any, workers: Workers) -> None:
    """JsonlTagger._loop with the lines tagged in the workers, chunk by chunk, in input order."""
    opts, cp = tagger.opts, tagger.cp
    every = opts.checkpoint_every if tagger.resumable else CHUNK
    start = cp.lines_done

    def sizes() -> Iterator[int]:  # chunks end at every checkpoint boundary (lines start + k * every)
        done = 0
        while True:
            size = min(CHUNK, every - done % every)
            yield size
            done += size

    def calls() -> Iterator[tuple[Any, Any, tuple]]:
        lineno, in_offset = start, cp.in_offset
        for blob, n in _blobs(tagger.fin, sizes()):
            yield _tag_chunk, tag_chunk, (blob, lineno, in_offset, *_selection_args(tagger, lineno, n))
            lineno += n
            in_offset += len(blob)

    bar = tagger._progress()
    hash_update = tagger.in_hash.update if tagger.resumable else None
    lineno, in_offset, bytes_out = cp.lines_done, cp.in_offset, cp.bytes_out
    since_cp = 0
    try:
        for (blob, *_), res in _in_order(workers, calls()):
            if hash_update is not None:
                hash_update(blob)
            _add_up(tagger, res)
            tagger.fout.write(res.out)
            lineno += _count_lines(blob)
            in_offset += len(blob)
            bytes_out += len(res.out)
            since_cp = (lineno - start) % every
            if since_cp == 0 and tagger.resumable:
                cp.lines_done, cp.in_offset, cp.bytes_out = lineno, in_offset, bytes_out
                tagger._checkpoint()
                if tagger.after_checkpoint is not None:
                    tagger.after_checkpoint(cp.checkpoints)
            bar.update(len(blob))
    finally:
        bar.close()
    cp.lines_done, cp.in_offset, cp.bytes_out = lineno, in_offset, bytes_out


def _count_lines(blob: bytes) -> int:
    return blob.count(b"\n") + (not blob.endswith(b"\n"))


def _selection_args(tagger: Any, lineno: int, n: int) -> tuple[list | None, tuple[int, dict] | None]:
    """For a chunk of n lines after line `lineno`: the owners of the lines the rule does not choose (see
    the module docstring), and (lines the first pass read, the job's thresholds) if the chunk reaches
    past them."""
    if tagger.first is None:
        return None, None
    not_chosen = [tagger._not_chosen(i) for i in range(lineno + 1, lineno + n + 1)]
    first_end = len(tagger.first.owner_of)
    return not_chosen, (first_end, tagger.rules.selection.thresholds) if lineno + n > first_end else None


def _add_up(tagger: Any, res: ChunkResult) -> None:
    """A chunk's tallies into the run's (Checkpoint counts and owners, pending insertions, bad lines)."""
    from ghostsent.tagging.jsonl import _BadLine

    cp = tagger.cp
    for lineno, reason in res.bad:
        tagger._bad(_BadLine(reason), lineno)  # raises InputError at the first one without --skip-bad
    counts = cp.counts
    for k, v in res.counts.items():
        counts[k] += v
    counts["new_identifiers"] += res.new_identifiers
    owners = cp.owners
    for owner, (records, ghosts) in res.owners.items():
        st = owners.get(owner)
        if st is None:
            owners[owner] = [records, ghosts]
        else:
            st[0] += records
            st[1] += ghosts
    tagger.pending.extend(res.rows)
