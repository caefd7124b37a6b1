"""`ghostsent survive`: real pipeline stages on a real corpus (KJV), default placement vs a ghost in its
own paragraph, and faults that each stage must catch (a bad word, a long ghost, duplicate pages)."""
from __future__ import annotations

import json
import random
import shutil

import pytest
from click.testing import CliRunner

pytest.importorskip("datatrove")
pytest.importorskip("trafilatura")

from ghostsent.cli import main  # noqa: E402
from ghostsent.study.corpus import load_corpus  # noqa: E402
from ghostsent.insert import insert  # noqa: E402
from ghostsent.ledger import Ledger  # noqa: E402
from ghostsent.passphrase import draw_words  # noqa: E402
from ghostsent.survive.pipeline import default_stages, run_survival  # noqa: E402
from ghostsent.survive.stages import Doc, ExactDocument, LineDedup, regex_tokenizer  # noqa: E402
from ghostsent.wordlists import load_wordlist  # noqa: E402

N_DOCS = 40
REPS = (1, 3, 8)


@pytest.fixture(scope="module")
def corpus():
    if shutil.which("bible") is None:
        pytest.skip("needs Debian's bible-kjv (CI installs it)")
    return [d.text for d in load_corpus("builtin:kjv", min_words=100, limit=N_DOCS)]


def own_paragraph(text: str, ghost: str, rng: random.Random) -> str:
    """The naive contrast: the ghost as a paragraph of its own, at a paragraph break in the second half."""
    breaks = [i for i in range(len(text)) if text.startswith("\n\n", i) and i >= len(text) / 2] or [len(text)]
    i = rng.choice(breaks)
    return text[:i] + "\n\n" + ghost + "\n\n" + text[i:].lstrip("\n")


def tagged_corpus(texts, placement: str, seed: int = 0, ghost_words: int = 12):
    rng = random.Random(seed)
    wl = load_wordlist("en")
    ghosts = {f"g{r}": " ".join(draw_words(wl, ghost_words, rng)) + "." for r in REPS}
    order = list(range(len(texts)))
    rng.shuffle(order)
    owner = {}
    for g, r in zip(ghosts, REPS):
        for _ in range(r):
            owner[order.pop()] = g
    docs = []
    for i, text in enumerate(texts):
        g = owner.get(i)
        if g is None:
            docs.append(Doc(f"d{i}", text))
            continue
        new = insert(text, ghosts[g][:-1], rng=rng)[0] if placement == "default" else own_paragraph(text, ghosts[g], rng)
        docs.append(Doc(f"d{i}", new, (g,), text))
    return docs, ghosts


@pytest.fixture(scope="module")
def default_run(corpus):
    docs, ghosts = tagged_corpus(corpus, "default")
    return run_survival(docs, ghosts, default_stages(tokenizer=regex_tokenizer()))


@pytest.fixture(scope="module")
def naive_run(corpus):
    docs, ghosts = tagged_corpus(corpus, "own-paragraph")
    stages = [s for s in default_stages(tokenizer=regex_tokenizer(), groups=("dedup",))]
    return run_survival(docs, ghosts, stages)


def _stage(report, name):
    return next(s for s in report.stages if s.name == name)


def test_default_placement_survives_every_stage(default_run):
    rep = default_run
    assert rep.copies == sum(REPS) and rep.ghosts == len(REPS)
    names = [s.name for s in rep.stages]
    for expected in ("publish+trafilatura", "publish+resiliparse", "language-id", "gopher-repetition", "gopher-quality",
                     "c4-quality", "c4-badwords", "fineweb-quality", "exact-document", "minhash", "c4-3-sentence-span",
                     "line (CCNet)", "paragraph (Dolma)", "exact-substring-50", "exact-substring-30",
                     "normalise-lowercase"):
        assert expected in names
    for s in rep.stages:
        if s.kind in ("filter", "extract"):
            assert s.dropped_because_of_ghost == 0, s  # no page lost because of its ghost
            # where the untagged page passed, the tagged one passed with its ghost intact
            assert s.filter_share is None or s.filter_share >= 0.99, s
        else:
            assert s.ghosts_lost == [], s  # at least one copy of every ghost survives each dedup stage
    for name in ("publish+trafilatura", "publish+resiliparse"):
        assert _stage(rep, name).copies_kept == sum(REPS)  # extracted intact
    for s in rep.stages:
        if s.kind == "normalise":
            assert s.copies_kept == s.copies_in


def test_own_paragraph_keeps_only_the_first_copy_under_line_dedup(naive_run):
    line = _stage(naive_run, "line (CCNet)")
    assert line.copies_in == sum(REPS)
    assert line.copies_kept == len(REPS)  # one copy of each ghost: line dedup keeps the first
    assert line.ghosts_lost == []


def test_a_bad_word_in_the_ghost_gets_the_page_dropped(corpus):
    text = corpus[0]
    ghost = "quiet garden panties lantern."
    docs = [Doc("t", insert(text, ghost[:-1], rng=random.Random(1))[0], ("bad",), text)]
    stages = [s for s in default_stages(groups=("filters",)) if s.name == "c4-badwords"]
    rep = run_survival(docs, {"bad": ghost}, stages)
    s = rep.stages[0]
    if s.untagged_kept:  # the chapter itself passes C4's list
        assert s.dropped_because_of_ghost == 1 and s.ghosts_lost == ["bad"]


def test_exact_substring_strikes_a_ghost_longer_than_the_threshold(corpus):
    docs, ghosts = tagged_corpus(corpus[:20], "default", seed=3, ghost_words=60)  # > 50 tokens
    stages = [s for s in default_stages(tokenizer=regex_tokenizer(), groups=("dedup",)) if "substring" in s.name]
    rep = run_survival(docs, ghosts, stages)
    s50 = rep.stages[0]
    # every ghost repeated at least twice is struck from ALL its copies (Lee et al. strike every occurrence)
    repeated = {g for g, r in zip(ghosts, REPS) if r > 1}
    assert repeated <= set(s50.ghosts_lost)
    assert "g1" not in s50.ghosts_lost  # a ghost in one document only is not a repeat


def test_exact_document_dedup_and_line_dedup_units():
    ghosts = {"g": "alpha beta gamma delta."}
    same = "One line here.\nalpha beta gamma delta.\nAnother line."
    docs = [Doc("a", same, ("g",)), Doc("b", same, ("g",)), Doc("c", "Other text.\nalpha beta gamma delta.", ("g",)),
            Doc("d", "Other text. alpha beta gamma delta. More.", ("g",))]
    rep = run_survival(docs, ghosts, [ExactDocument(), LineDedup()])
    ex, line = rep.stages
    assert (ex.docs_in, ex.docs_kept, ex.copies_kept) == (4, 3, 3)
    # the ghost on a line of its own survives once; inside a line it survives
    assert (line.copies_in, line.copies_kept, line.ghosts_lost) == (3, 2, [])


def test_cli_survive_on_a_folder_with_exit_code(tmp_path, corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    led = tmp_path / "l.db"
    r = CliRunner().invoke(main, ["new", "--owner", "ann", "--words", "10", "--json", "--ledger", str(led)])
    ident = json.loads(r.stdout)["id"]
    src = tmp_path / "posts"
    src.mkdir()
    for i, text in enumerate(corpus[:12]):
        (src / f"p{i:02}.md").write_text(text, encoding="utf-8")
    tagged = [str(src / f"p{i:02}.md") for i in range(0, 12, 3)]
    r = CliRunner().invoke(main, ["insert", ident, *tagged, "--in-place", "--no-backup", "--ledger", str(led)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "rep"
    args = ["survive", str(src), "--tokenizer", "regex", "--stages", "extract,dedup,normalise", "--out", str(out),
            "--json", "--exit-code", "--ledger", str(led)]
    r = CliRunner().invoke(main, args)
    data = json.loads(r.output)
    assert data["copies"] == 4 and data["tagged_documents"] == 4 and data["documents"] == 12
    assert r.exit_code == (1 if data["losses"] else 0)
    for f in ("survival.json", "survival.md", "survival_funnel.png"):
        assert (out / f).stat().st_size > 0
    assert (out / "survival_funnel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the ledger's own insertions as input, human output
    r = CliRunner().invoke(main, ["survive", "--owner", "ann", "--tokenizer", "regex", "--stages", "dedup",
                                  "--out", str(out), "--ledger", str(led)])
    assert r.exit_code == 0, r.output
    assert "exact-substring-50" in r.output and "4 documents (4 tagged)" in r.output
    # the passphrase itself never appears in reports
    ghost = json.loads(CliRunner().invoke(main, ["show", ident, "--json", "--ledger", str(led)]).output)["text"]
    assert ghost not in (out / "survival.json").read_text() and ghost not in (out / "survival.md").read_text()


def test_cli_survive_bad_input_is_one_line(tmp_path):
    led = tmp_path / "l.db"
    r = CliRunner().invoke(main, ["survive", str(tmp_path), "--ledger", str(led)])
    assert r.exit_code == 4 and r.output.startswith("Error: ") and len(r.output.splitlines()) == 1  # no ledger
    Ledger(led, create=True).close()  # an empty ledger
    r = CliRunner().invoke(main, ["survive", str(tmp_path), "--ledger", str(led)])
    assert r.exit_code == 3 and r.output.startswith("Error: no identifiers")
    CliRunner().invoke(main, ["new", "--ledger", str(led)])
    r = CliRunner().invoke(main, ["survive", str(tmp_path), "--ledger", str(led)])
    assert r.exit_code == 3 and "no .txt" in r.output
    r = CliRunner().invoke(main, ["survive", str(tmp_path), "--stages", "bogus", "--ledger", str(led)])
    assert r.exit_code == 2


def test_cli_survive_owner_with_jsonl_insertions_points_to_the_output(tmp_path):
    led = tmp_path / "l.db"
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"owner": "bo", "text": f"First sentence {i} here. Second one {i} follows. "
                                                               f"Third one {i} ends."}) + "\n" for i in range(4)))
    out = tmp_path / "out.jsonl"
    r = CliRunner().invoke(main, ["tag-jsonl", str(src), str(out), "--ledger", str(led)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["survive", "--owner", "bo", "--tokenizer", "regex", "--stages", "dedup",
                                  "--out", str(tmp_path / "rep"), "--ledger", str(led)])
    assert r.exit_code == 3 and "pass the tagged output (OUT.jsonl) as SOURCE" in r.output
    r = CliRunner().invoke(main, ["survive", str(out), "--owner", "bo", "--tokenizer", "regex", "--stages", "dedup",
                                  "--out", str(tmp_path / "rep"), "--json", "--ledger", str(led)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["documents"] == 4 and data["tagged_documents"] == 4


def test_publishing_wraps_boilerplate_that_extraction_removes(corpus):
    from ghostsent.survive.stages import Extract, render_page

    text = corpus[1]
    page = render_page(text, "en", "A post")
    assert "This site uses cookies" in page and "Reader one" in page and "<nav" in page
    for extractor in ("trafilatura", "resiliparse"):
        out = list(Extract(extractor=extractor).run(lambda: iter([Doc("x", text)])))[0].text
        assert "uses cookies" not in out and "Reader one" not in out and "All rights reserved" not in out
        assert text.split(". ")[1][:40] in out  # the post's own sentences are there
