"""Writing files so that a crash, a full disk or a second process never leaves a half-written one.

Every ghostsent writer (tagged files, backups, reports, exports, the corpus cache, study results) goes
through atomic_write: temp file in the destination's folder -> write -> fsync -> mode (and owner) ->
rename over the destination -> fsync the folder. A reader therefore sees the old file or the new one,
never a mixture, and a failure leaves the old one and no temp file. Paths are compared by identity
(device and inode) or real path, never by spelling, so links and `./a` vs `a` cannot fool a check.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from ghostsent.errors import OutputError


def umask_mode(base: int = 0o666) -> int:
    """What a plain open() would create: `base` minus the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def fsync_dir(path: "str | os.PathLike[str]") -> None:
    """Make a rename in `path` durable (best effort: some file systems refuse directory fsync)."""
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


def identity(path: "str | os.PathLike[str]") -> tuple[int, int] | None:
    """(st_dev, st_ino) of what `path` points to (links followed), or None if it does not exist."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_dev, st.st_ino


def same_file(a: "str | os.PathLike[str]", b: "str | os.PathLike[str]") -> bool:
    """True when `a` and `b` name the same file: same inode (hard and symbolic links included), or the
    same real path (for files that do not exist yet)."""
    ia = identity(a)
    if ia is not None and ia == identity(b):
        return True
    return os.path.realpath(a) == os.path.realpath(b)


def _cannot(path: "str | os.PathLike[str]", e: OSError, what: str = "write") -> OutputError:
    return OutputError(f"{os.fspath(path)}: cannot {what} ({e.strerror or e})")


def atomic_write(dst: "str | os.PathLike[str]", data: "bytes | str", *, mode: int | None = None,
                 like: "str | os.PathLike[str] | None" = None, before_rename: Callable[[], Any] | None = None,
                 ledger: Any = None) -> None:
    """Replace `dst` with `data` atomically.

    Mode: `mode` if given; else the mode (and owner, where it differs and may be set) of the existing
    file `like`; else what the umask allows. With `ledger` and `before_rename`, the callback (which
    checks and records) and the rename run in one ledger transaction: a failed rename rolls the record
    back, a failed check leaves `dst` untouched. OSError becomes OutputError naming `dst`. Text is
    written as UTF-8."""
    dst = Path(dst)
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    except OSError as e:
        raise _cannot(dst, e) from None
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            _set_mode(tmp, mode, like)
        except OSError as e:
            raise _cannot(dst, e) from None
        if ledger is not None and before_rename is not None:
            with ledger.transaction():
                before_rename()
                _replace(tmp, dst)
        else:
            _replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(dst.parent)


def _replace(tmp: str, dst: Path) -> None:
    try:
        os.replace(tmp, dst)
    except OSError as e:
        raise _cannot(dst, e) from None


def _set_mode(tmp: str, mode: int | None, like: "str | os.PathLike[str] | None") -> None:
    if mode is not None:
        os.chmod(tmp, mode)
        return
    if like is None:
        os.chmod(tmp, umask_mode())
        return
    st = os.stat(like)
    mine = os.stat(tmp)
    if (st.st_uid, st.st_gid) != (mine.st_uid, mine.st_gid):
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except PermissionError:
            raise OutputError(f"{os.fspath(like)}: cannot keep its owner {st.st_uid}:{st.st_gid} when rewriting "
                              f"it (only root can); nothing written: write a tagged copy instead", hint="out") from None
    os.chmod(tmp, st.st_mode & 0o7777)  # after chown, which may clear set-id bits


def create_exclusive(path: "str | os.PathLike[str]", mode: int | None = None) -> int:
    """Create `path` as a new file (never following a link, never truncating one that exists); returns
    the descriptor, opened for reading and writing."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, umask_mode() if mode is None else mode)
    except OSError as e:
        raise _cannot(path, e, "create") from None


@contextlib.contextmanager
def exclusive_lock(path: "str | os.PathLike[str]", what: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking flock on the lock file `path` (created if needed, removed on
    release). A second holder is refused at once with an OutputError about `what`.

    After locking, the file must still be the one at `path`: a holder that released and removed it
    in between would otherwise let two processes hold locks on two different files."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise _cannot(path, e, "create the lock file") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"{what}: another ghostsent run is writing it (lock {os.fspath(path)} is held); "
                              f"wait for that run to finish") from None
        st = os.fstat(fd)
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
