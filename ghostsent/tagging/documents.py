"""Text files as bytes and as text: decode strictly, keep the encoding and BOM, encode back exactly.

A tagged file must differ from its original only by the inserted span, so a file is decoded only if its
encoding round-trips it byte for byte; the BOM is kept; UTF-16/32 without a BOM (byte order unknown)
and files with NUL bytes (binary) are refused rather than guessed.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from ghostsent.errors import InputError

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


@dataclass
class TextFile:
    """One decoded file: its bytes, its text (without the BOM), the codec and the BOM to write it back."""

    path: Path
    raw: bytes
    text: str
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
            raise InputError(f"{path}: encoding {encoding} needs a byte-order mark to tell the byte order and "
                             f"this file has none; name the order: {enc}-le or {enc}-be", hint="encoding")
        return b"", "utf-8"
    if enc in _ORDERED:
        family = enc[:-3]
        other = next(n for n in _ORDERED if n.startswith(family) and n != enc)
        if raw.startswith(_ORDERED[other]) and not raw.startswith(_ORDERED[enc]):
            raise InputError(f"{path}: starts with a {other} byte-order mark but encoding {encoding} was given; "
                             f"use {family} (the mark decides) or {other}", hint="encoding")
        if raw.startswith(_ORDERED[enc]):
            return _ORDERED[enc], enc
    return b"", enc


def decode_file(path: Path, raw: bytes, encoding: str | None = None) -> TextFile:
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
            f"(byte 0x{body[e.start]:02x}); name the file's encoding (e.g. latin-1)", hint="encoding"
        ) from None
    if text.encode(enc) != body:
        raise InputError(f"{path}: {enc} does not round-trip this file byte for byte; refusing to rewrite it")
    return TextFile(path, raw, text, enc, bom)


def read_file(path: Path, encoding: str | None = None) -> TextFile:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    return decode_file(path, raw, encoding)


def decode_existing(path: Path, encoding: str) -> TextFile | None:
    """An existing output file decoded like its input, or None if it cannot be."""
    if not path.is_file():
        return None
    try:
        return decode_file(path, path.read_bytes(), encoding)
    except (InputError, OSError):
        return None
