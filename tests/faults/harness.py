"""The corpora the fault tests run on and the invariants every one of them asserts.

Shared by tests/faults/ (a few minutes in CI) and scripts/fault_soak.py (the long randomised run):

* no input byte lost: inputs are compared byte for byte before and after;
* the output is valid or absent: every output line is its input line, or its input line with exactly
  one contiguous insertion that json.loads reads inside the text field;
* the ledger matches the output, both ways: every changed line has exactly one insertion record whose
  hashes and offset describe that change, and every record describes a changed line (check_jsonl,
  check_files);
* failures are one line with the documented exit code (proc.one_line_error).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sqlite3
from pathlib import Path

from ghostsent.ledger import Ledger
from ghostsent.names import normalise_owner, path_label

# Lines a hostile or careless corpus contains, each with whether tag-jsonl must call it a bad record
# (copied through unchanged with --skip-bad) or handle it, keeping all its other bytes exactly.
HOSTILE: list[tuple[bytes, bool]] = [
    (b'{"owner": "h1", "text": "Bad \\ud800 escape. More text here."}', True),          # lone surrogate
    (b'{"owner": "\\udc80", "text": "Owner is a lone surrogate. Yes it is."}', True),
    (b'{"owner": "h2", "text": "Huge numbers stay. Really they do.", "n": 1e400, "m": 1E5, "z": -0.0}', False),
    (b'{"text": "first", "owner": "h3", "text": "Duplicate keys stay. Only the last is read."}', False),
    (b'{"owner": "h4", "text": "Escaped NUL \\u0000 inside. Fine here."}', False),
    (b'{"owner": "h5", "text": "Bad byte \xff here. Not UTF-8."}', True),
    (b'{"owner": "h6", "text": "Raw NUL \x00 here. Not JSON."}', True),
    (b"[1, 2, 3]", True),
    (b'{"owner": "", "text": "Empty owner. Bad record."}', True),
    (b'{"owner": "ev\\u001b[31mil", "text": "Escape in the owner. Bad record."}', True),
    (b'{"owner": "rtl\\u202eeman", "text": "Bidi override in the owner. Bad record."}', True),
    (b'{"owner": "line\\nbreak", "text": "Newline in the owner. Bad record."}', True),
    (b'{"owner": " spaced ", "text": "Spaces around the owner. They are stripped."}', False),
    (b'{"owner": 42, "text": "A numeric owner. Fine."}', False),
    (b'{"owner": "h7", "text": "truncated', True),
    (b"", False),
    (b'{"owner": "h8", "text": "Deep nesting. Still fine.", "d": ' + b"[" * 100 + b"]" * 100 + b"}", False),
    (b'{"owner": "h9", "text": "Before. Unclosed <script>var a = 1. Bee = 2. Cee."}', False),
    ('{"owner": "h10", "text": "Caf\u00e9 na\u00efve. R\u00e9sum\u00e9 done. \U0001F600 Fin."}'.encode(), False),
    (b'\xef\xbb\xbf{"owner": "h11", "text": "A BOM starts this line. Kept as it is."}', False),
    (b'{ "owner" :"h12" ,\t"text":  "Odd spacing \\/ and \\u00e9 escapes. Kept."  , "k" : [1 , 2.50] }', False),
]
BAD = {line for line, bad in HOSTILE if bad}


def expected_bad(data: bytes) -> list[int]:
    """Line numbers of `data` that tag-jsonl must report as bad records."""
    return [n for n, line in enumerate(split_lines(data), start=1) if line.rstrip(b"\r\n") in BAD]


WORDS = ("river stone light garden paper window silver morning ocean forest letter music winter "
         "harbor candle bridge meadow thunder").split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "!", "?"])


def corpus(n: int, seed: int, owners: int = 6, hostile: bool = True, long: int = 0) -> bytes:
    """n JSONL lines: ordinary records of `owners` owners, hostile lines sprinkled in (when `hostile`),
    some CRLF endings. `long` extra sentences per record make the output grow fast (disk tests)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        if hostile and rng.random() < 0.08:
            line = rng.choice(HOSTILE)[0]
        else:
            text = " ".join(sentence(rng) for _ in range(rng.randint(2, 5) + long))
            line = json.dumps({"id": i, "owner": f"owner{rng.randrange(owners)}", "text": text}).encode()
        lines.append(line + (b"\r\n" if rng.random() < 0.1 else b"\n"))
    return b"".join(lines)


def split_lines(data: bytes) -> list[bytes]:
    """Lines as tag-jsonl reads them: split after each b'\\n' only."""
    return re.findall(rb"[^\n]*\n|[^\n]+$", data)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_insertion(old: bytes | str, new: bytes | str) -> bool:
    """`new` is `old` with one contiguous piece inserted and nothing else changed."""
    if len(new) <= len(old):
        return False
    p = len(os.path.commonprefix([old, new]))
    s = len(os.path.commonprefix([old[::-1], new[::-1]]))
    return p + s >= len(old)


def ledger_rows(ledger_path: Path) -> tuple[list, dict]:
    if not ledger_path.exists() or ledger_path.stat().st_size == 0:
        return [], {}  # killed before SQLite wrote the new ledger's first page
    with Ledger(ledger_path, create=False) as led:
        return led.insertions(), {i.id: i for i in led.identifiers()}


def check_jsonl(inp: bytes, out: bytes, ledger_path: Path, in_label: str, text_field: str = "text",
                owner_field: str = "owner") -> int:
    """Assert that OUT is IN plus ghosts, and that the ledger's records for IN are exactly those ghosts.
    Returns the number of insertions."""
    insertions, idents = ledger_rows(ledger_path)
    by_line: dict[int, object] = {}
    prefix = in_label + ":line "
    for ins in insertions:
        if ins.document.startswith(prefix):
            n = int(ins.document[len(prefix):])
            assert n not in by_line, f"line {n} recorded twice"
            by_line[n] = ins
    a, b = split_lines(inp), split_lines(out)
    assert len(a) == len(b), (len(a), len(b))
    changed = 0
    for n, (x, y) in enumerate(zip(a, b), start=1):
        if x == y:
            assert n not in by_line, f"line {n}: recorded but unchanged"
            continue
        assert n in by_line, f"line {n}: changed but not recorded"
        ins = by_line.pop(n)
        assert one_insertion(x, y), f"line {n}: more than one insertion:\n{x!r}\n{y!r}"
        before, after = json.loads(x)[text_field], json.loads(y)[text_field]
        assert (sha(before.encode()), sha(after.encode())) == (ins.sha256_before, ins.sha256_after), n
        span = len(after) - len(before)
        assert after[:ins.offset] == before[:ins.offset] and after[ins.offset + span:] == before[ins.offset:], n
        ident = idents[ins.identifier_id]
        assert ident.text in after[ins.offset:ins.offset + span] and ident.text not in before, n
        owner = json.loads(x)[owner_field]
        assert ident.owner == normalise_owner(owner if isinstance(owner, str) else str(owner)), n
        changed += 1
    assert not by_line, f"records without a changed line: {sorted(by_line)[:5]}"
    return changed


def check_files(originals: dict[Path, bytes], ledger_path: Path) -> None:
    """Files tagged by `insert`: each file is its original or carries ghosts; the identifiers whose
    ghost a file carries are exactly those with a record for it; its newest record describes its
    current bytes; a file without records is untouched."""
    insertions, idents = ledger_rows(ledger_path)
    for path, original in originals.items():
        doc = path_label(os.path.realpath(path))
        recs = [i for i in insertions if i.document == doc]
        now = path.read_bytes()
        if not recs:
            assert now == original, f"{path}: changed without a record"
            continue
        text = now.decode("utf-8")
        carried = {i for i, ident in idents.items() if ident.text in text}
        assert carried == {r.identifier_id for r in recs}, path
        assert recs[-1].sha256_after == sha(now), path
        assert recs[0].sha256_before == sha(original), path


def ledger_ok(ledger_path: Path) -> None:
    """SQLite's own integrity check, on a plain connection (no ghostsent code involved)."""
    if not ledger_path.exists():
        return
    con = sqlite3.connect(ledger_path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
