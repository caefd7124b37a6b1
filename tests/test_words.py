"""One normalisation for words (issue 7, defect 4): lists are de-duplicated on the same key replies are
matched on, so a held-out word is matched with probability at most 1/V whatever the script.

Python's `\\w` does not match combining marks, so before this a Devanagari, Thai, pointed-Hebrew or
vowelled-Arabic word split into pieces in a reply, many list words shared one match key, and the probe's
p-value was wrong by orders of magnitude.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from ghostsent.errors import InputError
from ghostsent.detection.probe import normalise_words, score_reply
from ghostsent.wordlists import MIN_WORDS, load_wordlist, normalise, parse_wordlist, word_tokens


ZWNJ = "\u200c"
CONSONANTS = [chr(c) for c in range(0x915, 0x939 + 1)]                     # क … ह
SIGNS = ["", "\u093e", "\u093f", "\u0940", "\u0941", "\u0942", "\u0947", "\u0948", "\u094b", "\u094c"]  # vowel signs (Mc/Mn)


def devanagari_words(n: int = 1200) -> list[str]:
    """Two-syllable pseudo-words: consonant + vowel sign, twice. Distinct as strings and as match keys."""
    syll = [c + s for c in CONSONANTS for s in SIGNS]
    rnd = random.Random(0)
    words = sorted({a + b for a in syll for b in syll})
    return rnd.sample(words, n)


def _text(words: list[str]) -> str:
    return "\n".join(words) + "\n"


def test_a_word_with_combining_marks_is_one_token():
    assert word_tokens("किताब") == ["किताब"]
    assert word_tokens("שָׁלוֹם") == ["שָׁלוֹם"]          # pointed Hebrew
    assert word_tokens("كِتَابٌ") == ["كِتَابٌ"]           # vowelled Arabic
    assert word_tokens("สวัสดี") == ["สวัสดี"]          # Thai
    assert normalise_words("Hello, WORLD!  Foo-bar.") == ["hello", "world", "foo", "bar"]


def test_every_list_word_survives_the_reply_tokenizer_one_to_one():
    wl = parse_wordlist(_text(devanagari_words()), "deva.txt")
    keys = [normalise(w) for w in wl.words]
    assert len(set(keys)) == wl.size
    for w, key in zip(wl.words, keys):
        assert normalise_words(w) == [key], w


def test_a_reply_with_another_vowel_sign_does_not_match():
    # same consonants, other vowel signs: a different word, which the old tokenizer matched
    sc = score_reply("कोकू", ["किका"], "नमस्ते", 1200)
    assert sc["matches"] == 0 and sc["p_value"] == 1.0


def test_probe_p_value_is_valid_for_a_combining_mark_list():
    """Held-out words from a Devanagari list, replies of random list words: P(p <= a) <= a."""
    words = devanagari_words()
    wl = parse_wordlist(_text(words), "deva.txt")
    rnd = random.Random(7)
    ps = []
    for _ in range(3000):
        held = [rnd.choice(wl.words) for _ in range(2)]
        reply = " ".join(rnd.choice(wl.words) for _ in range(rnd.randint(2, 10)))
        ps.append(score_reply(reply, held, rnd.choice(wl.words), wl.size)["p_value"])
    ps = np.array(ps)
    for a in (0.01, 0.05):
        assert np.mean(ps <= a) <= a + 3 * math.sqrt(a * (1 - a) / len(ps)), (a, np.mean(ps <= a))


def test_a_word_that_splits_in_replies_is_refused_naming_the_line():
    base = devanagari_words(MIN_WORDS)
    words = base[:9] + ["½"] + base[9:]   # NFKC: "1⁄2", two words in a reply
    with pytest.raises(InputError, match=r"^u\.txt:10: word '½' is 2 words"):
        parse_wordlist(_text(words), "u.txt")


def test_words_differing_only_in_zwnj_are_duplicates():
    base = devanagari_words(MIN_WORDS)
    words = base + ["می" + ZWNJ + "خواهم", "میخواهم"]
    with pytest.raises(InputError, match=rf"^u\.txt:{MIN_WORDS + 2}: duplicate word .*same as line {MIN_WORDS + 1}"):
        parse_wordlist(_text(words), "u.txt")


def test_zwnj_inside_a_word_is_accepted_and_matched():
    base = devanagari_words(MIN_WORDS)
    word = "می" + ZWNJ + "خواهم"
    wl = parse_wordlist(_text(base + [word]), "fa.txt")
    assert word in wl.words
    assert word_tokens(f"… {word} …") == [normalise(word)]
    # a reply that drops the ZWNJ still matches: the key is the same
    assert score_reply("میخواهم", [word], None, wl.size)["matches"] == 1


def test_zwnj_at_the_edge_of_a_word_is_refused():
    base = devanagari_words(MIN_WORDS)
    with pytest.raises(InputError, match=r"^u\.txt:4: "):
        parse_wordlist(_text(base[:3] + [ZWNJ + "کتاب"] + base[3:]), "u.txt")


def test_a_list_file_with_a_utf8_bom_loads(tmp_path):
    words = list(load_wordlist("en").words[:MIN_WORDS])
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + _text(words).encode("utf-8"))
    wl = load_wordlist(str(path))
    assert wl.words == tuple(words)
    assert wl.sha256 == parse_wordlist(_text(words), "x").sha256  # the BOM is not part of the list
