"""Word lists: the alphabet that passphrases are drawn from.

A list's size V fixes everything statistical downstream: each word carries log2(V) bits and a model
that never saw a ghost sentence guesses a held-out word with probability at most 1/V. That is why
lists must be exact sets (no duplicates after the normalisation replies are matched with, `word_tokens`) and why the SHA-256 of the list is stored
with every identifier: the null distribution is only valid for the same list.

Shipped list files (in `wordlists/`, installed as package `ghostsent.wordlist_data`, built by
`scripts/build_wordlists.py`) start with `# key: value`
header lines (name, language, size, sha256) followed by one word a line. The SHA-256 is over the
words joined by "\n" (with a trailing "\n"), so it does not depend on the header.

Legacy lists (`wordlists/legacy/`, e.g. `en-0.1.txt`: the lists of ghostsent 0.1, before the 0.2 screen
changed them) are never offered for new draws: `load_wordlist` and `builtin_names` do not see them. They
exist so that an identifier drawn from one can still be tested: `find_wordlist` resolves an identifier's
list by its recorded SHA-256 among the shipped and legacy lists, then by name or path.
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


# Zero-width non-joiner / joiner: part of the spelling of words in Persian, Indic and other scripts.
JOINERS = frozenset("\u200c\u200d")


def fold(text: str) -> str:
    """NFKC, casefold, NFKC again (casefolding can leave a string that is not NFKC)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _is_word_char(ch: str) -> bool:
    # Letters, numbers and combining marks (Python's \w misses the marks, which split Devanagari,
    # Thai, pointed Hebrew or vowelled Arabic words into pieces), plus the joiners.
    return ch in JOINERS or unicodedata.category(ch)[0] in "LNM"


def folded_tokens(folded: str) -> list[str]:
    """The words of an already folded text; joiners are dropped from each word's key (a model may omit
    them), so words that differ only in a ZWNJ are the same word."""
    out: list[str] = []
    cur: list[str] = []
    for ch in folded + " ":
        if _is_word_char(ch):
            if ch not in JOINERS:
                cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    return out


def word_tokens(text: str) -> list[str]:
    """THE tokenizer: the match keys of the words of a text (a reply, a prompt, a list word).

    Word lists are de-duplicated on it and replies are matched with it, so a held-out word is matched
    with probability at most 1/V in any script (docs/statistics.md, section 1).
    """
    return folded_tokens(fold(text))


def normalise(word: str) -> str:
    """The match key of one list word (its single token; parse_wordlist refuses words that are not one)."""
    return " ".join(word_tokens(word))


def words_sha256(words: "tuple[str, ...] | list[str]") -> str:
    return hashlib.sha256(("\n".join(words) + "\n").encode("utf-8")).hexdigest()


def _bad_char(word: str) -> str | None:
    for i, ch in enumerate(word):
        cat = unicodedata.category(ch)
        if ch in JOINERS:
            if i == 0 or i == len(word) - 1:
                return f"joiner {ch!r} at the edge of word {word!r}"
            continue
        if ch.isspace() or cat.startswith("Z"):
            return "whitespace"
        if cat.startswith("P") or cat.startswith("S") or cat.startswith("C"):
            return f"punctuation or symbol {ch!r}"
    return None


def _word_problem(word: str) -> str | None:
    """Why `word` cannot be a list word, or None: a bad character, or it is not exactly one reply word."""
    problem = _bad_char(word)
    if problem:
        return problem if problem.startswith("joiner") else f"{problem} inside word {word!r}"
    tokens = word_tokens(word)
    if len(tokens) != 1:
        return (f"word {word!r} is {len(tokens)} words after NFKC+casefold ({' '.join(tokens)!r}), "
                "so a reply could never match it as one")
    return None


def parse_wordlist(text: str, source: str, name: str | None = None, language: str = "und") -> WordList:
    """Parse and validate a word list.

    Accepts one word a line or diceware lines (`11111<TAB>word` or `11111 word`); `#` header lines
    carry metadata; a leading UTF-8 BOM is ignored. Refuses, naming the line: whitespace, punctuation or
    symbols inside a word (ZWNJ/ZWJ are allowed inside one), a word that is not exactly one word to the
    reply tokenizer (`word_tokens`), duplicates after that normalisation, and lists shorter than MIN_WORDS.
    """
    if text.startswith("\ufeff"):
        text = text[1:]  # a UTF-8 BOM (Windows editors save one); not part of the first word
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
        problem = _word_problem(word)
        if problem:
            raise InputError(f"{source}:{lineno}: {problem}")
        key = normalise(word)
        if key in seen:
            raise InputError(
                f"{source}:{lineno}: duplicate word {word!r} (same as line {seen[key]} after NFKC+casefold; "
                "replies are matched on that form)"
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


def legacy_names() -> list[str]:
    """Names of the legacy lists (never drawn from; see the module docstring)."""
    legacy = _data_root() / "legacy"
    return sorted(p.name[:-4] for p in legacy.iterdir() if p.name.endswith(".txt")) if legacy.is_dir() else []


def _header_sha256(text: str) -> str | None:
    for line in text.splitlines():
        if not line.startswith("#"):
            return None
        key, sep, value = line[1:].partition(":")
        if sep and key.strip().lower() == "sha256":
            return value.strip()
    return None


_BY_SHA: dict[str, tuple[str, str]] = {}  # sha256 -> (resource path below the data root, name)


def _index() -> dict[str, tuple[str, str]]:
    """Every shipped and legacy list by the SHA-256 its header declares (parse_wordlist verifies it)."""
    if not _BY_SHA:
        root = _data_root()
        for folder, names in (("", builtin_names()), ("legacy/", legacy_names())):
            for name in names:
                sha = _header_sha256((root / f"{folder}{name}.txt").read_text(encoding="utf-8")[:2048])
                if sha:
                    _BY_SHA.setdefault(sha, (f"{folder}{name}.txt", name))
    return _BY_SHA


def find_wordlist(sha256: str, name_or_path: "str | Path | None" = None) -> WordList:
    """The list an identifier was drawn from: a shipped or legacy list with this SHA-256, else the list
    `name_or_path` names (whose SHA-256 the caller must compare). InputError if neither exists."""
    hit = _index().get(sha256)
    if hit is not None:
        rel, name = hit
        key = f"sha256:{sha256}"
        if key not in _CACHE:
            text = (_data_root() / rel).read_text(encoding="utf-8")
            _CACHE[key] = parse_wordlist(text, source=f"wordlists/{rel}", name=name)
        return _CACHE[key]
    if name_or_path is None:
        raise InputError(f"no shipped or legacy word list has SHA-256 {sha256[:12]}…")
    return load_wordlist(name_or_path)


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
