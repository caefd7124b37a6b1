"""Tag real files and JSONL corpora with ghost sentences, recording every insertion in the ledger.

Three invariants drive the design (docs/insertion.md lists the tests that hold each one):

* No input byte is lost. Every path is compared with every other by identity (inode) or real path
  before anything is written: an input that is also an output, OUT's temporary file, its lock file or
  the ledger is refused; so is an output that already exists with other content. A file being rewritten
  in place is re-read inside the ledger transaction that replaces it, so a second process that changed
  it meanwhile makes this one refuse rather than overwrite.
* The ledger and the files never disagree. A file is written to a temp file (fsynced) in the target
  directory, then, inside one ledger transaction, the insertion is recorded and the temp file renamed
  over the target; a failed rename rolls the record back. A JSONL corpus is written to OUT.partial,
  under an exclusive lock on OUT.lock; every few thousand lines the output is fsynced and, in ONE
  transaction, that chunk's insertions and the checkpoint (lines done, output bytes, input offset, hash
  of the whole input read so far) are committed. A crash leaves a checkpoint that matches exactly what
  the ledger holds, and a resume truncates OUT.partial back to it.
* No character of a document changes except the inserted span, and bytes outside it survive: the
  encoding, a BOM and the newline style are kept; in a JSONL line only the text field's string literal
  gets the (escaped) span, so numbers, duplicate keys, key order and escapes elsewhere stay as they were.
"""
from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import json
import math
import os
import random
import stat
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Callable

from ghostsent.errors import GhostsentError, InputError, OutputClosedError, OutputError
from ghostsent.fsio import atomic_write, create_exclusive, exclusive_lock, fsync_dir, identity, same_file
from ghostsent.insert import DEFAULT_POSITION, POSITIONS, NoBoundaryError, Placement, describe, placer, plan
from ghostsent.jsonsplice import splice
from ghostsent.names import has_surrogate, normalise_owner, path_label
from ghostsent.sentences import Boundary

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SNIFFED = {"utf-8", "utf-8-sig", "utf-16", "utf-32"}  # encodings whose BOM we detect and keep
_ORDERED = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE,
            "utf-32-le": codecs.BOM_UTF32_LE, "utf-32-be": codecs.BOM_UTF32_BE}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- single documents -------------------------------------------------------------------------

@dataclass
class Document:
    path: Path
    raw: bytes
    text: str          # decoded, without the BOM
    encoding: str
    bom: bytes

    def encode(self, text: str) -> bytes:
        try:
            return self.bom + text.encode(self.encoding)
        except UnicodeEncodeError as e:
            raise InputError(
                f"{self.path}: the ghost sentence cannot be written in {self.encoding} "
                f"({e.object[e.start:e.end]!r}); convert the file or pick an ASCII word list"
            ) from None


class BinaryFileError(InputError):
    """A file with NUL bytes and no UTF-16/32 byte-order mark: skipped, never modified."""


def _byte_order(path: Path, raw: bytes, encoding: str | None, enc: str) -> tuple[bytes, str]:
    """(BOM kept, codec to decode the rest with). UTF-16/32 without a BOM is ambiguous: guessing the
    byte order wrong writes a file that is half one order and half the other, so it is refused."""
    if enc in _SNIFFED:
        for mark, name in _BOMS:
            if raw.startswith(mark):
                return mark, name
        if enc in ("utf-16", "utf-32"):
            raise InputError(f"{path}: --encoding {encoding} needs a byte-order mark to tell the byte order and "
                             f"this file has none; pass --encoding {enc}-le or --encoding {enc}-be")
        return b"", "utf-8"
    if enc in _ORDERED:
        family = enc[:-3]
        other = next(n for n in _ORDERED if n.startswith(family) and n != enc)
        if raw.startswith(_ORDERED[other]) and not raw.startswith(_ORDERED[enc]):
            raise InputError(f"{path}: starts with a {other} byte-order mark but --encoding {encoding} was given; "
                             f"pass --encoding {family} (the mark decides) or --encoding {other}")
        if raw.startswith(_ORDERED[enc]):
            return _ORDERED[enc], enc
    return b"", enc


def decode_document(path: Path, raw: bytes, encoding: str | None = None) -> Document:
    """Decode strictly; a bad byte is an InputError naming the file and the byte offset."""
    try:
        enc = codecs.lookup(encoding or "utf-8").name
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r}") from None
    bom, enc = _byte_order(path, raw, encoding, enc)
    if not bom and b"\x00" in raw and not enc.startswith(("utf-16", "utf-32")):
        raise BinaryFileError(f"{path}: binary file (contains NUL bytes), skipped")
    body = raw[len(bom):]
    try:
        text = body.decode(enc)
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: not valid {enc} at byte offset {e.start + len(bom)} "
            f"(byte 0x{body[e.start]:02x}); pass --encoding (e.g. --encoding latin-1)"
        ) from None
    if text.encode(enc) != body:
        raise InputError(f"{path}: {enc} does not round-trip this file byte for byte; refusing to rewrite it")
    return Document(path, raw, text, enc, bom)


def read_document(path: Path, encoding: str | None = None) -> Document:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    return decode_document(path, raw, encoding)


@dataclass
class FileResult:
    path: str
    status: str            # tagged | would-tag | already-tagged | no-boundary | binary
    output: str | None = None
    offset: int | None = None
    line: int | None = None
    col: int | None = None
    snippet: str | None = None
    sha256_before: str | None = None
    sha256_after: str | None = None
    insertion_id: int | None = None
    backup: str | None = None
    message: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def unique_paths(paths: list[Path]) -> list[Path]:
    """`paths` with every file kept once (the first spelling): a.txt, ./a.txt, /abs/a.txt and a link to
    it are one file and must get one ghost and one record."""
    seen: set = set()
    out = []
    for p in paths:
        key = identity(p) or os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def output_paths(paths: list[Path], out_dir: Path) -> dict[Path, Path]:
    """Map inputs to outputs under out_dir: relative paths keep their folders, others their name.

    Refused before anything is written: two inputs sharing an output, and an output that is any input
    (through a symbolic link, a hard link, `..` or an out folder that resolves into the input folder)."""
    mapping: dict[Path, Path] = {}
    seen: dict[str, Path] = {}
    inputs = {identity(p): p for p in paths if identity(p) is not None}
    real_inputs = {os.path.realpath(p): p for p in paths}
    for p in paths:
        rel = p if (not p.is_absolute() and ".." not in p.parts) else Path(p.name)
        dst = out_dir / rel
        key = os.path.realpath(dst)
        if key in seen and seen[key] != p:
            raise InputError(f"{p} and {seen[key]} would both be written to {dst}; tag them separately")
        hit = inputs.get(identity(dst)) or real_inputs.get(key)
        if hit is not None:
            raise InputError(f"{p}: its output {dst} is the input {hit} itself (links resolved); choose another "
                             f"--out, or use --in-place")
        seen[key] = p
        mapping[p] = dst
    return mapping


def _backup_path(path: Path, original: bytes) -> Path:
    """PATH.bak, or PATH.bak.N if that exists with other content: a backup is never overwritten."""
    cand = path.with_name(path.name + ".bak")
    n = 0
    while cand.exists():
        try:
            if cand.read_bytes() == original:
                return cand
        except OSError:
            pass
        n += 1
        cand = path.with_name(f"{path.name}.bak.{n}")
    return cand


@dataclass
class _FileJob:
    """One file to write (or, with new_raw None, one missing record to add): the real target, the
    bytes it held when read, and what the ledger record says."""
    target: Path
    raw: bytes
    new_raw: bytes | None
    result: FileResult
    in_place: bool
    mode: int | None
    strategy: str


def tag_files(
    ledger: Any,
    identifier: Any,
    paths: list[Path],
    out_dir: Path | None = Path("tagged"),
    in_place: bool = False,
    backup: bool = True,
    dry_run: bool = False,
    position: str = DEFAULT_POSITION,
    encoding: str | None = None,
    rng: random.Random | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[FileResult]:
    """Insert `identifier`'s ghost into each file. All files are read, decoded and their outputs checked
    before anything is written, so one bad file or unsafe output stops the run with nothing written.
    If writing fails part-way, the error names the files already changed (each recorded)."""
    if position not in POSITIONS:
        raise InputError(f"unknown position {position!r} (choose from {', '.join(POSITIONS)})")
    paths = unique_paths(list(paths))
    mapping = {} if (in_place or dry_run) else output_paths(paths, out_dir or Path("tagged"))
    docs: dict[Path, Document | None] = {}
    for p in paths:
        try:
            docs[p] = read_document(p, encoding)
        except BinaryFileError:
            docs[p] = None
    tagger = _FileTagger(ledger, identifier, in_place, backup, dry_run, position, rng, warn)
    results, jobs = [], []
    for p in paths:
        res, job = tagger.plan(p, docs[p], mapping.get(p))
        results.append(res)
        if job is not None:
            jobs.append(job)
    done: list[str] = []
    try:
        for job in jobs:
            tagger.write(job)
            if job.new_raw is not None:
                done.append(job.result.output or job.result.path)
    except (GhostsentError, OSError) as e:
        if not done:
            raise
        cls = type(e) if isinstance(e, GhostsentError) else OutputError
        raise cls(f"{e}; files already changed (each recorded in the ledger): {', '.join(done)}") from None
    except KeyboardInterrupt:
        if done and warn:
            warn(f"interrupted; files already changed (each recorded in the ledger): {', '.join(done)}")
        raise
    return results


class _FileTagger:
    """The settings of one tag_files call, shared by its two steps: plan every file, then write."""

    def __init__(self, ledger: Any, identifier: Any, in_place: bool, backup: bool, dry_run: bool, position: str,
                 rng: random.Random | None, warn: Callable[[str], None] | None) -> None:
        self.ledger, self.identifier, self.ghost = ledger, identifier, identifier.text
        self.in_place, self.backup, self.dry_run = in_place, backup, dry_run
        self.position, self.rng, self.warn = position, rng, warn

    def plan(self, p: Path, doc: Document | None, dst: Path | None) -> tuple[FileResult, _FileJob | None]:
        """The result for one file and, if anything is to be written or recorded, the job. Refuses an
        existing --out file that does not already carry the ghost."""
        label = path_label(p)
        if doc is None:
            if self.warn:
                self.warn(f"{label}: binary file (contains NUL bytes), skipped")
            return FileResult(label, "binary", message="binary file, skipped"), None
        if self.ghost in doc.text:
            res = FileResult(label, "already-tagged", message="ghost sentence already present; nothing inserted")
            return res, (self._recovery(res, Path(os.path.realpath(p)), doc) if self.in_place and not self.dry_run
                         else None)
        try:
            placement: Placement = plan(doc.text, self.ghost, self.position, self.rng)
        except NoBoundaryError:
            msg = "empty document" if not doc.text.strip() else "no sentence boundary outside protected regions"
            return FileResult(label, "no-boundary", message=f"{msg}; left unchanged"), None
        info = describe(doc.text, placement)
        res = FileResult(label, "would-tag" if self.dry_run else "tagged", offset=info["offset"], line=info["line"],
                         col=info["col"], snippet=info["snippet"], sha256_before=sha256_bytes(doc.raw))
        new_raw = doc.encode(placement.apply(doc.text))
        res.sha256_after = sha256_bytes(new_raw)
        if self.dry_run:
            return res, None
        if self.in_place:
            target = Path(os.path.realpath(p))  # write through a symbolic link, never replace the link
            st = os.stat(target)
            if st.st_nlink > 1 and self.warn:
                self.warn(f"{label}: has {st.st_nlink} hard links; only this name gets the tagged file, the "
                          f"other names keep the original")
            mode = None
        else:
            target, mode = dst, stat.S_IMODE(os.stat(p).st_mode)
            if os.path.lexists(dst):
                existing = _decoded(dst, doc.encoding)
                if existing is None or self.ghost not in existing.text:
                    raise OutputError(f"{dst}: already exists and does not carry this ghost sentence; remove it or "
                                      f"choose another --out (nothing was written)")
                done = FileResult(label, "already-tagged", output=path_label(dst),
                                  message="output already carries the ghost sentence; nothing written")
                return done, self._recovery(done, Path(os.path.realpath(dst)), existing)
        res.output = path_label(target)
        return res, _FileJob(target, doc.raw, new_raw, res, self.in_place, mode, self.position)

    def _recovery(self, res: FileResult, target: Path, doc: Document) -> _FileJob | None:
        """A file that carries our inserted span but has no ledger record: a run was killed between the
        rename and the COMMIT. Removing the span gives the original exactly (nothing else ever
        changes), so the missing record is rebuilt (strategy "recovered") instead of staying lost."""
        raw_sha = sha256_bytes(doc.raw)
        document = path_label(target)
        if self.ledger.has_insertion(self.identifier.id, document, raw_sha):
            return None
        for kind in ("after", "before"):
            span = Boundary(0, kind).inserted(self.ghost)
            at = doc.text.find(span)
            if at >= 0:
                break
        else:
            return None  # the ghost was pasted in by hand, not inserted by ghostsent
        res.sha256_before = sha256_bytes(doc.encode(doc.text[:at] + doc.text[at + len(span):]))
        res.sha256_after, res.offset, res.output = raw_sha, at, document
        res.message = "ghost sentence already present; added its missing ledger record (an earlier run was cut off)"
        return _FileJob(target, doc.raw, None, res, True, None, "recovered")

    def write(self, job: _FileJob) -> None:
        """Backup (in place), then write and record in one ledger transaction. Inside that transaction the
        target is checked again: still the bytes we read (in place) or still absent (--out). Another
        ghostsent process on the same ledger holds the same write lock, so of two runs on one file the
        second sees the first's change and refuses."""
        res, target = job.result, job.target
        if job.new_raw is None:
            with self.ledger.transaction():
                # Under the write lock: the run that wrote the file may have committed its record
                # since we looked (its rename comes just before its COMMIT).
                if not self.ledger.has_insertion(self.identifier.id, res.output, res.sha256_after):
                    self._check_and_record(job)
            return
        if job.in_place and self.backup:
            bak = _backup_path(target, job.raw)
            if not bak.exists():
                atomic_write(bak, job.raw, like=target)
            res.backup = path_label(bak)
        atomic_write(target, job.new_raw, mode=job.mode, like=target if job.in_place else None,
                     before_rename=lambda: self._check_and_record(job), ledger=self.ledger)

    def _check_and_record(self, job: _FileJob) -> None:
        res, target = job.result, job.target
        if job.in_place:
            try:
                now = target.read_bytes()
            except OSError as e:
                raise OutputError(f"{target}: cannot read it again before replacing it ({e.strerror})") from None
            if now != job.raw:
                raise OutputError(f"{target}: changed by another process while being tagged; left as it is")
        elif os.path.lexists(target):
            raise OutputError(f"{target}: appeared while tagging (another run?); left as it is")
        res.insertion_id = self.ledger.add_insertion(self.identifier.id, path_label(os.path.realpath(target)),
                                                     res.sha256_before, res.sha256_after, res.offset, job.strategy)


def _decoded(path: Path, encoding: str) -> Document | None:
    """An existing output file decoded like its input, or None if it cannot be."""
    if not path.is_file():
        return None
    try:
        return decode_document(path, path.read_bytes(), encoding)
    except (InputError, OSError):
        return None


# --- JSONL corpora ----------------------------------------------------------------------------

CHECKPOINT_EVERY = 5000
MAX_LISTED_BAD = 1000
CHECKPOINT_VERSION = 2  # 2: whole-prefix input hash (in_sha256); 1 hashed only the last 4 KiB


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

    def settings(self) -> dict:
        """What must not change between a run and its resume."""
        return {k: getattr(self, k) for k in ("text_field", "owner_field", "id_field", "max_per_owner",
                                              "fraction", "words", "wordlist", "template", "position", "seed")}

    def validate(self) -> Any:
        """Check every option before any input is read, and return the word list for new identifiers.
        The template and word list are checked even if every owner turns out to have an identifier:
        an option that is wrong must fail the same way on every corpus."""
        from ghostsent.passphrase import resolve_template
        from ghostsent.wordlists import load_wordlist

        if self.position not in POSITIONS:
            raise InputError(f"unknown position {self.position!r} (choose from {', '.join(POSITIONS)})")
        if self.max_per_owner is not None and self.max_per_owner < 0:
            raise InputError("--max-per-owner must be >= 0")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise InputError("--fraction must be between 0 and 1")
        if self.checkpoint_every < 1:
            raise InputError("checkpoint interval must be >= 1")
        if not self.text_field or not self.owner_field:
            raise InputError("--text-field and --owner-field must not be empty")
        if self.words < 1:
            raise InputError(f"--words must be at least 1 (got {self.words})")
        resolve_template(self.template)
        return load_wordlist(self.wordlist)


_MISSING = object()


def _get_field(obj: dict, name: str) -> Any:
    """Top-level key `name`, else a dotted path into nested objects ("meta.author")."""
    v = obj.get(name, _MISSING)
    if v is not _MISSING or "." not in name:
        return v
    cur: Any = obj
    for part in name.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _getter(name: str) -> Callable[[dict], Any]:
    if "." in name:
        return lambda obj: _get_field(obj, name)
    return lambda obj: obj.get(name, _MISSING)


class _BadLine(Exception):
    pass


class _BufferedSystemRandom(random.SystemRandom):
    """SystemRandom that reads os.urandom 4 KiB at a time: the same unpredictable source for the
    default (unseeded) positions, without one system call per tagged record."""

    def __init__(self) -> None:
        super().__init__()
        self._buf = b""
        self._pos = 0

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        n = (k + 7) // 8
        pos = self._pos
        if pos + n > len(self._buf):
            self._buf = os.urandom(max(4096, n))
            pos = 0
        self._pos = pos + n
        return int.from_bytes(self._buf[pos:pos + n], "big") >> (n * 8 - k)


def _owner_seed(seed: int, owner: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{owner}".encode()).digest()[:8], "big")


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
    return sha256_bytes(f.read(end - start))


@dataclass
class _JsonlPaths:
    """Where a tag-jsonl run reads and writes. OUT.partial, OUT.lock and the checkpoint key exist only
    when OUT is a file (not "-")."""
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
            raise InputError(f"{in_path}: the input is also {role} {p}; choose another OUT")
        if same_file(ledger.path, p):
            raise InputError(f"{p}: is the ledger {ledger.path}; choose another OUT")
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
    """Stream IN to OUT, inserting each owner's ghost into up to max_per_owner (or a fraction) of that
    owner's records. See docs/insertion.md for resume semantics. `after_checkpoint(n)` is called after
    the n-th committed checkpoint (a test hook for simulated crashes); `check_ghost(identifier)` once per
    owner before their first insertion (raises InputError to refuse a ghost, e.g. one filters drop).

    A second run on the same OUT is refused (OutputError) while this one holds OUT.lock."""
    wordlist = opts.validate()
    paths = _jsonl_paths(ledger, in_path, out_path)
    if opts.resume and (in_path == "-" or out_path == "-"):
        raise InputError("--resume needs a real input and output file (not '-')")
    if paths.lock is None:
        return _JsonlRun(ledger, paths, opts, wordlist, after_checkpoint, warn, check_ghost).run()
    try:
        Path(paths.lock).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out_path}: cannot create its folder ({e.strerror})") from None
    with exclusive_lock(paths.lock, out_path):
        return _JsonlRun(ledger, paths, opts, wordlist, after_checkpoint, warn, check_ghost).run()


_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class _JsonlRun:
    """One tag-jsonl run: which checkpoint to continue, the line loop, the final commit and rename."""

    def __init__(self, ledger: Any, paths: _JsonlPaths, opts: JsonlOptions, wordlist: Any,
                 after_checkpoint: Callable[[int], None] | None, warn: Callable[[str], None] | None,
                 check_ghost: Callable[[Any], None] | None = None) -> None:
        self.ledger, self.paths, self.opts, self.wordlist = ledger, paths, opts, wordlist
        self.after_checkpoint, self.warn, self.check_ghost = after_checkpoint, warn, check_ghost
        self.t0 = time.perf_counter()
        self.resumable = paths.inp != "-" and paths.out != "-"
        self.settings = opts.settings()
        self.owners: dict[str, list[int]] = {}
        self.counts = dict(records=0, inserted=0, already_tagged=0, no_boundary=0, not_selected=0, blank=0,
                           bad=0, new_identifiers=0)
        self.bad: list[dict] = []
        self.lineno = self.in_offset = self.bytes_out = self.n_checkpoints = 0
        self.recorded_lines = 0  # lines of OUT.partial whose insertions the ledger holds
        self.resumed_from: int | None = None
        self.pending: list[tuple] = []
        self.in_hash = hashlib.sha256()
        self.ghosts: dict[str, tuple] = {}  # owner -> (identifier id, ghost text, placer)
        self.fin: Any = None
        self.fout: Any = None
        self.created_partial = False
        self.total: int | None = None

    # -- which run this is -------------------------------------------------------------------------

    def run(self) -> dict:
        cp = self._existing_checkpoint()
        if cp is not None and cp.get("finished"):
            done = self._complete_finished(cp)
            if done is not None:
                return done
            cp = None
        if cp is not None and cp["lines_done"] == 0:
            cp = None  # an interrupted start: nothing of it is recorded, so start again
            if os.path.lexists(self.paths.out):
                raise InputError(f"{self.paths.out}: already exists; remove it or choose another output")
            self._remove(self.paths.partial)
        elif cp is None:
            self._refuse_existing_outputs()
        else:
            self._check_resume(cp)
        self._open_input(cp)
        try:
            self._open_output(cp)
            self._loop()
            self._checkpoint(finished=True)
        except BaseException as exc:
            err = self._failure(exc)
            if err is exc:
                raise
            raise err from None
        return self._finish()

    def _existing_checkpoint(self) -> dict | None:
        if self.paths.key is None:
            return None
        for key in dict.fromkeys((self.paths.key, _legacy_checkpoint_key(self.paths.out))):
            cp = self.ledger.get_checkpoint(key)
            if cp is not None:
                self.paths.key = key
                return cp
        return None

    def _complete_finished(self, cp: dict) -> dict | None:
        """A run whose last checkpoint says finished: everything is recorded, only its rename (or the
        checkpoint's deletion) may be missing. Complete the rename if OUT.partial is that run's output;
        otherwise the checkpoint is stale and is dropped (None: carry on as a new run)."""
        partial, out = self.paths.partial, self.paths.out
        if (os.path.isfile(partial) and not os.path.islink(partial) and not os.path.lexists(out)
                and os.path.getsize(partial) == cp["bytes_out"]):
            self._rename()
            self.ledger.delete_checkpoint(self.paths.key)
            summary = dict(cp["summary"])
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
                             f"wrote it; remove it, or pass the ledger of the run that did")

    def _check_resume(self, cp: dict) -> None:
        out, partial = self.paths.out, self.paths.partial
        if not self.opts.resume:
            raise InputError(f"{out}: an interrupted run exists ({cp['lines_done']} lines done, kept in {partial}); "
                             f"rerun with --resume to continue it")
        if cp["settings"] != self.settings:
            diff = sorted(k for k in self.settings if cp["settings"].get(k) != self.settings[k])
            raise InputError(f"--resume with different settings than the interrupted run: {', '.join(diff)}")
        if os.path.lexists(out):
            raise InputError(f"{out}: already exists and the interrupted run would replace it; move it away first")

    # -- files -------------------------------------------------------------------------------------

    def _open_input(self, cp: dict | None) -> None:
        if self.paths.inp == "-":
            self.fin = sys.stdin.buffer
            return
        try:
            self.fin = open(self.paths.inp, "rb")
        except OSError as e:
            raise InputError(f"{self.paths.inp}: cannot read ({e.strerror})") from None
        self.total = os.fstat(self.fin.fileno()).st_size
        if cp is not None:
            try:
                self._restore(cp)
            except BaseException:
                self.fin.close()
                raise

    def _restore(self, cp: dict) -> None:
        """Continue from checkpoint `cp`, after checking that the input's first in_offset bytes are the
        ones that run read (the whole prefix is hashed again, not just its tail)."""
        end = cp["in_offset"]
        h, left = hashlib.sha256(), end
        while left > 0:
            chunk = self.fin.read(min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
        if "in_sha256" in cp:
            same = left == 0 and h.hexdigest() == cp["in_sha256"]
        else:
            same = left == 0 and _tail_hash(self.fin, end) == cp.get("in_tail_sha256")
        if not same:
            raise InputError(f"{self.paths.inp}: input changed since the interrupted run (its first {end} bytes "
                             f"differ); cannot resume")
        self.in_hash = h
        self.owners = {k: list(v) for k, v in cp["owners"].items()}
        self.counts, self.bad = dict(cp["counts"]), list(cp["bad"])
        self.lineno = self.resumed_from = self.recorded_lines = cp["lines_done"]
        self.in_offset, self.bytes_out = end, cp["bytes_out"]
        self.paths.in_label = cp["in_label"]
        self.n_checkpoints = cp.get("checkpoints", 0)

    def _open_output(self, cp: dict | None) -> None:
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
            if os.fstat(fd).st_size < self.bytes_out:
                raise InputError(f"{partial}: shorter than the checkpoint; cannot resume (the ledger holds the "
                                 f"insertions of its first {self.recorded_lines} lines)")
            self.fout.truncate(self.bytes_out)
            self.fout.seek(self.bytes_out)
            return
        # A fresh run: the checkpoint that names OUT.partial as this run's comes first, so a partial file
        # without one is never ours (and is refused above, never truncated).
        self.ledger.set_checkpoint(self.paths.key, self._state(False))
        self.fout = os.fdopen(create_exclusive(partial), "wb")
        self.created_partial = True

    def _remove(self, path: str | None) -> None:
        if path is not None and os.path.lexists(path):
            try:
                os.unlink(path)  # a link is removed, never what it points to
            except OSError as e:
                raise OutputError(f"{path}: cannot remove the stale temporary file ({e.strerror})") from None

    def _rename(self) -> None:
        try:
            os.replace(self.paths.partial, self.paths.out)
        except OSError as e:
            raise OutputError(f"{self.paths.out}: cannot rename {self.paths.partial} to it ({e.strerror}); the run "
                              f"is recorded as finished: rerun the same command to complete it") from None
        fsync_dir(os.path.dirname(os.path.abspath(self.paths.out)))

    # -- checkpoints -------------------------------------------------------------------------------

    def _state(self, finished: bool) -> dict:
        state = {"version": CHECKPOINT_VERSION, "in_path": path_label(os.path.abspath(self.paths.inp)),
                 "in_label": self.paths.in_label, "settings": self.settings, "lines_done": self.lineno,
                 "bytes_out": self.bytes_out, "in_offset": self.in_offset, "in_sha256": self.in_hash.hexdigest(),
                 "owners": self.owners, "counts": self.counts, "bad": self.bad, "checkpoints": self.n_checkpoints,
                 "finished": finished}
        if finished:
            state["summary"] = self._summary()
        return state

    def _checkpoint(self, finished: bool = False) -> None:
        """fsync the output, then commit the pending insertions and the checkpoint in ONE transaction."""
        self.fout.flush()
        os.fsync(self.fout.fileno())
        state = None
        if self.paths.key is not None and (self.resumable or finished):
            if self.resumable:
                self.n_checkpoints += 1
            state = self._state(finished)
        with self.ledger.transaction():
            self.ledger.add_insertions(self.pending)
            if state is not None:
                self.ledger.set_checkpoint(self.paths.key, state)
        self.pending.clear()
        if state is not None:
            self.recorded_lines = self.lineno

    def _summary(self) -> dict:
        return {"input": self.paths.in_label, "output": self.paths.out, "lines": self.lineno, **self.counts,
                "owners": len(self.owners), "bad_lines": self.bad, "resumed_from_line": self.resumed_from,
                "seconds": round(time.perf_counter() - self.t0, 3)}

    # -- the end ---------------------------------------------------------------------------------------

    def _failure(self, exc: BaseException) -> BaseException:
        """Clean up after a failed run and return what to raise. Before anything is recorded, OUT.partial
        and its start checkpoint go: nothing is left. After, both stay (the ledger describes the file's
        first bytes) and the error says to --resume."""
        self._close()
        if isinstance(exc, OSError):
            where = self.paths.partial or "<stdout buffer>"
            exc = (OutputError(f"{where}: cannot write ({exc.strerror or exc})") if exc.errno in _WRITE_ERRNOS
                   else InputError(f"{self.paths.in_label}: read or write failed ({exc.strerror or exc})"))
        if self.paths.partial is not None and self.recorded_lines > 0:
            if isinstance(exc, GhostsentError):
                hint = " (or add --skip-bad)" if type(exc) is InputError else ""
                return type(exc)(f"{exc}. The ledger holds the insertions of the first {self.recorded_lines} lines, "
                                 f"so {self.paths.partial} is kept: fix the cause and rerun with --resume{hint}")
            if self.warn and isinstance(exc, KeyboardInterrupt):
                self.warn(f"interrupted; progress is kept in {self.paths.partial}: rerun with --resume to continue")
            return exc
        if self.paths.partial is not None:
            if self.created_partial:
                with contextlib.suppress(OSError):
                    os.unlink(self.paths.partial)
            with contextlib.suppress(GhostsentError):
                self.ledger.delete_checkpoint(self.paths.key)
        return exc

    def _close(self) -> None:
        for f in (self.fout, self.fin if self.paths.inp != "-" else None):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def _finish(self) -> dict:
        if self.paths.inp != "-":
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
            import shutil

            shutil.copyfileobj(self.fout, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise OutputClosedError(f"standard output was closed before all {summary['lines']} lines were written; "
                                    f"the ledger records the {summary['inserted']} insertions of the complete "
                                    f"output") from None
        finally:
            self.fout.close()

    # -- the lines -------------------------------------------------------------------------------------

    def _identifier(self, owner: str) -> tuple:
        got = self.ghosts.get(owner)
        if got is None:
            seed = self.opts.seed
            ident, new = self.ledger.identifier_for_owner_or_new(
                owner, self.wordlist, n_words=self.opts.words, template=self.opts.template,
                seed=None if seed is None else _owner_seed(seed, owner))
            if new:
                self.counts["new_identifiers"] += 1
            if self.check_ghost is not None:
                self.check_ghost(ident)
            got = self.ghosts[owner] = (ident.id, ident.text, placer(ident.text, self.opts.position))
        return got

    def _parse(self, raw: bytes, in_offset: int) -> tuple[Any, str | None]:
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

    def _insert(self, raw: bytes, line: str | None, obj: dict, text: str, owner: str, lineno: int) -> bytes | None:
        """The line with the owner's ghost spliced into its text field (None: no boundary)."""
        opts = self.opts
        if opts.id_field is not None:
            rid = _get_field(obj, opts.id_field)
            if rid is _MISSING or rid is None or isinstance(rid, (dict, list)):
                raise _BadLine(f"missing id field {opts.id_field!r}")
            if isinstance(rid, str) and has_surrogate(rid):
                raise _BadLine(f"id field {opts.id_field!r} contains a lone surrogate escape (not valid Unicode)")
            document = f"{self.paths.in_label}:{opts.id_field}={rid}"
        else:
            document = f"{self.paths.in_label}:line {lineno}"
        ident_id, ghost, place = self._identifier(owner)
        if ghost in text:
            self.counts["already_tagged"] += 1
            return raw
        rng = random.Random(f"{opts.seed}:{lineno}") if opts.seed is not None else self.sys_rng
        try:
            offset, inserted = place(text, rng)
        except NoBoundaryError:
            self.counts["no_boundary"] += 1
            return None
        new_text = text[:offset] + inserted + text[offset:]
        get_text = self.get_text

        def reads_back(new_line: str) -> bool:
            """The spliced line parses, and its text field is the new text (so the span went there)."""
            try:
                return get_text(json.loads(new_line[1:] if new_line[:1] == "\ufeff" else new_line)) == new_text
            except ValueError:
                return False

        spliced = None if line is None else splice(line, opts.text_field, offset, inserted, raw.isascii(), text,
                                                   reads_back)
        if spliced is None:
            raise _BadLine(f"cannot insert into text field {opts.text_field!r} without rewriting the rest of the line")
        new_raw = spliced.encode("utf-8", "surrogatepass")
        self.pending.append((ident_id, document, sha256_bytes(text.encode("utf-8")),
                             sha256_bytes(new_text.encode("utf-8")), offset, opts.position))
        self.counts["inserted"] += 1
        return new_raw

    def _record(self, raw: bytes, lineno: int, in_offset: int) -> bytes:
        """What one input line becomes in the output."""
        obj, line = self._parse(raw, in_offset)
        if obj is None and line is None:
            self.counts["blank"] += 1
            return raw
        if type(obj) is not dict:
            raise _BadLine(f"expected a JSON object, got {type(obj).__name__}")
        opts = self.opts
        owner = self.get_owner(obj)
        if owner is _MISSING or owner is None or isinstance(owner, (dict, list, bool)):
            raise _BadLine(f"missing owner field {opts.owner_field!r}" if owner is _MISSING or owner is None
                           else f"owner field {opts.owner_field!r} is not a string or number")
        text = self.get_text(obj)
        if type(text) is not str:
            raise _BadLine(f"missing text field {opts.text_field!r}" if text is _MISSING
                           else f"text field {opts.text_field!r} is not a string")
        if has_surrogate(text):
            raise _BadLine(f"text field {opts.text_field!r} contains a lone surrogate escape (not valid Unicode)")
        owner = self._owner_name(owner)
        self.counts["records"] += 1
        st = self.owners.get(owner)
        if st is None:
            st = self.owners[owner] = [0, 0]
        st[0] += 1
        allowed = st[0] if opts.max_per_owner is None else min(opts.max_per_owner, st[0])
        if opts.fraction is not None:
            allowed = min(allowed, math.ceil(st[0] * opts.fraction - 1e-9))
        if st[1] >= allowed:
            self.counts["not_selected"] += 1
            return raw
        out = self._insert(raw, line, obj, text, owner, lineno)
        if out is None:
            return raw
        st[1] += 1
        return out

    def _owner_name(self, owner: Any) -> str:
        """The record's owner, normalised as the ledger stores it (cached: a corpus has few owners)."""
        got = self.owner_names.get(owner)
        if got is None:
            name = owner if type(owner) is str else str(owner)
            if has_surrogate(name):
                raise _BadLine(f"owner field {self.opts.owner_field!r} contains a lone surrogate escape "
                               f"(not valid Unicode)")
            try:
                got = normalise_owner(name, f"owner field {self.opts.owner_field!r}")
            except InputError as e:
                raise _BadLine(str(e)) from None
            if len(self.owner_names) < 1_000_000:
                self.owner_names[owner] = got
        return got

    def _loop(self) -> None:
        from tqdm import tqdm

        opts, counts, bad = self.opts, self.counts, self.bad
        self.get_owner, self.get_text = _getter(opts.owner_field), _getter(opts.text_field)
        self.owner_names: dict[Any, str] = {}
        self.sys_rng = _BufferedSystemRandom()
        bar = tqdm(total=self.total, initial=self.in_offset, unit="B", unit_scale=True, unit_divisor=1024,
                   file=sys.stderr, disable=not opts.progress, desc="tag-jsonl", leave=False)
        hash_update = self.in_hash.update if self.resumable else None
        record, write, label = self._record, self.fout.write, self.paths.in_label
        lineno, in_offset, bytes_out = self.lineno, self.in_offset, self.bytes_out
        since_bar = since_cp = 0
        try:
            for raw in self.fin:
                lineno += 1
                in_offset += len(raw)
                since_bar += len(raw)
                if hash_update is not None:
                    hash_update(raw)
                try:
                    out = record(raw, lineno, in_offset)
                except _BadLine as e:
                    msg = f"{label}, line {lineno}: {e}"
                    if not opts.skip_bad:
                        raise InputError(msg + "; use --skip-bad to copy such lines through unchanged") from None
                    counts["bad"] += 1
                    if len(bad) < MAX_LISTED_BAD:
                        bad.append({"line": lineno, "reason": str(e)})
                    out = raw
                write(out)
                bytes_out += len(out)
                since_cp += 1
                if since_cp >= opts.checkpoint_every and self.resumable:
                    self.lineno, self.in_offset, self.bytes_out = lineno, in_offset, bytes_out
                    self._checkpoint()
                    since_cp = 0
                    if self.after_checkpoint is not None:
                        self.after_checkpoint(self.n_checkpoints)
                if since_bar >= 1 << 20:
                    bar.update(since_bar)
                    since_bar = 0
            bar.update(since_bar)
        finally:
            bar.close()
        self.lineno, self.in_offset, self.bytes_out = lineno, in_offset, bytes_out


_RAW_DECODE = json.JSONDecoder().raw_decode  # the decoder json.loads uses, same settings
