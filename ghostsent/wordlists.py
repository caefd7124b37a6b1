"""Word lists: the alphabet that passphrases are drawn from.

A list's size V fixes everything statistical downstream: each word carries log2(V) bits and a model
that never saw a ghost sentence guesses a held-out word with probability at most 1/V. That is why
lists must be exact sets (no duplicates after normalisation) and why the SHA-256 of the list is stored
with every identifier: the null distribution is only valid for the same list.

Shipped list files (in `wordlists/`, installed as package `ghostsent.wordlist_data`, built by
`scripts/build_wordlists.py`) start with `# key: value`
header lines (name, language, size, sha256) followed by one word a line. The SHA-256 is over the
words joined by "\n" (with a trailing "\n"), so it does not depend on the header.
"""
from __future__ import annotations

import hashlib
import math
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ghostsent.errors import InputError

MIN_WORDS = 1024
DEFAULT_WORDLIST = "en"


@dataclass(frozen=True)
class WordList:
    name: str
    language: str
    words: tuple[str, ...]
    sha256: str

    @property
    def size(self) -> int:
        return len(self.words)

    @property
    def bits_per_word(self) -> float:
        return math.log2(len(self.words))

    def __len__(self) -> int:
        return len(self.words)


def normalise(word: str) -> str:
    """The form two words are compared in: NFKC then casefold."""
    return unicodedata.normalize("NFKC", word).casefold()


def words_sha256(words: "tuple[str, ...] | list[str]") -> str:
    return hashlib.sha256(("\n".join(words) + "\n").encode("utf-8")).hexdigest()


def _bad_char(word: str) -> str | None:
    for ch in word:
        cat = unicodedata.category(ch)
        if ch.isspace() or cat.startswith("Z"):
            return "whitespace"
        if cat.startswith("P") or cat.startswith("S") or cat.startswith("C"):
            return f"punctuation or symbol {ch!r}"
    return None


def parse_wordlist(text: str, source: str, name: str | None = None, language: str = "und") -> WordList:
    """Parse and validate a word list.

    Accepts one word a line or diceware lines (`11111<TAB>word` or `11111 word`); `#` header lines
    carry metadata. Refuses, naming the line: duplicates after NFKC+casefold, whitespace or punctuation
    inside a word, and lists shorter than MIN_WORDS.
    """
    meta: dict[str, str] = {}
    words: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip("\r\n")
        if not line.strip():
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep:
                meta[key.strip().lower()] = value.strip()
            continue
        parts = line.split("\t") if "\t" in line else line.strip().split(" ")
        if len(parts) == 2 and parts[0].isdigit():
            word = parts[1].strip()  # diceware: dice digits then the word
        elif len(parts) == 1:
            word = parts[0].strip()
        else:
            raise InputError(f"{source}:{lineno}: whitespace inside a word: {line.strip()!r}")
        if not word:
            raise InputError(f"{source}:{lineno}: empty word")
        problem = _bad_char(word)
        if problem:
            raise InputError(f"{source}:{lineno}: {problem} inside word {word!r}")
        key = normalise(word)
        if key in seen:
            raise InputError(
                f"{source}:{lineno}: duplicate word {word!r} (same as line {seen[key]} after NFKC+casefold)"
            )
        seen[key] = lineno
        words.append(word)
    if len(words) < MIN_WORDS:
        raise InputError(f"{source}: only {len(words)} words; a word list needs at least {MIN_WORDS}")
    digest = words_sha256(words)
    declared = meta.get("sha256")
    if declared and declared != digest:
        raise InputError(f"{source}: header sha256 {declared} does not match the words ({digest})")
    return WordList(
        name=name or meta.get("name") or Path(source).stem,
        language=meta.get("language", language),
        words=tuple(words),
        sha256=digest,
    )


DATA_PACKAGE = "ghostsent.wordlist_data"  # top-level wordlists/, installed under this name


def _data_root():
    """Where the shipped lists are.

    In a source checkout (pyproject.toml beside the package) the top-level `wordlists/` folder is used
    directly, so a fresh clone works without reinstalling. Installed, they are package data of
    `ghostsent.wordlist_data` (it cannot be `ghostsent.wordlists`: that name is this module).
    """
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file() and (repo / "wordlists" / "__init__.py").is_file():
        return repo / "wordlists"
    return resources.files(DATA_PACKAGE)


def builtin_names() -> list[str]:
    """Names of the shipped lists (file stems of the `*.txt` files in the data folder)."""
    return sorted(p.name[:-4] for p in _data_root().iterdir() if p.name.endswith(".txt"))


_CACHE: dict[str, WordList] = {}


def load_wordlist(name_or_path: str | Path = DEFAULT_WORDLIST) -> WordList:
    """A shipped list by name (`en`, `de`, ...) or a user's list file by path."""
    key = str(name_or_path)
    if key in _CACHE:
        return _CACHE[key]
    path = Path(key)
    if key in builtin_names():
        res = _data_root() / f"{key}.txt"
        wl = parse_wordlist(res.read_text(encoding="utf-8"), source=f"wordlists/{key}.txt", name=key)
    elif path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 at byte {e.start}") from None
        wl = parse_wordlist(text, source=str(path))
    else:
        raise InputError(
            f"unknown word list {key!r}: not a shipped list ({', '.join(builtin_names()) or 'none built'}) "
            "and no such file"
        )
    _CACHE[key] = wl
    return wl
