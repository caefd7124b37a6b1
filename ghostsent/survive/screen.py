"""Would a text trip the filters that real pretraining pipelines apply?

A ghost that gets a writer's page dropped is worse than no ghost. C4 (and every pipeline that reuses
its rules: datatrove's C4QualityFilter/C4BadWordsFilter, FineWeb, Dolma's C4 taggers) drops

* the whole page when it contains a word of the LDNOOBW list of its language, a `{`, or "lorem ipsum";
* a line that contains "javascript" or a cookie/terms notice, or that does not end in terminal
  punctuation (`.`, `?`, `!`, `"`, `'`, and not `...`);

and it deletes Wikipedia-style citation marks (`[1]`, `[edit]`) from lines, which would change a ghost.
This module says which of these rules a text would trip, matching the way the filters match: bad words
between non-word characters in the lower-cased text (datatrove's regex), the other phrases as plain
substrings of the lower-cased line. The lists are vendored (ghostsent/survive/data/, with licence and
SHA-256), so nothing is downloaded.

Word lists need one more step: a passphrase joins random words with spaces, so two harmless words can
form a bad phrase ("golden" + "shower", "house" + "cookies" contains "use cookies"). `SequenceScreen`
finds, for a word, whether it completes such a phrase with words already in the list.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from ghostsent.errors import InputError

LDNOOBW_VERSION = "naughty-words 1.2.0 (npm)"
VIOLENT_VERSION = "ghostsent 1"
SCREEN_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt")  # those with a vendored list

# C4's rules as datatrove 0.10 implements them (datatrove/pipeline/filters/c4_filters.py); a test
# compares these with the installed datatrove.
C4_END_PUNCTUATION = (".", "?", "!", '"', "'")
C4_ELLIPSIS = "..."
C4_POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                        "use cookies")
C4_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
C4_PAGE_PHRASES = ("lorem ipsum",)   # substring of the lower-cased line: the page is dropped
C4_LINE_PHRASES = ("javascript",) + C4_POLICY_SUBSTRINGS   # substring: the line is dropped

DROPS_PAGE = "drops the page"
DROPS_LINE = "drops the line"
CHANGES_TEXT = "changes the text"


@dataclass(frozen=True)
class ScreenList:
    """One vendored screen list: where it came from and its exact bytes' SHA-256."""

    name: str
    version: str
    sha256: str
    entries: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.name} ({self.version}) sha256:{self.sha256}"


@dataclass(frozen=True)
class FilterHit:
    """One reason a pipeline would drop or change a text: which rule, what it does, what matched."""

    rule: str
    effect: str
    matched: str

    def __str__(self) -> str:
        return f"{self.rule} ({self.effect}): {self.matched!r}"


def _data(*parts: str):
    return resources.files("ghostsent.survive").joinpath("data", *parts)


def _load(kind: str, lang: str, version: str) -> ScreenList:
    if lang not in SCREEN_LANGUAGES:
        raise InputError(f"no {kind} screen list for language {lang!r} (have {', '.join(SCREEN_LANGUAGES)})")
    raw = _data(kind, f"{lang}.txt").read_bytes()
    lines = raw.decode("utf-8").splitlines()
    entries = tuple(x for x in lines if x.strip() and not (kind == "violent" and x.startswith("#")))
    return ScreenList(f"{kind}/{lang}", version, hashlib.sha256(raw).hexdigest(), entries)


@lru_cache(maxsize=None)
def ldnoobw(lang: str) -> ScreenList:
    """The LDNOOBW list C4 loads for `lang`, exactly as vendored (case kept, as datatrove reads it)."""
    return _load("ldnoobw", lang, LDNOOBW_VERSION)


@lru_cache(maxsize=None)
def violent(lang: str) -> ScreenList:
    """The project's violent/hateful-terms list (entries ending in '*' are stems)."""
    return _load("violent", lang, VIOLENT_VERSION)


def c4_rules_sha256() -> str:
    """A fingerprint of the C4 phrases above, recorded in word-list headers like a list's SHA-256."""
    text = "\n".join(C4_PAGE_PHRASES + C4_LINE_PHRASES + ("{",) + (C4_CITATION.pattern,)) + "\n"
    return hashlib.sha256(text.encode()).hexdigest()


def screen_languages(lang: str) -> tuple[str, ...]:
    """Which bad-word lists apply to text in `lang`: its own and English (English leaks into all web
    text, and a short or mixed page can be identified as English). Unknown languages get English."""
    own = lang if lang in SCREEN_LANGUAGES else "en"
    return (own,) if own == "en" else (own, "en")


def _forms(entry: str) -> set[str]:
    # datatrove compares raw entries with lower-cased text, so an entry with a capital ("MILF") never
    # matches there; we lower-case (and NFC) entries, which is stricter, never laxer.
    low = entry.lower()
    return {low, unicodedata.normalize("NFC", low)}


@lru_cache(maxsize=None)
def badword_regex(lang: str) -> re.Pattern:
    """datatrove's C4BadWordsFilter pattern for a space-separated language, over the vendored list."""
    words = sorted({f for e in ldnoobw(lang).entries for f in _forms(e)})
    return re.compile(r"(?:\W|^)({})(?:\W|$)".format("|".join(re.escape(w) for w in words)))


def _lowered(text: str) -> tuple[str, ...]:
    low = text.lower()
    nfc = unicodedata.normalize("NFC", low)
    return (low,) if nfc == low else (low, nfc)


def badword_hits(text: str, lang: str = "en") -> list[FilterHit]:
    hits = []
    for code in screen_languages(lang):
        rx = badword_regex(code)
        for low in _lowered(text):
            m = rx.search(low)
            if m:
                hits.append(FilterHit(f"c4-badwords/{code}", DROPS_PAGE, m.group(1)))
                break
    return hits


def why_filtered(text: str, lang: str = "en", line_end: bool = True) -> list[FilterHit]:
    """Every C4 rule `text` trips, as inserted into a page. `line_end`: the text may end a line (a ghost
    appended to a paragraph does), so it needs C4's terminal punctuation; False for a bare word."""
    hits = badword_hits(text, lang)
    low = text.lower()
    if "{" in text:
        hits.append(FilterHit("c4-curly-bracket", DROPS_PAGE, "{"))
    hits += [FilterHit("c4-lorem-ipsum", DROPS_PAGE, p) for p in C4_PAGE_PHRASES if p in low]
    hits += [FilterHit("c4-javascript" if p == "javascript" else "c4-policy", DROPS_LINE, p)
             for p in C4_LINE_PHRASES if p in low]
    m = C4_CITATION.search(text)
    if m:
        hits.append(FilterHit("c4-citation", CHANGES_TEXT, m.group()))
    end = text.strip()
    if line_end and (not end.endswith(C4_END_PUNCTUATION) or end.endswith(C4_ELLIPSIS)):
        hits.append(FilterHit("c4-terminal-punctuation", DROPS_LINE, end[-3:]))
    return hits


def as_inserted(ghost_text: str) -> str:
    """The ghost as insertion writes it (a full stop added when it has no terminal punctuation)."""
    from ghostsent.sentences import Boundary

    return Boundary(0, "after").inserted(ghost_text).strip()


def ghost_hits(ghost_text: str, lang: str = "en") -> list[FilterHit]:
    return why_filtered(as_inserted(ghost_text), lang)


def template_hits(template: str, lang: str = "en") -> list[FilterHit]:
    """The rules a template trips on its own, with a harmless word where the passphrase goes."""
    return why_filtered(as_inserted(template.replace("{words}", "words")), lang)


# --- word lists: single words and phrases formed by neighbours ----------------------------------------

@dataclass(frozen=True)
class Phrase:
    """A multi-word pattern a passphrase could spell. `substring`: C4's line rules match anywhere in
    the line, so the first token may end a word and the last may start one; bad words must match
    whole words."""

    tokens: tuple[str, ...]
    substring: bool
    rule: str

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


def _phrases(langs: tuple[str, ...]) -> list[Phrase]:
    out = []
    for code in langs:
        for entry in sorted({f for e in ldnoobw(code).entries for f in _forms(e)}):
            if " " in entry.strip():
                out.append(Phrase(tuple(entry.split()), False, f"c4-badwords/{code}"))
    for p in C4_PAGE_PHRASES + C4_LINE_PHRASES:
        if " " in p:
            out.append(Phrase(tuple(p.split()), True, "c4-lorem-ipsum" if "lorem" in p else "c4-policy"))
    return out


@dataclass
class SequenceScreen:
    """Tracks a growing word list and says whether a new word would complete a phrase with words
    already in it. Adding words one by one and refusing each that completes one means no phrase can
    be spelled by any passphrase (words repeat, so a word may fill several slots)."""

    langs: tuple[str, ...]
    chosen: set[str] = field(default_factory=set)
    _suffixes: set[str] = field(default_factory=set)
    _prefixes: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.phrases = _phrases(self.langs)
        self._by_token: dict[str, list[tuple[Phrase, int]]] = {}
        for p in self.phrases:
            for i, t in enumerate(p.tokens):
                self._by_token.setdefault(t, []).append((p, i))

    def add(self, word: str) -> None:
        w = word.lower()
        self.chosen.add(w)
        self._suffixes.update(w[i:] for i in range(len(w)))
        self._prefixes.update(w[:i] for i in range(1, len(w) + 1))

    def _slot_ok(self, p: Phrase, i: int, w: str) -> bool:
        """Can slot i of p be filled by w itself or a chosen word?"""
        t = p.tokens[i]
        last = len(p.tokens) - 1
        if p.substring and i == 0:
            return w.endswith(t) or t in self._suffixes
        if p.substring and i == last:
            return w.startswith(t) or t in self._prefixes
        return w == t or t in self.chosen

    def _fits(self, p: Phrase, i: int, w: str) -> bool:
        t, last = p.tokens[i], len(p.tokens) - 1
        if p.substring and i == 0:
            return w.endswith(t)
        if p.substring and i == last:
            return w.startswith(t)
        return w == t

    def completes(self, word: str) -> Phrase | None:
        """The phrase `word` would complete with the chosen words, or None."""
        w = word.lower()
        cands = list(self._by_token.get(w, ()))
        cands += [(p, i) for p in self.phrases if p.substring for i in (0, len(p.tokens) - 1)]
        for p, i in cands:
            if self._fits(p, i, w) and all(self._slot_ok(p, j, w) for j in range(len(p.tokens)) if j != i):
                return p
        return None


@lru_cache(maxsize=None)
def _violent_compiled(code: str) -> tuple[frozenset[str], tuple[str, ...]]:
    from ghostsent.wordlists import normalise

    entries = violent(code).entries
    exact = frozenset(normalise(e) for e in entries if not e.endswith("*"))
    stems = tuple(normalise(e[:-1]) for e in entries if e.endswith("*"))
    return exact, stems


def violent_hit(word: str, lang: str) -> str | None:
    """The violent-terms entry `word` matches (own language and English), or None."""
    from ghostsent.wordlists import normalise

    key = normalise(word)
    for code in screen_languages(lang):
        exact, stems = _violent_compiled(code)
        if key in exact:
            return key
        for s in stems:
            if key.startswith(s):
                return s + "*"
    return None


@dataclass(frozen=True)
class WordListHit:
    word: str
    hit: FilterHit


def wordlist_hits(words: "tuple[str, ...] | list[str]", lang: str = "en", limit: int = 20) -> list[WordListHit]:
    """Words that trip a pipeline filter alone, or that complete a phrase with earlier words (in list
    order). Stops after `limit` hits: enough to name in an error message."""
    seq = SequenceScreen(screen_languages(lang))
    out: list[WordListHit] = []
    for w in words:
        hits = why_filtered(w, lang, line_end=False)
        p = seq.completes(w) if not hits else None
        if p is not None:
            hits = [FilterHit(p.rule, DROPS_PAGE if p.rule.startswith(("c4-badwords", "c4-lorem")) else DROPS_LINE,
                              p.text)]
        if hits:
            out.append(WordListHit(w, hits[0]))
            if len(out) >= limit:
                break
        else:
            seq.add(w)
    return out


def refuse_filtered(what: str, hits: list) -> None:
    """Raise the one-line InputError for a template, ghost or word list that trips a filter."""
    if not hits:
        return
    shown = "; ".join(str(h) if isinstance(h, FilterHit) else f"{h.word!r}: {h.hit}" for h in hits[:3])
    more = f" (+{len(hits) - 3} more)" if len(hits) > 3 else ""
    raise InputError(f"{what} would trip pipeline filters, {shown}{more}", hint="allow_filtered")


def language_of(wordlist_name: str, declared: str | None = None) -> str:
    """The language whose bad-word list applies to ghosts from this word list (English if unknown)."""
    for code in (declared, wordlist_name):
        if code in SCREEN_LANGUAGES:
            return code
    return "en"


def check_new_identifier(wordlist, template: str | None) -> None:
    """Refuse (InputError) a word list or template that would trip pipeline filters."""
    from ghostsent.passphrase import possible_templates

    lang = language_of(wordlist.name, wordlist.language)
    refuse_filtered(f"word list {wordlist.name!r}", wordlist_hits(wordlist.words, lang))
    for resolved in possible_templates(template):  # `natural`: every lead-in it could draw
        refuse_filtered(f"template {resolved!r}", template_hits(resolved, lang))


def check_identifier(ident) -> None:
    """Refuse (InputError) inserting an identifier whose ghost sentence would trip pipeline filters
    (one drawn before the lists were screened, or from an unscreened list or template)."""
    hits = ghost_hits(ident.text, language_of(ident.wordlist_name))
    refuse_filtered(f"identifier {ident.id}'s ghost sentence", hits)
