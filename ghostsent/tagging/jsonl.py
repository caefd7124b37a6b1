"""Tag a JSONL corpus (one record a line) with each owner's ghost: streaming, checkpointed, resumable.

Invariants (docs/insertion.md lists the tests that hold each one):

* No input byte is lost: the input must not be OUT, OUT.partial, OUT.lock or the ledger under any name
  or link; OUT is written as OUT.partial under an exclusive lock on OUT.lock and renamed at the end.
* The ledger and the output never disagree: every `checkpoint_every` lines the output is fsynced and, in
  ONE transaction, that chunk's insertions and the Checkpoint (lines done, output bytes, input offset,
  hash of the whole input read so far, per-owner counts) are committed. A crash leaves a checkpoint that
  matches exactly what the ledger holds, and `resume` truncates OUT.partial back to it.
* Only the inserted span changes: a tagged line is the input line with the escaped span spliced into
  the text field's string literal (splice.py), so numbers, duplicate keys, key order and escapes stay.

The rules for a record (which owner, which records, where the ghost goes) are tagging.core.tag_record;
this module handles lines, bytes, checkpoints and files.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from ghostsent.errors import GhostsentError, InputError, OutputClosedError, OutputError
from ghostsent.fsio import create_exclusive, exclusive_lock, fsync_dir, same_file
from ghostsent.insert import DEFAULT_POSITION
from ghostsent.names import path_label
from ghostsent.tagging.core import (ALREADY_TAGGED, NOT_SELECTED, TAGGED, BadRecord, OwnerGhost, RecordRules,
                                    TagPolicy, eligible,
                                    rank_record, sha256_hex, tag_record)
from ghostsent.tagging.codecs import codec_of, compress_into, open_read
from ghostsent.tagging.selection import RULE_VERSION, Selection, SelectionKey, SmallestRanks, rank_of
from ghostsent.tagging.splice import guess_is_proven, splice

CHECKPOINT_EVERY = 5000
MAX_LISTED_BAD = 1000
CHECKPOINT_VERSION = 3  # 3: keyed-hash selection (no per-owner counts); 2: whole-prefix input hash
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
_RAW_DECODE = json.JSONDecoder().raw_decode  # the decoder json.loads uses, same settings


@dataclass
class JsonlOptions:
    text_field: str = "text"
    owner_field: str = "owner"
    id_field: str | None = None
    max_per_owner: int | None = None
    fraction: float | None = None
    words: int = 12
    wordlist: str = "en"
    template: str | None = None
    position: str = DEFAULT_POSITION
    skip_bad: bool = False
    resume: bool = False
    seed: int | None = None
    checkpoint_every: int = CHECKPOINT_EVERY
    progress: bool = False
    workers: int = 1            # processes tagging lines (the output and ledger are the same for any N)

    def policy(self) -> TagPolicy:
        return TagPolicy(self.text_field, self.owner_field, self.id_field, self.position, self.max_per_owner,
                         self.fraction)

    def settings(self) -> dict:
        """What must not change between a run and its resume."""
        keys = ("text_field", "owner_field", "id_field", "max_per_owner", "fraction", "words", "wordlist",
                "template", "position", "seed")
        return {k: getattr(self, k) for k in keys} | {"selection": RULE_VERSION}

    def validate(self) -> Any:
        """Check every option before any input is read, and return the word list for new identifiers.
        The template and word list are checked even if every owner turns out to have an identifier:
        an option that is wrong must fail the same way on every corpus."""
        from ghostsent.passphrase import resolve_template
        from ghostsent.wordlists import load_wordlist

        self.policy().validate()
        if self.checkpoint_every < 1:
            raise InputError("the checkpoint interval must be >= 1")
        if self.workers < 1:
            raise InputError("the number of workers must be >= 1")
        if self.words < 1:
            raise InputError(f"a passphrase needs at least 1 word (got {self.words})")
        resolve_template(self.template)
        return load_wordlist(self.wordlist)


@dataclass
class Checkpoint:
    """A run's progress as the ledger keeps it: committed together with the insertions of the lines it
    counts, so after any crash it describes exactly OUT.partial's first `bytes_out` bytes."""

    in_path: str
    in_label: str
    settings: dict
    lines_done: int = 0
    bytes_out: int = 0
    in_offset: int = 0
    in_sha256: str | None = None        # SHA-256 of the input's first in_offset bytes (version 2)
    in_tail_sha256: str | None = None   # version 1: of the 4 KiB before in_offset only
    owners: dict[str, list[int]] = field(default_factory=dict)    # owner -> [records, ghosts carried]
    counts: dict[str, int] = field(default_factory=lambda: dict(
        records=0, inserted=0, already_tagged=0, no_boundary=0, not_selected=0, blank=0, bad=0, new_identifiers=0))
    bad: list[dict] = field(default_factory=list)
    checkpoints: int = 0
    finished: bool = False
    summary: dict | None = None
    version: int = CHECKPOINT_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("in_tail_sha256", "summary"):
            if d[k] is None:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Checkpoint":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def _real_out(out_path: str) -> str:
    """OUT with its folder's links resolved: two spellings of one folder share one checkpoint."""
    a = os.path.abspath(out_path)
    return os.path.join(os.path.realpath(os.path.dirname(a)), os.path.basename(a))


def checkpoint_key(out_path: str) -> str:
    return "tag-jsonl:" + path_label(_real_out(out_path))


def _legacy_checkpoint_key(out_path: str) -> str:
    """The key ghostsent used before checkpoints were keyed by real path (a resume finds both)."""
    return "tag-jsonl:" + path_label(os.path.abspath(out_path))


def _tail_hash(f: IO[bytes], end: int) -> str:
    """SHA-256 of the 4 KiB of input before `end` (version 1 checkpoints only)."""
    start = max(0, end - 4096)
    f.seek(start)
    return sha256_hex(f.read(end - start))


@dataclass
class _JsonlPaths:
    """Where a run reads and writes. OUT.partial, OUT.lock and the checkpoint key exist only when OUT is
    a file (not "-")."""
    inp: str
    out: str
    in_label: str
    partial: str | None = None
    lock: str | None = None
    key: str | None = None


def _jsonl_paths(ledger: Any, in_path: str, out_path: str) -> _JsonlPaths:
    """Check the run's files against each other by identity before anything is touched: the input must
    not be OUT, OUT.partial or OUT.lock (under any name or link), and none of those may be the ledger."""
    stdin = in_path == "-"
    if not stdin and not os.path.isfile(in_path):
        raise InputError(f"{in_path}: " + ("not a regular file" if os.path.exists(in_path) else "no such file"))
    paths = _JsonlPaths(in_path, out_path, "<stdin>" if stdin else path_label(in_path))
    if out_path == "-":
        return paths
    paths.partial, paths.lock, paths.key = out_path + ".partial", out_path + ".lock", checkpoint_key(out_path)
    for role, p in (("the output", out_path), ("the output's temporary file", paths.partial),
                    ("the output's lock file", paths.lock)):
        if not stdin and same_file(in_path, p):
            raise InputError(f"{in_path}: the input is also {role} {p}; choose another output")
        if same_file(ledger.path, p):
            raise InputError(f"{p}: is the ledger {ledger.path}; choose another output")
    return paths


def tag_jsonl(
    ledger: Any,
    in_path: str,
    out_path: str,
    opts: JsonlOptions,
    after_checkpoint: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    check_ghost: Callable[[Any], None] | None = None,
) -> dict:
    """Stream IN to OUT, inserting each owner's ghost into the records the selection rule picks. See
    docs/insertion.md for resume semantics. `after_checkpoint(n)` is called after the n-th committed
    checkpoint (a test hook for simulated crashes); `check_ghost(identifier)` once per owner before their
    first insertion (raises InputError to refuse a ghost, e.g. one filters drop).

    A second run on the same OUT is refused (OutputError) while this one holds OUT.lock."""
    wordlist = opts.validate()
    paths = _jsonl_paths(ledger, in_path, out_path)
    if opts.resume and (in_path == "-" or out_path == "-"):
        raise InputError("resuming needs a real input and output file (not '-')")
    tagger = JsonlTagger(ledger, paths, opts, wordlist, after_checkpoint, warn, check_ghost)
    if paths.lock is None:
        return tagger.run()
    try:
        Path(paths.lock).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out_path}: cannot create its folder ({e.strerror})") from None
    with exclusive_lock(paths.lock, out_path):
        return tagger.run()


class _BadLine(Exception):
    pass


_UNREAD = 0xFFFFFFFF  # owner index of a blank or unreadable line


class _FirstPass:
    """Per input line: its keyed rank, its owner (an index into `owners`, or _UNREAD) and its byte
    offset: 20 bytes a line."""

    def __init__(self) -> None:
        self.ranks, self.owner_of, self.offsets = array("Q"), array("I"), array("Q")
        self.owners: list[str] = []
        self._index: dict[str, int] = {}
        self.end = 0  # bytes of input read so far

    def add_line(self, r: Any, length: int) -> None:
        """The next line (of `length` bytes): its RankedRecord, or None if blank or unreadable."""
        self.add(None if r is None else r.owner, 0 if r is None else rank_of(r.digest), length)

    def add(self, owner: str | None, rank: int, length: int) -> None:
        self.offsets.append(self.end)
        self.end += length
        if owner is None:
            self.ranks.append(0)
            self.owner_of.append(_UNREAD)
            return
        i = self._index.get(owner)
        if i is None:
            i = self._index[owner] = len(self.owners)
            self.owners.append(owner)
        self.ranks.append(rank)
        self.owner_of.append(i)

    def by_owner(self, cutoff: int) -> dict[int, list[int]]:
        """Line indices of each owner's records whose rank passes the fraction, smallest rank first."""
        groups: dict[int, list[int]] = {}
        for i, (o, rank) in enumerate(zip(self.owner_of, self.ranks)):
            if o != _UNREAD and rank < cutoff:
                groups.setdefault(o, []).append(i)
        for idx in groups.values():
            idx.sort(key=self.ranks.__getitem__)
        return groups


class JsonlTagger:
    """One run over IN: which checkpoint to continue, the line loop, the final commit and rename.
    `self.cp` is the live progress (what the next checkpoint commits)."""

    def __init__(self, ledger: Any, paths: _JsonlPaths, opts: JsonlOptions, wordlist: Any,
                 after_checkpoint: Callable[[int], None] | None, warn: Callable[[str], None] | None,
                 check_ghost: Callable[[Any], None] | None = None) -> None:
        self.ledger, self.paths, self.opts, self.wordlist = ledger, paths, opts, wordlist
        self.policy = opts.policy()
        self.after_checkpoint, self.warn, self.check_ghost = after_checkpoint, warn, check_ghost
        self.t0 = time.perf_counter()
        self.resumable = paths.inp != "-" and paths.out != "-"
        self.cp = Checkpoint(path_label(os.path.abspath(paths.inp)), paths.in_label, opts.settings())
        self.recorded_lines = 0  # lines of OUT.partial whose insertions the ledger holds
        self.resumed_from: int | None = None
        self.pending: list[tuple] = []
        self.in_hash = hashlib.sha256()
        self.ghosts: dict[str, OwnerGhost] = {}
        self.fin: Any = None
        self.fout: Any = None
        self.created_partial = False
        self.total: int | None = None
        self.first: _FirstPass | None = None   # what the first pass read (max_per_owner only)
        self.pool: Any = None                  # --workers processes (parallel.py) during the passes

    # -- which run this is -------------------------------------------------------------------------

    def run(self) -> dict:
        cp = self._existing_checkpoint()
        if cp is not None and cp.finished:
            done = self._complete_finished(cp)
            if done is not None:
                return done
            cp = None
        if cp is not None and cp.lines_done == 0:
            cp = None  # an interrupted start: nothing of it is recorded, so start again
            if os.path.lexists(self.paths.out):
                raise InputError(f"{self.paths.out}: already exists; remove it or choose another output")
            self._remove(self.paths.partial)
        elif cp is None:
            self._refuse_existing_outputs()
        else:
            self._check_resume(cp)
        self.rules = RecordRules(self.policy, self._selection())
        self._open_input(cp)
        try:
            with self._pool() as self.pool:
                self._first_pass()
                self._open_output(cp)
                self._loop()
            self._checkpoint(finished=True)
        except BaseException as exc:
            err = self._failure(exc)
            if err is exc:
                raise
            raise err from None
        return self._finish()

    def _existing_checkpoint(self) -> Checkpoint | None:
        if self.paths.key is None:
            return None
        for key in dict.fromkeys((self.paths.key, _legacy_checkpoint_key(self.paths.out))):
            state = self.ledger.get_checkpoint(key)
            if state is not None:
                self.paths.key = key
                return Checkpoint.from_dict(state)
        return None

    def _complete_finished(self, cp: Checkpoint) -> dict | None:
        """A run whose last checkpoint says finished: everything is recorded, only its rename (or the
        checkpoint's deletion) may be missing. Complete the rename if OUT.partial is that run's output;
        otherwise the checkpoint is stale and is dropped (None: carry on as a new run)."""
        partial, out = self.paths.partial, self.paths.out
        if (os.path.isfile(partial) and not os.path.islink(partial) and not os.path.lexists(out)
                and os.path.getsize(partial) == cp.bytes_out):
            self._rename()
            self.ledger.delete_checkpoint(self.paths.key)
            summary = dict(cp.summary or {})
            summary["note"] = "a previous run had finished; completed its final rename"
            return summary
        self.ledger.delete_checkpoint(self.paths.key)
        return None

    def _refuse_existing_outputs(self) -> None:
        if self.paths.partial is None:
            return
        if os.path.lexists(self.paths.out):
            raise InputError(f"{self.paths.out}: already exists; remove it or choose another output")
        if os.path.lexists(self.paths.partial):
            raise InputError(f"{self.paths.partial}: exists, but {self.ledger.path} has no interrupted run that "
                             f"wrote it; remove it, or use the ledger of the run that did")

    def _check_resume(self, cp: Checkpoint) -> None:
        out, partial = self.paths.out, self.paths.partial
        if not self.opts.resume:
            raise InputError(f"{out}: an interrupted run exists ({cp.lines_done} lines done, kept in {partial}); "
                             f"resume it to continue", hint="resume")
        if cp.settings != self.cp.settings:
            diff = sorted(k for k in self.cp.settings if cp.settings.get(k) != self.cp.settings[k])
            raise InputError(f"resuming with different settings than the interrupted run: {', '.join(diff)}")
        if os.path.lexists(out):
            raise InputError(f"{out}: already exists and the interrupted run would replace it; move it away first")

    # -- selection (selection.py) -----------------------------------------------------------------------

    def _selection(self) -> Selection:
        return job_selection(self.ledger, self.opts)

    def _pool(self) -> Any:
        """--workers processes for both passes (parallel.py), or a context holding None for one process."""
        if self.opts.workers <= 1:
            return contextlib.nullcontext()
        from ghostsent.tagging.parallel import worker_pool
        return worker_pool(self)

    def _first_pass(self) -> None:
        """For max_per_owner: read the whole input once, keeping each line's rank, owner and offset (so
        the tagging pass copies the lines not chosen without parsing them again), then find each owner's
        N smallest eligible ranks (selection.py). A seekable input is walked in rank order afterwards,
        placing only the records that are looked at (N per owner, plus any without a boundary); a
        compressed one keeps bounded heaps as it goes. Lines the rules cannot read are left to the
        tagging pass to report."""
        sel = self.rules.selection
        if not sel.needs_first_pass:
            return
        seen, compressed = _FirstPass(), self.paths.inp != "-" and codec_of(self.paths.inp) is not None
        heaps = SmallestRanks(sel.max_per_owner) if compressed else None
        start = None if compressed else self.fin.tell()
        fin = open_read(self.paths.inp, codec_of(self.paths.inp)) if compressed else self.fin
        if not compressed:
            fin.seek(0)
        pool = self.pool
        if pool is not None and heaps is None:  # --workers: ranks and owners computed in the processes
            from ghostsent.tagging.parallel import parallel_first_pass
            parallel_first_pass(pool, fin, seen)
        else:
            for lineno, raw in enumerate(fin, 1):
                r = first_pass_record(raw, self.rules, lineno)
                seen.add_line(r, len(raw))
                if heaps is not None and r is not None and sel.admits(r.digest):
                    heaps.offer(r.owner, rank_of(r.digest), lambda r=r: eligible(r, self))
        if compressed:
            fin.close()
            sel.thresholds, sel.placed = heaps.thresholds(), heaps.placed()
        else:
            sel.thresholds, sel.placed = self._walk(seen, fin)
            fin.seek(start)
        self.first = seen

    def _walk(self, seen: _FirstPass, fin: Any) -> tuple[dict[str, int], dict]:
        """Each owner's records in rank order, re-read by offset, until N are eligible: the N-th one's
        rank is the owner's threshold, and the placements made on the way are kept for the tagging pass."""
        sel, thresholds, placed = self.rules.selection, {}, {}
        for o, idx in seen.by_owner(sel.cutoff).items():
            got = 0
            for i in idx:
                if got >= sel.max_per_owner:
                    break
                fin.seek(seen.offsets[i])
                try:
                    obj, _ = _parse(fin.readline(), 0)
                    e = eligible(rank_record(obj, self.rules, i + 1), self)
                except (_BadLine, BadRecord, TypeError):
                    raise InputError(f"{self.paths.in_label}, line {i + 1}: changed while it was being read") from None
                if e:
                    got += 1
                    thresholds[seen.owners[o]] = seen.ranks[i]
                    placed[e[0]] = e[1:]
        return thresholds, placed

    def _not_chosen(self, lineno: int) -> str | None:
        """The owner of line `lineno` if the first pass read it as a record its rule does not choose
        (it is copied as it is), else None (tag_line decides)."""
        fp = self.first
        i = lineno - 1
        if fp is None or i >= len(fp.owner_of) or fp.owner_of[i] == _UNREAD:
            return None
        owner = fp.owners[fp.owner_of[i]]
        t = self.rules.selection.thresholds.get(owner)
        return owner if t is None or fp.ranks[i] > t or fp.ranks[i] >= self.rules.selection.cutoff else None

    # -- files -------------------------------------------------------------------------------------

    def _open_input(self, cp: Checkpoint | None) -> None:
        if self.paths.inp == "-":
            self.fin = sys.stdin.buffer
            if self.rules.selection.needs_first_pass:  # two passes: keep a copy of standard input
                self.fin = tempfile.TemporaryFile()
                shutil.copyfileobj(sys.stdin.buffer, self.fin)
                self.fin.seek(0)
            return
        try:
            self.fin = open_read(self.paths.inp, codec_of(self.paths.inp))
        except OSError as e:
            raise InputError(f"{self.paths.inp}: cannot read ({e.strerror})") from None
        self.total = os.path.getsize(self.paths.inp) if codec_of(self.paths.inp) is None else None
        if cp is not None:
            try:
                self._restore(cp)
            except BaseException:
                self.fin.close()
                raise

    def _restore(self, cp: Checkpoint) -> None:
        """Continue from checkpoint `cp`, after checking that the input's first in_offset bytes are the
        ones that run read (the whole prefix is hashed again, not just its tail)."""
        end = cp.in_offset
        h, left = hashlib.sha256(), end
        while left > 0:
            chunk = self.fin.read(min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
        if cp.in_sha256 is not None:
            same = left == 0 and h.hexdigest() == cp.in_sha256
        else:
            same = left == 0 and _tail_hash(self.fin, end) == cp.in_tail_sha256
        if not same:
            raise InputError(f"{self.paths.inp}: input changed since the interrupted run (its first {end} bytes "
                             f"differ); cannot resume")
        self.in_hash = h
        cp.settings, cp.in_path, cp.finished, cp.summary = self.cp.settings, self.cp.in_path, False, None
        cp.version, cp.in_tail_sha256 = CHECKPOINT_VERSION, None
        self.cp = cp
        self.resumed_from = self.recorded_lines = cp.lines_done
        self.paths.in_label = cp.in_label

    def _open_output(self, cp: Checkpoint | None) -> None:
        partial = self.paths.partial
        if partial is None:
            self.fout = tempfile.TemporaryFile()
            return
        if cp is not None:
            try:
                fd = os.open(partial, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as e:
                raise InputError(f"{partial}: cannot reopen it to resume ({e.strerror})") from None
            self.fout = os.fdopen(fd, "r+b")
            if os.fstat(fd).st_size < cp.bytes_out:
                raise InputError(f"{partial}: shorter than the checkpoint; cannot resume (the ledger holds the "
                                 f"insertions of its first {self.recorded_lines} lines)")
            self.fout.truncate(cp.bytes_out)
            self.fout.seek(cp.bytes_out)
            return
        # A fresh run: the checkpoint that names OUT.partial as this run's comes first, so a partial file
        # without one is never ours (and is refused above, never truncated).
        self.ledger.set_checkpoint(self.paths.key, self._state(False))
        fd = create_exclusive(partial)
        self.created_partial = True
        self.fout = os.fdopen(fd, "wb")

    def _remove(self, path: str | None) -> None:
        if path is not None and os.path.lexists(path):
            try:
                os.unlink(path)  # a link is removed, never what it points to
            except OSError as e:
                raise OutputError(f"{path}: cannot remove the stale temporary file ({e.strerror})") from None

    def _rename(self) -> None:
        codec = codec_of(self.paths.out)
        try:
            if codec is not None:  # OUT.partial holds the plain lines (resumable); OUT gets them compressed
                compress_into(self.paths.partial, self.paths.out, codec)
                os.unlink(self.paths.partial)
            else:
                os.replace(self.paths.partial, self.paths.out)
        except OSError as e:
            raise OutputError(f"{self.paths.out}: cannot rename {self.paths.partial} to it ({e.strerror}); the run "
                              f"is recorded as finished: run the same command again to complete it") from None
        fsync_dir(os.path.dirname(os.path.abspath(self.paths.out)))

    # -- checkpoints -------------------------------------------------------------------------------

    def _state(self, finished: bool) -> dict:
        self.cp.in_sha256 = self.in_hash.hexdigest()
        self.cp.finished = finished
        self.cp.summary = self._summary() if finished else None
        return self.cp.to_dict()

    def _checkpoint(self, finished: bool = False) -> None:
        """fsync the output, then commit the pending insertions and the checkpoint in ONE transaction."""
        self.fout.flush()
        os.fsync(self.fout.fileno())
        state = None
        if self.paths.key is not None and (self.resumable or finished):
            if self.resumable:
                self.cp.checkpoints += 1
            state = self._state(finished)
        with self.ledger.transaction():
            self.ledger.add_insertions(self.pending)
            if state is not None:
                self.ledger.set_checkpoint(self.paths.key, state)
            if finished:  # the rule that chose the records, with the secret's id (never the secret)
                self.ledger.add_run("tag", {}, self.cp.settings | {"selection": self.rules.selection.rule()},
                                    {k: v for k, v in self._summary().items() if k != "bad_lines"})
        self.pending.clear()
        if state is not None:
            self.recorded_lines = self.cp.lines_done

    def _summary(self) -> dict:
        return {"input": self.paths.in_label, "output": self.paths.out, "lines": self.cp.lines_done,
                **self.cp.counts, "owners": len(self.cp.owners), "bad_lines": self.cp.bad,
                "selection": self.rules.selection.rule(),
                "resumed_from_line": self.resumed_from, "seconds": round(time.perf_counter() - self.t0, 3)}

    # -- the end ---------------------------------------------------------------------------------------

    def _failure(self, exc: BaseException) -> BaseException:
        """Clean up after a failed run and return what to raise. Before anything is recorded, OUT.partial
        and its start checkpoint go: nothing is left. After, both stay (the ledger describes the file's
        first bytes) and the error says to resume."""
        self._close()
        if isinstance(exc, EOFError) or type(exc).__name__ == "ZstdError":
            exc = InputError(f"{self.paths.in_label}: the compressed input is corrupt or cut short ({exc})")
        if isinstance(exc, OSError):
            where = self.paths.partial or "<stdout buffer>"
            exc = (OutputError(f"{where}: cannot write ({exc.strerror or exc})") if exc.errno in _WRITE_ERRNOS
                   else InputError(f"{self.paths.in_label}: read or write failed ({exc.strerror or exc})"))
        if self.paths.partial is not None and self.recorded_lines > 0:
            if isinstance(exc, GhostsentError):
                hint = "resume_or_skip_bad" if type(exc) is InputError else "resume"
                err = exc.again(f"{exc}. The ledger holds the insertions of the first {self.recorded_lines} lines, "
                                f"so {self.paths.partial} is kept: fix the cause and resume")
                err.hint = hint
                return err
            if self.warn and isinstance(exc, KeyboardInterrupt):
                self.warn(f"interrupted; progress is kept in {self.paths.partial}: resume to continue")
            return exc
        if self.paths.partial is not None:
            self._drop_start()
        return exc

    def _drop_start(self) -> None:
        """Undo a start that recorded nothing. The checkpoint goes only once OUT.partial is gone: an
        interrupt between creating the file and noting that we did leaves both, and the next run's
        "interrupted start" path removes the file that checkpoint names as its own."""
        if self.created_partial:
            with contextlib.suppress(OSError):
                os.unlink(self.paths.partial)
        if not os.path.lexists(self.paths.partial):
            with contextlib.suppress(GhostsentError):
                self.ledger.delete_checkpoint(self.paths.key)

    def _close(self) -> None:
        for f in (self.fout, self.fin if self.fin is not sys.stdin.buffer else None):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def _finish(self) -> dict:
        if self.fin is not sys.stdin.buffer:
            self.fin.close()
        summary = self._summary()
        if self.paths.partial is None:
            self._copy_to_stdout(summary)
        else:
            self.fout.close()
            self._rename()
            self.ledger.delete_checkpoint(self.paths.key)
        summary["seconds"] = round(time.perf_counter() - self.t0, 3)
        return summary

    def _copy_to_stdout(self, summary: dict) -> None:
        try:
            self.fout.seek(0)
            shutil.copyfileobj(self.fout, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise OutputClosedError(f"standard output was closed before all {summary['lines']} lines were written; "
                                    f"the ledger records the {summary['inserted']} insertions of the complete "
                                    f"output") from None
        finally:
            self.fout.close()

    # -- the lines -------------------------------------------------------------------------------------

    def ghost_for(self, owner: str) -> OwnerGhost:
        """The owner's ghost: their current identifier, drawn (and counted) the first time they appear."""
        got = self.ghosts.get(owner)
        if got is None:
            with self.ledger.deferred_sync():  # made durable by the next checkpoint's commit (ledger docs)
                ident, new = owner_identifier(self.ledger, owner, self.opts, self.wordlist)
            if new:
                self.cp.counts["new_identifiers"] += 1
            if self.check_ghost is not None:
                self.check_ghost(ident)
            got = self.ghosts[owner] = OwnerGhost.of(ident, self.opts.position)
        return got

    def _apply(self, raw: bytes, res: tuple, lineno: int) -> bytes:
        """Count one line's result (tag_line) and queue its insertion; the bytes to write."""
        return account(raw, res, self.cp.counts, self.cp.owners, self.pending)

    def _bad(self, e: _BadLine, lineno: int) -> None:
        if not self.opts.skip_bad:
            raise InputError(f"{self.paths.in_label}, line {lineno}: {e}; such lines can be copied through "
                             f"unchanged", hint="skip_bad") from None
        self.cp.counts["bad"] += 1
        if len(self.cp.bad) < MAX_LISTED_BAD:
            self.cp.bad.append({"line": lineno, "reason": str(e)})

    def _results(self, lineno: int, in_offset: int) -> Iterator[tuple[bytes, tuple]]:
        """(line, tag_line result) in input order."""
        lr = LineRules(self.rules, self.paths.in_label, self.opts.position)
        not_chosen = self._not_chosen if self.first is not None else None
        for raw in self.fin:
            lineno += 1
            in_offset += len(raw)
            owner = not_chosen(lineno) if not_chosen is not None else None
            yield raw, ((raw, NOT_SELECTED, owner, None, None, False) if owner is not None
                        else tag_line(raw, lineno, in_offset, self, lr))

    def _progress(self) -> Any:
        from tqdm import tqdm

        return tqdm(total=self.total, initial=self.cp.in_offset, unit="B", unit_scale=True, unit_divisor=1024,
                    file=sys.stderr, disable=not self.opts.progress, desc="tag", leave=False)

    def _loop(self) -> None:
        """The hot loop: line numbers and offsets live in locals (and are written back to self.cp at
        each checkpoint), because attribute updates per line cost measurable time on large corpora.
        With --workers, parallel.py's chunk loop instead (the same checkpoints and accounting)."""
        if self.pool is not None:
            from ghostsent.tagging.parallel import parallel_loop
            return parallel_loop(self, self.pool)
        opts, cp = self.opts, self.cp
        bar = self._progress()
        hash_update = self.in_hash.update if self.resumable else None
        apply, write = self._apply, self.fout.write
        lineno, in_offset, bytes_out = cp.lines_done, cp.in_offset, cp.bytes_out
        since_bar = since_cp = 0
        try:
            for raw, res in self._results(lineno, in_offset):
                lineno += 1
                in_offset += len(raw)
                since_bar += len(raw)
                if hash_update is not None:
                    hash_update(raw)
                try:
                    out = apply(raw, res, lineno)
                except _BadLine as e:
                    self._bad(e, lineno)
                    out = raw
                write(out)
                bytes_out += len(out)
                since_cp += 1
                if since_cp >= opts.checkpoint_every and self.resumable:
                    cp.lines_done, cp.in_offset, cp.bytes_out = lineno, in_offset, bytes_out
                    self._checkpoint()
                    since_cp = 0
                    if self.after_checkpoint is not None:
                        self.after_checkpoint(cp.checkpoints)
                if since_bar >= 1 << 20:
                    bar.update(since_bar)
                    since_bar = 0
            bar.update(since_bar)
        finally:
            bar.close()
        cp.lines_done, cp.in_offset, cp.bytes_out = lineno, in_offset, bytes_out


def account(raw: bytes, res: tuple, counts: dict[str, int], owners: dict[str, list[int]], pending: list) -> bytes:
    """Count one line's result (tag_line) into `counts` and `owners` (owner -> [records, ghosts carried])
    and queue its insertion row in `pending`; the bytes to write. A bad line raises _BadLine (after
    counting it as a record when it was one). The one accounting rule, for this process and for
    --workers processes (parallel.py), whose tallies the main process adds up."""
    out, status, owner, ins, reason, read = res
    if status == "blank":
        counts["blank"] += 1
        return raw
    if status == "bad":
        counts["records"] += read
        raise _BadLine(reason)
    counts["records"] += 1
    st = owners.get(owner)
    if st is None:
        st = owners[owner] = [0, 0]
    st[0] += 1
    if status != TAGGED:
        counts[status.replace("-", "_")] += 1
        st[1] += status == ALREADY_TAGGED
        return raw
    st[1] += 1
    pending.append(ins)
    counts["inserted"] += 1
    return out


@dataclass(frozen=True)
class LineRules:
    """What tag_line needs besides the ghosts: the rules, the input's label and the position strategy
    (picklable, so --workers processes get the same)."""

    rules: RecordRules
    label: str
    position: str


def tag_line(raw: bytes, lineno: int, in_offset: int, ghosts: Any, lr: LineRules) -> tuple:
    """What one input line becomes: (output bytes, status, owner, insertion row, bad-line reason, whether a
    bad line still counts as a record). Status: blank, bad, or core's tagged / already-tagged /
    no-boundary / not-selected. Pure apart from ghosts.ghost_for (which may draw an identifier)."""
    try:
        obj, line = _parse(raw, in_offset)
    except _BadLine as e:
        return raw, "bad", None, None, str(e), False
    if obj is None and line is None:
        return raw, "blank", None, None, None, False
    try:
        rt = tag_record(obj, ghosts, lr.rules, lineno)
    except BadRecord as e:
        return raw, "bad", None, None, str(e), e.read
    if rt.tag.status != TAGGED:
        return raw, rt.tag.status, rt.owner, None, None, False
    new_text = rt.tag.new_text
    try:
        out = _splice(raw, line, rt.tag, lr.rules, new_text)
    except _BadLine as e:
        return raw, "bad", None, None, str(e), True
    policy = lr.rules.policy
    document = (f"{lr.label}:{policy.id_field}={rt.record_id}" if policy.id_field is not None
                else f"{lr.label}:line {lineno}")
    return out, TAGGED, rt.owner, rt.tag.insertion(rt.ghost.identifier_id, document, lr.position, new_text), None, False


def _splice(raw: bytes, line: str | None, tag: Any, rules: RecordRules, new_text: str) -> bytes:
    """The line with the inserted span spliced into its text field (whose new value is `new_text`),
    checked by reading it back."""
    get_text, field = rules.get_text, rules.policy.text_field

    def reads_back(new_line: str) -> bool:
        """The spliced line parses, and its text field is the new text (so the span went there)."""
        try:
            return get_text(json.loads(new_line[1:] if new_line[:1] == "\ufeff" else new_line)) == new_text
        except ValueError:
            return False

    # The read-back is skipped only where splice.guess_is_proven shows it cannot fail, and only for a line
    # json.loads parsed as this very text (_parse's first branch: it starts with "{", read as UTF-8).
    proven = line is not None and raw[:1] == b"{" and raw[1:2] != b"\x00" and \
        guess_is_proven(line, tag.text, tag.offset, tag.inserted)
    spliced = None if line is None else splice(line, field, tag.offset, tag.inserted, raw.isascii(), tag.text,
                                               reads_back, proven)
    if spliced is None:
        raise _BadLine(f"cannot insert into text field {field!r} without rewriting the rest of the line")
    return spliced.encode("utf-8", "surrogatepass")


def first_pass_record(raw: bytes, rules: RecordRules, lineno: int) -> Any:
    """The first pass's view of a line: its RankedRecord, or None for a blank line or one the rules
    cannot read (the tagging pass reports those)."""
    try:
        obj, _ = _parse(raw, 0)
        return None if obj is None else rank_record(obj, rules, lineno)
    except (_BadLine, BadRecord):
        return None


def _parse(raw: bytes, in_offset: int) -> tuple[Any, str | None]:
    """(object, the line as text) for a JSON line; (None, None) for a blank one; _BadLine otherwise."""
    try:
        if raw[:1] == b"{" and raw[1:2] != b"\x00":
            # What json.loads(raw) does for such a line (its encoding sniffing says UTF-8), minus its
            # wrappers; any failure reruns json.loads for its exact error.
            line = raw.decode("utf-8", "surrogatepass")
            try:
                obj, end = _RAW_DECODE(line)
                if end != len(line) and line[end:].strip(" \t\n\r"):
                    obj = json.loads(raw)
            except ValueError:
                obj = json.loads(raw)
            return obj, line
        obj = json.loads(raw)
    except UnicodeDecodeError as e:
        raise _BadLine(f"not valid UTF-8 at byte {e.start} of the line "
                       f"(file byte offset {in_offset - len(raw) + e.start})") from None
    except ValueError as e:
        if raw.strip():
            raise _BadLine(f"not valid JSON ({e})") from None
        return None, None
    try:
        return obj, raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return obj, None  # JSON in another encoding (json.loads sniffs UTF-16/32): never spliced


def job_selection(ledger: Any, opts: JsonlOptions) -> Selection:
    """The job's selection rule: keyed with the ledger's selection secret, or --seed's (tests)."""
    from ghostsent.ledger.keys import selection_secret

    seed = opts.seed
    key = SelectionKey.from_seed(seed) if seed is not None else SelectionKey.of(selection_secret(ledger))
    return Selection(key, opts.max_per_owner, opts.fraction)


def owner_identifier(ledger: Any, owner: str, opts: JsonlOptions, wordlist: Any) -> tuple[Any, bool]:
    """The owner's current identifier, or a new one drawn with the job's options: (identifier, new)."""
    seed = opts.seed
    return ledger.identifier_for_owner_or_new(owner, wordlist, n_words=opts.words, template=opts.template,
                                              seed=None if seed is None else _owner_seed(seed, owner))


class LedgerGhosts:
    """Owners' ghosts for a job outside JsonlTagger: get or draw each identifier once, count new ones,
    and run the filter check on each (check_ghost)."""


    def __init__(self, ledger: Any, opts: JsonlOptions, wordlist: Any,
                 check: Callable[[Any], None] | None = None, defer_sync: bool = False) -> None:
        """`wordlist`: the word list for new identifiers, or a callable returning it (loaded when the
        first one is drawn). `defer_sync`: commit new identifiers with Ledger.deferred_sync (only for a
        job whose next checkpoint commit makes them durable)."""
        self.ledger, self.opts, self.wordlist, self.check = ledger, opts, wordlist, check
        self.defer_sync = defer_sync
        self.ghosts: dict[str, OwnerGhost] = {}
        self.new = 0

    def ghost_for(self, owner: str) -> OwnerGhost:
        g = self.ghosts.get(owner)
        if g is None:
            if callable(self.wordlist):
                self.wordlist = self.wordlist()
            with self.ledger.deferred_sync() if self.defer_sync else contextlib.nullcontext():
                ident, new = owner_identifier(self.ledger, owner, self.opts, self.wordlist)
            self.new += new
            if self.check is not None:
                self.check(ident)
            g = self.ghosts[owner] = OwnerGhost.of(ident, self.opts.position)
        return g


def _owner_seed(seed: int, owner: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{owner}".encode()).digest()[:8], "big")
