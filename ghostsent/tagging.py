"""Tag real files and JSONL corpora with ghost sentences, recording every insertion in the ledger.

Two invariants drive the design:

* The ledger and the files never disagree. A file is written to a temp file (fsynced) in the target
  directory, then, inside one ledger transaction, the insertion is recorded and the temp file renamed
  over the target; a failed rename rolls the record back. A JSONL corpus is written to OUT.partial;
  every few thousand lines the output is fsynced and, in ONE transaction, that chunk's insertions and
  the checkpoint (lines done, output bytes, input offset) are committed. A crash therefore leaves a
  checkpoint that matches exactly what the ledger holds, and a resume truncates OUT.partial back to it.
* No character of a document changes except the inserted span, and bytes outside it survive: the
  encoding, a BOM and the newline style (\\n or \\r\\n) are kept; JSONL lines that get no ghost are
  copied byte for byte.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Callable

from ghostsent.errors import InputError
from ghostsent.insert import DEFAULT_POSITION, POSITIONS, NoBoundaryError, Placement, describe, placer, plan

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_BOM_AWARE = {"utf-8", "utf8", "utf-8-sig", "utf-16", "utf-32", "utf_8", "u8"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def decode_document(path: Path, raw: bytes, encoding: str | None = None) -> Document:
    """Decode strictly; a bad byte is an InputError naming the file and the byte offset."""
    enc = (encoding or "utf-8").lower()
    bom = b""
    if enc in _BOM_AWARE:
        for mark, name in _BOMS:
            if raw.startswith(mark):
                bom, enc = mark, name
                break
        else:
            if enc == "utf-8-sig":
                enc = "utf-8"
            elif enc in ("utf-16", "utf-32"):
                enc = enc + "-le"
    if not bom and b"\x00" in raw and not enc.startswith(("utf-16", "utf-32")):
        raise BinaryFileError(f"{path}: binary file (contains NUL bytes), skipped")
    try:
        codecs.lookup(enc)
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r}") from None
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


def atomic_write(dst: Path, data: bytes, mode_from: Path | None = None,
                 before_rename: Callable[[], Any] | None = None, ledger: Any = None) -> None:
    """Write `data` to `dst` via a fsynced temp file in the same directory and os.replace.

    With `ledger` and `before_rename`, the callback (which records the insertion) and the rename run in
    one ledger transaction: if the rename fails, the record is rolled back.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode_from is not None:
            shutil.copymode(mode_from, tmp)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        if ledger is not None and before_rename is not None:
            with ledger.transaction():
                before_rename()
                os.replace(tmp, dst)
        else:
            os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(dst.parent)


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


def output_paths(paths: list[Path], out_dir: Path) -> dict[Path, Path]:
    """Map inputs to outputs under out_dir: relative paths keep their folders, others their name."""
    mapping: dict[Path, Path] = {}
    seen: dict[Path, Path] = {}
    for p in paths:
        rel = p if (not p.is_absolute() and ".." not in p.parts) else Path(p.name)
        dst = out_dir / rel
        key = Path(os.path.abspath(dst))
        if key in seen and seen[key] != p:
            raise InputError(f"{p} and {seen[key]} would both be written to {dst}; tag them separately")
        if key == Path(os.path.abspath(p)):
            raise InputError(f"{p}: output would overwrite the input; use --in-place")
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
    """Insert `identifier`'s ghost into each file. All files are read and decoded before anything is
    written, so one undecodable file stops the run with nothing written at all."""
    if position not in POSITIONS:
        raise InputError(f"unknown position {position!r} (choose from {', '.join(POSITIONS)})")
    ghost = identifier.text
    mapping = {} if (in_place or dry_run) else output_paths(paths, out_dir or Path("tagged"))
    docs: dict[Path, Document | None] = {}
    for p in paths:
        try:
            docs[p] = read_document(p, encoding)
        except BinaryFileError:
            docs[p] = None
    results = []
    for p in paths:
        doc = docs[p]
        if doc is None:
            if warn:
                warn(f"{p}: binary file (contains NUL bytes), skipped")
            results.append(FileResult(str(p), "binary", message="binary file, skipped"))
            continue
        if ghost in doc.text:
            results.append(FileResult(str(p), "already-tagged",
                                      message="ghost sentence already present; nothing inserted"))
            continue
        try:
            placement: Placement = plan(doc.text, ghost, position, rng)
        except NoBoundaryError:
            msg = "empty document" if not doc.text.strip() else "no sentence boundary outside protected regions"
            results.append(FileResult(str(p), "no-boundary", message=f"{msg}; left unchanged"))
            continue
        info = describe(doc.text, placement)
        res = FileResult(str(p), "would-tag" if dry_run else "tagged", offset=info["offset"], line=info["line"],
                         col=info["col"], snippet=info["snippet"], sha256_before=sha256_bytes(doc.raw))
        new_raw = doc.encode(placement.apply(doc.text))
        res.sha256_after = sha256_bytes(new_raw)
        if dry_run:
            results.append(res)
            continue
        dst = p if in_place else mapping[p]
        res.output = str(dst)
        if in_place and backup:
            bak = _backup_path(p, doc.raw)
            if not bak.exists():
                atomic_write(bak, doc.raw, mode_from=p)
            res.backup = str(bak)
        holder: dict[str, int] = {}

        def record(dst: Path = dst, res: FileResult = res) -> None:
            holder["id"] = ledger.add_insertion(identifier.id, os.path.abspath(dst), res.sha256_before,
                                                res.sha256_after, res.offset, position)

        atomic_write(dst, new_raw, mode_from=p, before_rename=record, ledger=ledger)
        res.insertion_id = holder.get("id")
        results.append(res)
    return results


# --- JSONL corpora ----------------------------------------------------------------------------

CHECKPOINT_EVERY = 5000
MAX_LISTED_BAD = 1000


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

    def validate(self) -> None:
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


def _set_field(obj: dict, name: str, value: Any) -> None:
    if name in obj or "." not in name:
        obj[name] = value
        return
    parts = name.split(".")
    cur = obj
    for part in parts[:-1]:
        cur = cur[part]
    cur[parts[-1]] = value


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


def checkpoint_key(out_path: str) -> str:
    return "tag-jsonl:" + os.path.abspath(out_path)


def _tail_hash(f: IO[bytes], end: int) -> str:
    """SHA-256 of the 4 KiB of input before `end`: a cheap check that a resume reads the same file."""
    start = max(0, end - 4096)
    f.seek(start)
    return sha256_bytes(f.read(end - start))


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
    owner before their first insertion (raises InputError to refuse a ghost, e.g. one filters drop)."""
    opts.validate()
    from ghostsent.wordlists import load_wordlist

    t0 = time.perf_counter()
    stdin_mode = in_path == "-"
    stdout_mode = out_path == "-"
    resumable = not stdin_mode and not stdout_mode
    if opts.resume and not resumable:
        raise InputError("--resume needs a real input and output file (not '-')")
    in_label = "<stdin>" if stdin_mode else in_path
    if not stdin_mode:
        if not os.path.isfile(in_path):
            raise InputError(f"{in_path}: no such file")
        if not stdout_mode and os.path.abspath(in_path) == os.path.abspath(out_path):
            raise InputError(f"{out_path}: output must differ from the input")
    key = checkpoint_key(out_path) if resumable else None
    partial = out_path + ".partial" if not stdout_mode else None

    cp = ledger.get_checkpoint(key) if key else None
    if cp is not None and cp.get("finished"):
        # Everything was committed; only the rename (or the checkpoint deletion) may be missing.
        if os.path.exists(partial):
            os.replace(partial, out_path)
            _fsync_dir(Path(os.path.abspath(out_path)).parent)
        ledger.delete_checkpoint(key)
        summary = dict(cp["summary"])
        summary["note"] = "a previous run had finished; completed its final rename"
        return summary
    if cp is not None and not opts.resume:
        raise InputError(
            f"{out_path}: an interrupted run exists ({cp['lines_done']} lines done, kept in {partial}); "
            f"rerun with --resume to continue it"
        )
    if cp is not None and cp["settings"] != opts.settings():
        diff = sorted(k for k in opts.settings() if cp["settings"].get(k) != opts.settings()[k])
        raise InputError(f"--resume with different settings than the interrupted run: {', '.join(diff)}")
    if resumable and os.path.exists(out_path):
        raise InputError(f"{out_path}: already exists; remove it or choose another output")

    wordlist = None
    idents: dict[str, Any] = {}
    if cp is not None:
        owners: dict[str, list[int]] = {k: list(v) for k, v in cp["owners"].items()}
        counts: dict[str, int] = dict(cp["counts"])
        bad: list[dict] = list(cp["bad"])
        lineno = cp["lines_done"]
        in_offset = cp["in_offset"]
        bytes_out = cp["bytes_out"]
        in_label = cp["in_label"]
        n_checkpoints = cp.get("checkpoints", 0)
    else:
        owners, bad = {}, []
        counts = dict(records=0, inserted=0, already_tagged=0, no_boundary=0, not_selected=0, blank=0,
                      bad=0, new_identifiers=0)
        lineno = in_offset = bytes_out = n_checkpoints = 0
    resumed_from = lineno if cp is not None else None

    # Open input.
    if stdin_mode:
        fin: IO[bytes] = sys.stdin.buffer
        total = None
    else:
        fin = open(in_path, "rb")
        total = os.fstat(fin.fileno()).st_size
        if cp is not None:
            if total < in_offset or _tail_hash(fin, in_offset) != cp["in_tail_sha256"]:
                fin.close()
                raise InputError(f"{in_path}: input changed since the interrupted run; cannot resume")
            fin.seek(in_offset)
    # Open output.
    try:
        if stdout_mode:
            fout: IO[bytes] = tempfile.TemporaryFile()
        elif cp is not None:
            if not os.path.exists(partial) or os.path.getsize(partial) < bytes_out:
                raise InputError(f"{partial}: missing or shorter than the checkpoint; cannot resume "
                                 f"(delete the checkpoint by removing {partial} and starting over is not "
                                 f"safe: the ledger holds its insertions)")
            fout = open(partial, "r+b")
            fout.truncate(bytes_out)
            fout.seek(bytes_out)
        else:
            Path(partial).parent.mkdir(parents=True, exist_ok=True)
            fout = open(partial, "wb")
    except BaseException:
        if not stdin_mode:
            fin.close()
        raise

    settings = opts.settings()
    pending: list[tuple] = []
    sys_rng = _BufferedSystemRandom()
    text_field, owner_field, id_field = opts.text_field, opts.owner_field, opts.id_field
    cap = opts.max_per_owner
    fraction = opts.fraction
    position = opts.position
    seed = opts.seed
    loads = json.loads
    raw_decode = json.JSONDecoder().raw_decode  # the decoder json.loads uses, same settings
    # Encoders built once: json.dumps(obj, ensure_ascii=False) constructs a new JSONEncoder per call.
    # Output is byte-identical to json.dumps with the same flag.
    encode_ascii = json.JSONEncoder().encode
    encode_utf8 = json.JSONEncoder(ensure_ascii=False).encode
    sha256 = hashlib.sha256

    def getter(name: str) -> Callable[[dict], Any]:
        if "." in name:
            return lambda obj: _get_field(obj, name)
        return lambda obj: obj.get(name, _MISSING)

    get_owner, get_text = getter(owner_field), getter(text_field)
    ghosts: dict[str, tuple] = {}  # owner -> (identifier id, ghost text, placer), computed once

    def identifier_for(owner: str) -> Any:
        nonlocal wordlist
        ident = idents.get(owner)
        if ident is None:
            ident = ledger.identifier_for_owner(owner)
            if ident is None:
                if wordlist is None:
                    wordlist = load_wordlist(opts.wordlist)
                ident = ledger.new_identifier(
                    owner, wordlist, n_words=opts.words, template=opts.template,
                    seed=None if seed is None else _owner_seed(seed, owner))
                counts["new_identifiers"] += 1
            idents[owner] = ident
        return ident

    def checkpoint(finished: bool = False) -> None:
        nonlocal n_checkpoints
        fout.flush()
        os.fsync(fout.fileno())
        state = None
        if resumable:
            n_checkpoints += 1
            state = {"version": 1, "in_path": os.path.abspath(in_path), "in_label": in_label,
                     "settings": settings, "lines_done": lineno, "bytes_out": bytes_out,
                     "in_offset": in_offset, "in_tail_sha256": _tail_hash_at(in_offset),
                     "owners": owners, "counts": counts, "bad": bad, "checkpoints": n_checkpoints,
                     "finished": finished}
            if finished:
                state["summary"] = summary_dict()
        with ledger.transaction():
            ledger.add_insertions(pending)
            if state is not None:
                ledger.set_checkpoint(key, state)
        pending.clear()

    def _tail_hash_at(end: int) -> str:
        here = fin.tell()
        h = _tail_hash(fin, end)
        fin.seek(here)
        return h

    def summary_dict() -> dict:
        return {"input": in_label, "output": out_path, "lines": lineno, **counts, "owners": len(owners),
                "bad_lines": bad, "resumed_from_line": resumed_from,
                "seconds": round(time.perf_counter() - t0, 3)}

    from tqdm import tqdm

    bar = tqdm(total=total, initial=in_offset, unit="B", unit_scale=True, unit_divisor=1024,
               file=sys.stderr, disable=not opts.progress, desc="tag-jsonl", leave=False)
    since_bar = 0
    since_cp = 0
    write = fout.write
    committed_any = cp is not None
    try:
        for raw in fin:
            lineno += 1
            in_offset += len(raw)
            since_bar += len(raw)
            try:
                try:
                    if raw[:1] == b"{" and raw[1:2] != b"\x00":
                        # What json.loads(raw) does for such a line (its encoding sniffing says UTF-8),
                        # minus its wrappers; any failure reruns json.loads for its exact error.
                        try:
                            line = raw.decode("utf-8", "surrogatepass")
                            obj, end = raw_decode(line)
                            if end != len(line) and line[end:].strip(" \t\n\r"):
                                obj = loads(raw)
                        except ValueError:
                            obj = loads(raw)
                    else:
                        obj = loads(raw)
                except UnicodeDecodeError as e:
                    raise _BadLine(f"not valid UTF-8 at byte {e.start} of the line "
                                   f"(file byte offset {in_offset - len(raw) + e.start})") from None
                except ValueError as e:
                    if raw.strip():
                        raise _BadLine(f"not valid JSON ({e})") from None
                    obj = None  # a blank line: copied through
                if obj is None and not raw.strip():
                    counts["blank"] += 1
                    out = raw
                else:
                    if type(obj) is not dict:
                        raise _BadLine(f"expected a JSON object, got {type(obj).__name__}")
                    owner = get_owner(obj)
                    if owner is _MISSING or owner is None or isinstance(owner, (dict, list, bool)):
                        raise _BadLine(f"missing owner field {owner_field!r}" if owner is _MISSING or owner is None
                                       else f"owner field {owner_field!r} is not a string or number")
                    text = get_text(obj)
                    if type(text) is not str:
                        raise _BadLine(f"missing text field {text_field!r}" if text is _MISSING
                                       else f"text field {text_field!r} is not a string")
                    if type(owner) is not str:
                        owner = str(owner)
                    counts["records"] += 1
                    st = owners.get(owner)
                    if st is None:
                        st = owners[owner] = [0, 0]
                    st[0] += 1
                    allowed = st[0] if cap is None else min(cap, st[0])
                    if fraction is not None:
                        allowed = min(allowed, math.ceil(st[0] * fraction - 1e-9))
                    out = raw
                    if st[1] >= allowed:
                        counts["not_selected"] += 1
                    else:
                        if id_field is not None:
                            rid = _get_field(obj, id_field)
                            if rid is _MISSING or rid is None or isinstance(rid, (dict, list)):
                                raise _BadLine(f"missing id field {id_field!r}")
                            document = f"{in_label}:{id_field}={rid}"
                        else:
                            document = f"{in_label}:line {lineno}"
                        got = ghosts.get(owner)
                        if got is None:
                            ident = identifier_for(owner)
                            if check_ghost is not None:
                                check_ghost(ident)
                            got = ghosts[owner] = (ident.id, ident.text, placer(ident.text, position))
                        ident_id, ghost, place = got
                        if ghost in text:
                            counts["already_tagged"] += 1
                            st[1] += 1
                        else:
                            rng = random.Random(f"{seed}:{lineno}") if seed is not None else sys_rng
                            try:
                                offset, inserted = place(text, rng)
                            except NoBoundaryError:
                                counts["no_boundary"] += 1
                            else:
                                new_text = text[:offset] + inserted + text[offset:]
                                _set_field(obj, text_field, new_text)
                                ending = b"\r\n" if raw.endswith(b"\r\n") else (b"\n" if raw.endswith(b"\n") else b"")
                                out = (encode_ascii(obj) if raw.isascii() else encode_utf8(obj)).encode("utf-8") + ending
                                pending.append((ident_id, document,
                                                sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
                                                sha256(new_text.encode("utf-8", "surrogatepass")).hexdigest(),
                                                offset, position))
                                counts["inserted"] += 1
                                st[1] += 1
            except _BadLine as e:
                msg = f"{in_label}, line {lineno}: {e}"
                if not opts.skip_bad:
                    raise InputError(msg + "; use --skip-bad to copy such lines through unchanged") from None
                counts["bad"] += 1
                if len(bad) < MAX_LISTED_BAD:
                    bad.append({"line": lineno, "reason": str(e)})
                out = raw
            write(out)
            bytes_out += len(out)
            since_cp += 1
            if since_cp >= opts.checkpoint_every and resumable:
                checkpoint()
                committed_any = True
                since_cp = 0
                if after_checkpoint is not None:
                    after_checkpoint(n_checkpoints)
            if since_bar >= 1 << 20:
                bar.update(since_bar)
                since_bar = 0
        bar.update(since_bar)
        checkpoint(finished=True)
        summary = summary_dict()
    except BaseException as exc:
        bar.close()
        fout.close()
        if not stdin_mode:
            fin.close()
        if resumable and committed_any:
            if isinstance(exc, InputError):
                raise InputError(
                    f"{exc}. Lines up to the last checkpoint are recorded in the ledger, so {partial} is "
                    f"kept: fix the line and rerun with --resume (or add --skip-bad --resume)") from None
            if warn and isinstance(exc, KeyboardInterrupt):
                warn(f"interrupted; progress is kept in {partial}: rerun with --resume to continue")
        elif partial is not None:
            try:
                os.unlink(partial)
            except OSError:
                pass
        raise
    bar.close()
    if not stdin_mode:
        fin.close()
    if stdout_mode:
        fout.seek(0)
        shutil.copyfileobj(fout, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        fout.close()
    else:
        fout.close()
        os.replace(partial, out_path)
        _fsync_dir(Path(os.path.abspath(out_path)).parent)
        if key:
            ledger.delete_checkpoint(key)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary
