"""Tag text files (and folders of them) with one identifier's ghost, recording every insertion.

Invariants (docs/insertion.md lists the tests that hold each one):

* No input byte is lost. Every path is compared with every other by identity (inode) or real path
  before anything is written: an output that is an input is refused; so is an output that already
  exists with other content. A file rewritten in place is re-read inside the ledger transaction that
  replaces it, so a second process that changed it meanwhile makes this one refuse rather than overwrite.
* The ledger and the files never disagree. A file is written to a temp file (fsynced) in the target
  folder, then, inside one ledger transaction, the insertion is recorded and the temp file renamed over
  the target (fsio.atomic_write); a failed rename rolls the record back. A file a killed run renamed but
  never recorded is recognised and its record rebuilt ("recovered").
* No character changes except the inserted span: the encoding, a BOM and the newline style are kept
  (documents.py).
"""
from __future__ import annotations

import fnmatch
import os
import random
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ghostsent.errors import GhostsentError, InputError, OutputError
from ghostsent.fsio import atomic_write, identity
from ghostsent.insert import DEFAULT_POSITION, POSITIONS, where
from ghostsent.names import path_label
from ghostsent.sentences import Boundary
from ghostsent.tagging.core import ALREADY_TAGGED, NO_BOUNDARY, OwnerGhost, sha256_hex, tag_text
from ghostsent.tagging.documents import BinaryFileError, TextFile, decode_existing, read_file

# What a folder contributes when no pattern is given: text and Markdown, like `black`/`ruff` walk only
# the files they understand. Hidden files and folders are skipped; files named explicitly always count.
DEFAULT_GLOBS = ("*.txt", "*.md", "*.markdown", "*.rst", "*.text")


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


def expand_paths(paths: Iterable[Path], globs: Sequence[str] = DEFAULT_GLOBS,
                 exclude: Sequence[Path] = ()) -> list[Path]:
    """Files named as they are; folders walked (sorted, links to folders not followed), keeping files
    whose name matches one of `globs`, skipping hidden names and anything under `exclude` (the output
    folder). A path that does not exist is kept: reading it reports it."""
    skip = {os.path.realpath(p) for p in exclude}
    out: list[Path] = []
    for p in paths:
        if not p.is_dir():
            out.append(p)
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and os.path.realpath(Path(root, d)) not in skip)
            out += [Path(root, f) for f in sorted(files)
                    if not f.startswith(".") and any(fnmatch.fnmatch(f, g) for g in globs)]
    return out


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
                             f"output folder, or tag in place", hint="out")
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
    globs: Sequence[str] | None = None,
) -> list[FileResult]:
    """Insert `identifier`'s ghost into each file; folders are walked for files matching `globs`
    (default DEFAULT_GLOBS; hidden names skipped, like black and ruff). All files are read, decoded and
    their outputs checked before anything is written, so one bad file or unsafe output stops the run with
    nothing written. If writing fails part-way, the error names the files already changed (each recorded)."""
    if position not in POSITIONS:
        raise InputError(f"unknown position {position!r} (choose from {', '.join(POSITIONS)})")
    exclude = [] if (in_place or dry_run) else [out_dir or Path("tagged")]
    given = list(paths)
    paths = unique_paths(expand_paths(given, tuple(globs or DEFAULT_GLOBS), exclude))
    if not paths:
        raise InputError(f"no files to tag: {', '.join(map(str, given))} holds no file matching "
                         + ", ".join(globs or DEFAULT_GLOBS), hint="glob")
    mapping = {} if (in_place or dry_run) else output_paths(paths, out_dir or Path("tagged"))
    docs: dict[Path, TextFile | None] = {}
    for p in paths:
        try:
            docs[p] = read_file(p, encoding)
        except BinaryFileError:
            docs[p] = None
    tagger = FileTagger(ledger, identifier, in_place, backup, dry_run, position, rng, warn)
    results, jobs = [], []
    for p in paths:
        res, job = tagger.plan(p, docs[p], mapping.get(p))
        results.append(res)
        if job is not None:
            jobs.append(job)
    tagger.write_all(jobs)
    return results


class FileTagger:
    """The settings of one tag_files call, shared by its two steps: plan every file, then write."""

    def __init__(self, ledger: Any, identifier: Any, in_place: bool, backup: bool, dry_run: bool, position: str,
                 rng: random.Random | None, warn: Callable[[str], None] | None) -> None:
        self.ledger, self.identifier = ledger, identifier
        self.ghost = OwnerGhost.of(identifier, position)
        self.in_place, self.backup, self.dry_run = in_place, backup, dry_run
        self.position, self.rng, self.warn = position, rng or random.SystemRandom(), warn

    def plan(self, p: Path, doc: TextFile | None, dst: Path | None) -> tuple[FileResult, _FileJob | None]:
        """The result for one file and, if anything is to be written or recorded, the job. Refuses an
        existing output file that does not already carry the ghost."""
        label = path_label(p)
        if doc is None:
            if self.warn:
                self.warn(f"{label}: binary file (contains NUL bytes), skipped")
            return FileResult(label, "binary", message="binary file, skipped"), None
        tag = tag_text(doc.text, self.ghost, self.rng)
        if tag.status == ALREADY_TAGGED:
            res = FileResult(label, "already-tagged", message="ghost sentence already present; nothing inserted")
            return res, (self.recovery(res, Path(os.path.realpath(p)), doc) if self.in_place and not self.dry_run
                         else None)
        if tag.status == NO_BOUNDARY:
            msg = "empty document" if not doc.text.strip() else "no sentence boundary outside protected regions"
            return FileResult(label, "no-boundary", message=f"{msg}; left unchanged"), None
        at = where(doc.text, tag.offset, tag.inserted)
        new_raw = doc.encode(tag.new_text)
        res = FileResult(label, "would-tag" if self.dry_run else "tagged", offset=at.offset, line=at.line,
                         col=at.col, snippet=at.snippet, sha256_before=sha256_hex(doc.raw),
                         sha256_after=sha256_hex(new_raw))
        if self.dry_run:
            return res, None
        if self.in_place:
            return res, self._in_place_job(p, label, doc, new_raw, res)
        return self._out_job(p, label, doc, new_raw, res, dst)

    def _in_place_job(self, p: Path, label: str, doc: TextFile, new_raw: bytes, res: FileResult) -> _FileJob:
        target = Path(os.path.realpath(p))  # write through a symbolic link, never replace the link
        st = os.stat(target)
        if st.st_nlink > 1 and self.warn:
            self.warn(f"{label}: has {st.st_nlink} hard links; only this name gets the tagged file, the "
                      f"other names keep the original")
        res.output = path_label(target)
        return _FileJob(target, doc.raw, new_raw, res, True, None, self.position)

    def _out_job(self, p: Path, label: str, doc: TextFile, new_raw: bytes, res: FileResult,
                 dst: Path) -> tuple[FileResult, _FileJob | None]:
        if os.path.lexists(dst):
            existing = decode_existing(dst, doc.encoding)
            if existing is None or self.ghost.text not in existing.text:
                raise OutputError(f"{dst}: already exists and does not carry this ghost sentence; remove it or "
                                  f"choose another output folder (nothing was written)", hint="out")
            done = FileResult(label, "already-tagged", output=path_label(dst),
                              message="output already carries the ghost sentence; nothing written")
            return done, self.recovery(done, Path(os.path.realpath(dst)), existing)
        res.output = path_label(dst)
        return res, _FileJob(dst, doc.raw, new_raw, res, False, stat.S_IMODE(os.stat(p).st_mode), self.position)

    def recovery(self, res: FileResult, target: Path, doc: TextFile) -> _FileJob | None:
        """A file that carries our inserted span but has no ledger record: a run was killed between the
        rename and the COMMIT. Removing the span gives the original exactly (nothing else ever
        changes), so the missing record is rebuilt (strategy "recovered") instead of staying lost."""
        raw_sha = sha256_hex(doc.raw)
        document = path_label(target)
        if self.ledger.has_insertion(self.identifier.id, document, raw_sha):
            return None
        for kind in ("after", "before"):
            span = Boundary(0, kind).inserted(self.ghost.text)
            at = doc.text.find(span)
            if at >= 0:
                break
        else:
            return None  # the ghost was pasted in by hand, not inserted by ghostsent
        res.sha256_before = sha256_hex(doc.encode(doc.text[:at] + doc.text[at + len(span):]))
        res.sha256_after, res.offset, res.output = raw_sha, at, document
        res.message = "ghost sentence already present; added its missing ledger record (an earlier run was cut off)"
        return _FileJob(target, doc.raw, None, res, True, None, "recovered")

    def write_all(self, jobs: list[_FileJob]) -> None:
        """Write every job; a failure part-way names the files already changed (each recorded)."""
        done: list[str] = []
        try:
            for job in jobs:
                self.write(job)
                if job.new_raw is not None:
                    done.append(job.result.output or job.result.path)
        except (GhostsentError, OSError) as e:
            if not done:
                raise
            msg = f"{e}; files already changed (each recorded in the ledger): {', '.join(done)}"
            raise (e.again(msg) if isinstance(e, GhostsentError) else OutputError(msg)) from None
        except KeyboardInterrupt:
            if done and self.warn:
                self.warn(f"interrupted; files already changed (each recorded in the ledger): {', '.join(done)}")
            raise

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
