"""Shipped word lists (build reproducibility, headers, content rules) and user-list validation."""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ghostsent.errors import InputError
from ghostsent.wordlists import (MIN_WORDS, builtin_names, load_wordlist, normalise, parse_wordlist,
                                 words_sha256)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build_wordlists.py"


def _build_module():
    spec = importlib.util.spec_from_file_location("build_wordlists", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


build = _build_module()


def _header(path: Path) -> dict[str, str]:
    meta = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].partition(":")
        meta[key.strip()] = value.strip()
    return meta


# --- shipped lists ------------------------------------------------------------------------------------

def test_builtin_lists_present():
    names = builtin_names()
    assert "en" in names
    assert len([n for n in names if n != "en"]) >= 4
    assert set(names) == set(build.LANGUAGES)


@pytest.mark.parametrize("name", sorted(build.LANGUAGES))
def test_list_header_matches_words(name):
    path = ROOT / "wordlists" / f"{name}.txt"
    meta = _header(path)
    wl = load_wordlist(name)
    assert meta["name"] == name and meta["language"] == name
    assert int(meta["size"]) == wl.size == build.SIZE == 7776
    assert meta["sha256"] == wl.sha256 == words_sha256(wl.words)
    assert meta["source"].startswith("wordfreq ")
    assert list(wl.words) == sorted(wl.words)
    assert len({normalise(w) for w in wl.words}) == wl.size
    letters, vowels = build.LANGUAGES[name]
    for w in wl.words:
        assert 3 <= len(w) <= 9, w
        assert set(w) <= set(letters), w
        assert build.pronounceable(w, vowels), w
        assert not build.is_blocked(w, name), w


def test_english_list_is_plain_ascii():
    wl = load_wordlist("en")
    assert all(re.fullmatch(r"[a-z]{3,9}", w) for w in wl.words)
    assert abs(wl.bits_per_word - 12.925) < 1e-3
    # common words are in; obvious names and offensive words are out
    assert {"house", "garden", "window", "water"} <= set(wl.words)
    assert not {"john", "david", "jennifer", "texas", "google", "fuck", "shit", "nigger", "sex"} & set(wl.words)


def test_blocklist_matching():
    assert build.is_blocked("fucking", "en")  # stem
    assert build.is_blocked("Shit", "en")  # case-insensitive
    assert build.is_blocked("scheiße", "de") and build.is_blocked("fuck", "de")  # English list applies too
    assert not build.is_blocked("assist", "en")  # exact entries do not match as prefixes
    assert not build.is_blocked("garden", "en")


def test_pronounceable_rules():
    v = "aeiouy"
    assert build.pronounceable("garden", v)
    assert not build.pronounceable("nth", v)  # no vowel
    assert not build.pronounceable("strngth", v)
    assert not build.pronounceable("brrrap", v)  # 3 same letters in a row
    assert not build.pronounceable("abstrcta", v)  # 4+ consonants


def test_build_is_byte_reproducible(tmp_path):
    """Regenerating gives byte-identical files, and --check passes on the committed lists."""
    res = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    out.mkdir()
    res = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "en"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (out / "en.txt").read_bytes() == (ROOT / "wordlists" / "en.txt").read_bytes()


def test_check_detects_a_changed_file(tmp_path):
    shutil.copy(ROOT / "wordlists" / "en.txt", tmp_path / "en.txt")
    with open(tmp_path / "en.txt", "a", encoding="utf-8") as fh:
        fh.write("zzzextra\n")
    res = subprocess.run([sys.executable, str(SCRIPT), "--check", "--out", str(tmp_path), "en"],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert "would change" in res.stderr
    assert (tmp_path / "en.txt").read_text(encoding="utf-8").endswith("zzzextra\n")  # --check writes nothing


# --- user lists ---------------------------------------------------------------------------------------

BASE = list(load_wordlist("en").words[:MIN_WORDS])


def _text(words: list[str]) -> str:
    return "\n".join(words) + "\n"


def test_user_list_valid_and_loadable(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# name: mine\n# language: en\n" + _text(BASE), encoding="utf-8")
    wl = load_wordlist(str(path))
    assert wl.name == "mine" and wl.size == MIN_WORDS and wl.sha256 == words_sha256(BASE)


def test_diceware_lines_accepted():
    tab = "\n".join(f"{11111 + i}\t{w}" for i, w in enumerate(BASE))
    space = "\n".join(f"{11111 + i} {w}" for i, w in enumerate(BASE))
    assert parse_wordlist(tab, "d.txt").words == tuple(BASE)
    assert parse_wordlist(space, "d.txt").words == tuple(BASE)


def test_duplicate_after_normalisation_names_both_lines():
    words = BASE + [BASE[10].upper()]
    with pytest.raises(InputError, match=rf"^u\.txt:{MIN_WORDS + 1}: duplicate word .*\(same as line 11 after NFKC"):
        parse_wordlist(_text(words), "u.txt")


def test_duplicate_after_nfkc():
    assert "fish" not in BASE
    words = BASE[:-2] + ["ﬁsh", "fish"]  # the ligature ﬁ is NFKC-equal to "fi"
    with pytest.raises(InputError, match=rf"^u\.txt:{MIN_WORDS}: duplicate word 'fish'"):
        parse_wordlist(_text(words), "u.txt")


def test_whitespace_inside_word_names_line():
    words = BASE[:5] + ["two words"] + BASE[5:]
    with pytest.raises(InputError, match=r"^u\.txt:6: whitespace inside a word"):
        parse_wordlist(_text(words), "u.txt")


def test_punctuation_inside_word_names_line():
    words = BASE[:7] + ["can't"] + BASE[7:]
    with pytest.raises(InputError, match=r"^u\.txt:8: punctuation or symbol"):
        parse_wordlist(_text(words), "u.txt")


def test_too_short_list_names_file():
    with pytest.raises(InputError, match=rf"^u\.txt: only {MIN_WORDS - 1} words; .*at least {MIN_WORDS}"):
        parse_wordlist(_text(BASE[:-1]), "u.txt")


def test_header_sha256_mismatch():
    with pytest.raises(InputError, match=r"^u\.txt: header sha256 0+ does not match"):
        parse_wordlist("# sha256: " + "0" * 64 + "\n" + _text(BASE), "u.txt")


def test_unknown_wordlist_name():
    with pytest.raises(InputError, match="unknown word list 'xx'"):
        load_wordlist("xx")
