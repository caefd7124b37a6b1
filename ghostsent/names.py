"""Owner names, file-name labels and terminal-safe text: one rule each, used wherever they appear.

Why here and not in the CLI: an owner name is normalised when it is stored AND when it is looked up
(a ledger lookup with "bob " must find "bob"), and both happen in the library. Escaping for display
is kept next to it because the same characters are the problem: control characters (terminal escape
sequences), bidirectional overrides (text that displays differently from what it is) and the lone
surrogates Python uses for file-name bytes that are not UTF-8.
"""
from __future__ import annotations

import os
import re
from typing import Any

from ghostsent.errors import InputError

# Bidirectional embedding/override/isolate controls: they reorder what a terminal shows.
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# Everything printing must not emit raw: C0/C1 controls and DEL, surrogates, bidi controls.
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\ud800-\udfff{_BIDI}]")
# What json.dumps(ensure_ascii=False) leaves raw inside strings (it escapes C0 controls itself; raw
# C0 characters in its output are structural whitespace and must stay).
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f\ud800-\udfff{_BIDI}]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def normalise_owner(owner: Any, where: str = "owner") -> str:
    """The one form an owner name is stored and looked up in: surrounding whitespace stripped.

    Refused (InputError naming `where`): a non-string, an empty name, a line break, and any control,
    surrogate or bidirectional-override character (they would make `list` print escape sequences or
    a name that reads as another)."""
    if not isinstance(owner, str):
        raise InputError(f"{where}: owner must be a string, got {type(owner).__name__}")
    name = owner.strip()
    if not name:
        raise InputError(f"{where}: owner name is empty")
    if any(c in _LINE_BREAKS for c in name):
        raise InputError(f"{where}: owner name must be a single line")
    bad = _UNSAFE.search(name)
    if bad:
        raise InputError(f"{where}: owner name contains the control character U+{ord(bad.group()):04X}")
    return name


def has_surrogate(text: str) -> bool:
    """True if `text` holds a lone surrogate (from a JSON "\\ud800" escape): not encodable as UTF-8."""
    return not text.isascii() and re.search("[\ud800-\udfff]", text) is not None


def path_label(path: "str | os.PathLike[str]") -> str:
    """A path as text that is always valid UTF-8: bytes of a non-UTF-8 file name become \\xNN.

    This is the name the ledger records, so an insertion into `caf\\xe9.txt` is stored (and shown) as
    that, rather than failing to encode."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _escape(m: "re.Match[str]") -> str:
    c = m.group()
    if c in _ESCAPES:
        return _ESCAPES[c]
    n = ord(c)
    if 0xDC80 <= n <= 0xDCFF:  # a file-name byte smuggled through os.fsdecode
        return f"\\x{n - 0xDC00:02x}"
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def printable(text: str) -> str:
    """`text` with every control, surrogate and bidi character escaped: safe to print on a terminal."""
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


def _json_escape(m: "re.Match[str]") -> str:
    return f"\\u{ord(m.group()):04x}"


def json_printable(doc: str) -> str:
    """A JSON document (from json.dumps) with the characters json leaves raw (DEL, C1 controls, bidi
    controls, surrogates) written as \\uXXXX escapes: the same JSON value, safe on a terminal. Such
    characters can only occur inside JSON strings, where the escape means the same character."""
    return _JSON_UNSAFE.sub(_json_escape, doc) if _JSON_UNSAFE.search(doc) else doc


