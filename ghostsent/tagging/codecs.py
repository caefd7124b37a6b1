"""Compressed JSONL (.gz, .zst): tag-jsonl reads through the codec and writes OUT.partial uncompressed
(so a run stays resumable: truncating and hashing work on plain bytes), then compresses it into OUT
at the end (temp file beside OUT, fsynced, renamed)."""
from __future__ import annotations

import gzip
import io
import os
import shutil
import tempfile
from typing import IO

from ghostsent.extras import require

CODECS = {".gz": "gzip", ".zst": "zstd"}


def codec_of(path: str) -> str | None:
    """The compression a file name asks for ("-" and other names: none)."""
    return CODECS.get(os.path.splitext(path)[1].lower()) if path != "-" else None


def open_read(path: str, codec: str | None) -> IO[bytes]:
    """A binary reader of the decompressed bytes (iterable by line)."""
    if codec is None:
        return open(path, "rb")
    if codec == "gzip":
        return gzip.open(path, "rb")
    return io.BufferedReader(_ZstdRaw(path), 1 << 20)


class _ZstdRaw(io.RawIOBase):
    """Decompressed bytes of a .zst file (one or more frames); EOFError if the last frame is cut short
    (zstandard's stream reader would just stop)."""

    def __init__(self, path: str) -> None:
        require("formats", "zstandard", what=f"reading {path}")
        import zstandard
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._f, self._d, self._out, self._started = open(path, "rb"), None, b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, b: "bytearray | memoryview") -> int:
        while not self._out:
            chunk = self._f.read(1 << 20)
            if not chunk:
                if self._d is not None and not self._d.eof:
                    raise EOFError("a zstd frame is cut short")
                return 0
            while chunk:
                if self._d is None or self._d.eof:
                    self._d = self._new()
                self._out += self._d.decompress(chunk)
                chunk = self._d.unused_data if self._d.eof else b""
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def compress_into(src: str, dst: str, codec: str) -> None:
    """Compress file `src` into `dst` atomically (temp file in dst's folder, fsync, rename)."""
    if codec == "zstd":
        require("formats", "zstandard", what=f"writing {dst}")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dst)), prefix=".ghostsent-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, open(src, "rb") as fin:
            if codec == "gzip":
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as z:
                    shutil.copyfileobj(fin, z, 1 << 20)
            else:
                import zstandard
                zstandard.ZstdCompressor().copy_stream(fin, raw, size=os.path.getsize(src))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
