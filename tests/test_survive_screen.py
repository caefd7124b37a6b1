"""Pipeline-safe identifiers: the screen lists, the C4 rules, and the shipped word lists against the REAL
datatrove C4 bad-words filter (run offline on the vendored lists)."""
from __future__ import annotations

import hashlib
import itertools
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostsent.survive import screen
from ghostsent.wordlists import load_wordlist

ROOT = Path(__file__).resolve().parent.parent
LANGS = screen.SCREEN_LANGUAGES
datatrove = pytest.importorskip("datatrove")


def _doc(text: str, lang: str):
    from datatrove.data import Document

    return Document(text=text, id="t", metadata={"language": lang})


@pytest.fixture(scope="module")
def badwords():
    from ghostsent.survive.offline import offline_badwords_filter

    return offline_badwords_filter()


def _passes(flt, text: str, lang: str) -> bool:
    res = flt.filter(_doc(text, lang))
    return res is True


# --- the vendored lists and datatrove ------------------------------------------------------------------

def test_c4_rule_constants_are_datatrove_s():
    from datatrove.pipeline.filters import c4_filters

    assert tuple(c4_filters.POLICY_SUBSTRINGS) == screen.C4_POLICY_SUBSTRINGS
    assert c4_filters.END_PUNCTUATION == screen.C4_END_PUNCTUATION
    assert c4_filters.ELLIPSIS == screen.C4_ELLIPSIS
    assert c4_filters.CITATION_REGEX.pattern == screen.C4_CITATION.pattern


@pytest.mark.parametrize("lang", LANGS)
def test_vendored_lists_match_their_recorded_sha256(lang):
    source = (ROOT / "ghostsent/survive/data/ldnoobw/SOURCE.md").read_text(encoding="utf-8")
    sl = screen.ldnoobw(lang)
    raw = (ROOT / f"ghostsent/survive/data/ldnoobw/{lang}.txt").read_bytes()
    assert sl.sha256 == hashlib.sha256(raw).hexdigest()
    assert f"| {lang}.txt | {len(sl.entries)} |" in source and sl.sha256 in source
    assert (ROOT / "ghostsent/survive/data/ldnoobw/LICENSE").read_text().startswith("Attribution 4.0")


def test_offline_filter_refuses_to_download_an_unvendored_list():
    from ghostsent.errors import InputError
    from ghostsent.survive.offline import offline_badwords_filter

    flt = offline_badwords_filter()
    with pytest.raises(InputError):
        flt.filter(_doc("some text here", "pl"))  # datatrove knows pl; we ship no pl list


def test_real_filter_catches_what_the_old_lists_shipped(badwords):
    """The test below can fail: words the lists shipped before this screen trip the real filter."""
    assert not _passes(badwords, "I bought new panties today.", "en")
    assert not _passes(badwords, "Wir wollen vögeln gehen.", "de")
    assert not _passes(badwords, "abandon big black garden", "en")  # a two-word LDNOOBW entry
    assert _passes(badwords, "abandon big garden black", "en")


@pytest.mark.parametrize("lang", LANGS)
def test_no_shipped_word_trips_the_real_datatrove_badwords_filter(badwords, lang):
    words = load_wordlist(lang).words
    # every word on its own (one document per word would be slow: a word per line, checked by the
    # regex on the whole text, finds the same matches because each line is bounded by \n)
    assert _passes(badwords, "\n".join(words), lang)
    assert _passes(badwords, "\n".join(words), "en")
    # seeded passphrases: random neighbours
    rng = random.Random(f"screen-{lang}")
    for _ in range(300):
        phrase = " ".join(rng.choice(words) for _ in range(12)) + "."
        assert _passes(badwords, phrase, lang), phrase
    # every multi-word entry: the list cannot spell it
    chosen = set(words)
    for code in screen.screen_languages(lang):
        for entry in screen.ldnoobw(code).entries:
            toks = entry.lower().split()
            assert len(toks) < 2 or not all(t in chosen for t in toks), (lang, entry)


@pytest.mark.parametrize("lang", LANGS)
def test_shipped_lists_pass_every_screen_and_say_which(lang):
    wl = load_wordlist(lang)
    assert wl.size == 7776
    assert screen.wordlist_hits(wl.words, lang) == []
    assert not [w for w in wl.words if screen.violent_hit(w, lang)]
    header = (ROOT / "wordlists" / f"{lang}.txt").read_text(encoding="utf-8").split("\n", 20)
    screens = [h for h in header if h.startswith("# screen: ")]
    for code in screen.screen_languages(lang):
        assert any(screen.ldnoobw(code).sha256 in h and f"ldnoobw/{code}" in h for h in screens)
        assert any(screen.violent(code).sha256 in h for h in screens)
    assert any(screen.c4_rules_sha256() in h for h in screens)


def test_english_list_lost_the_words_the_issue_names():
    words = set(load_wordlist("en").words)
    assert not {"terrorist", "terrorism", "panties", "bomb", "weapons", "massacre"} & words
    assert {"house", "garden", "skill", "window"} <= words  # exact entries, not substrings


# --- the C4 rules on texts -----------------------------------------------------------------------------

def _rules(text: str, **kw) -> set[str]:
    return {h.rule for h in screen.why_filtered(text, **kw)}


def test_why_filtered_names_each_rule():
    assert _rules("A fine sentence.") == set()
    assert _rules("A {fine} sentence.") == {"c4-curly-bracket"}
    assert _rules("Lorem Ipsum dolor sit amet.") == {"c4-lorem-ipsum"}
    assert _rules("Enable JavaScript to continue.") == {"c4-javascript"}
    assert _rules("This site uses cookies.") == {"c4-policy"}
    assert _rules("The house cookies were sold.") == {"c4-policy"}  # a substring, as C4 matches
    assert _rules("No full stop") == {"c4-terminal-punctuation"}
    assert _rules("Trailing off...") == {"c4-terminal-punctuation"}
    assert _rules("No full stop", line_end=False) == set()
    assert _rules("See the source [12].") == {"c4-citation"}
    assert _rules("Do not assess it.") == set() and _rules("Kick ass.") == {"c4-badwords/en"}
    assert _rules("Ein Satz mit Garten darin.", lang="de") == set()
    assert _rules("Er will vögeln.", lang="de") == {"c4-badwords/de"}
    assert _rules("He said vögeln.", lang="en") == set()  # the German list applies to German only


def test_matches_the_real_c4_quality_filter_on_page_rules():
    """Our page-dropping verdicts agree with datatrove's C4QualityFilter on the same text."""
    from datatrove.pipeline.filters import C4QualityFilter

    flt = C4QualityFilter(min_num_sentences=-1)
    body = "This is one fine sentence here. "
    for ghost in ("Lorem ipsum dolor sit amet.", "The {ghost} of this post.", "Quiet garden window."):
        text = body + ghost
        drops_page = any(h.effect == screen.DROPS_PAGE for h in screen.why_filtered(ghost))
        assert (flt.filter(_doc(text, "en")) is not True) == drops_page, ghost


def test_ghost_and_template_checks():
    assert screen.ghost_hits("abandon garden window") == []  # the full stop insertion adds is counted
    assert screen.ghost_hits("abandon garden window…")[0].rule == "c4-terminal-punctuation"
    assert [h.rule for h in screen.template_hits("My ghost: {words}")] == []
    assert [h.rule for h in screen.template_hits("Lorem ipsum {words}.")] == ["c4-lorem-ipsum"]
    assert [h.rule for h in screen.template_hits("{words} {sic}.")] == ["c4-curly-bracket"]


def test_refuse_filtered_is_one_line_and_names_the_problem():
    from ghostsent.errors import InputError

    with pytest.raises(InputError) as e:
        screen.refuse_filtered("template 'x'", screen.template_hits("Enable javascript {words}"))
    msg = str(e.value)
    # the library names no flag; the CLI adds it from the hint (tests/test_cli_filtered.py)
    assert "\n" not in msg and "c4-javascript" in msg and "--" not in msg and e.value.hint == "allow_filtered"
    screen.refuse_filtered("anything", [])  # nothing to refuse


# --- phrases spelled by neighbouring words ------------------------------------------------------------

def test_sequence_screen_drops_the_later_word_of_a_phrase():
    seq = screen.SequenceScreen(("en",))
    for w in ("big", "garden", "house"):
        assert seq.completes(w) is None
        seq.add(w)
    assert seq.completes("black").text == "big black"
    assert seq.completes("cookies").text == "use cookies"  # "house" ends in "use"
    assert seq.completes("cookiesx").text == "use cookies"  # the last token starts a word
    assert seq.completes("window") is None


def test_user_wordlist_hits_name_the_word():
    words = ["garden", "panties", "house", "cookies", "window"]
    hits = screen.wordlist_hits(words, "en")
    assert [(h.word, h.hit.rule) for h in hits] == [("panties", "c4-badwords/en"), ("cookies", "c4-policy")]


_PHRASES = [p for p in screen._phrases(("en",)) if len(p.tokens) <= 3]
_TOKENS = sorted({t for p in _PHRASES for t in p.tokens} | {"house", "excuse", "bigger", "garden"})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=9, unique=True))
def test_no_sequence_of_screened_words_trips_a_filter(vocab):
    """Property: whatever words are offered, the words SequenceScreen accepts cannot be arranged (with
    repetition) into a run of up to 3 words that trips a C4 rule."""
    seq = screen.SequenceScreen(("en",))
    kept = []
    for w in vocab:
        if not screen.why_filtered(w, "en", line_end=False) and seq.completes(w) is None:
            seq.add(w)
            kept.append(w)
    for n in (1, 2, 3):
        for combo in itertools.product(kept, repeat=n):
            text = " ".join(combo)
            assert not screen.why_filtered(text, "en", line_end=False), text


def test_screen_regex_is_datatrove_s_pattern_shape():
    rx = screen.badword_regex("en")
    assert rx.pattern.startswith(r"(?:\W|^)(") and rx.pattern.endswith(r")(?:\W|$)")
    assert re.search(rx, "x ass y") and not re.search(rx, "assess")


def test_every_natural_lead_in_passes_the_filters_and_new_checks_them_all(monkeypatch):
    from ghostsent import passphrase
    from ghostsent.errors import InputError
    from ghostsent.wordlists import load_wordlist

    assert len(passphrase.natural_templates()) == len(passphrase.NATURAL_LEADS) * len(passphrase.NATURAL_WHO)
    for t in passphrase.natural_templates():
        assert t.count("{words}") == 1 and "\n" not in t and screen.template_hits(t) == [], t
    screen.check_new_identifier(load_wordlist("en"), passphrase.NATURAL)
    # one bad lead-in among them is found, whichever one the draw would have picked
    monkeypatch.setattr(passphrase, "NATURAL_WHO", (*passphrase.NATURAL_WHO, "lorem ipsum"))
    with pytest.raises(InputError, match="c4-lorem-ipsum"):
        screen.check_new_identifier(load_wordlist("en"), passphrase.NATURAL)
