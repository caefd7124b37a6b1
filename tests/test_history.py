"""Every test of an identifier counts, and what each test showed to whom is logged (issue 7: defects 2, 3).

Re-running a test until it succeeds must not manufacture significance: the identifier's j-th test is held
to alpha/(j(j+1)) (these add up to alpha), whichever command ran it, with or without --no-store. Testing
shows the provider words of the passphrase, so the ledger logs which words went to which endpoint.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from ghostsent.detection import session
from ghostsent.detection.results import DetectionSettings
from ghostsent.detection.subjects import subjects_from_ledger
from ghostsent.cli import main
from ghostsent.ledger import Ledger, open_ledger
from ghostsent.ledger.history import history
from ghostsent.ledger.transfer import export_jsonl, import_jsonl
from ghostsent.targets.base import Scored, Target
from ghostsent.wordlists import load_wordlist

WL = load_wordlist("en")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def ident(ledger_at):
    """An identifier in a new ledger on each backend (SQLite file, PostgreSQL database): its location and it."""
    path = ledger_at.location("l")
    with open_ledger(path, create=True) as led:
        i = led.new_identifier("w", WL, 12, "post")
    return path, i


class Innocent(Target):
    """A model that never saw any ghost: NLL from a hash of the text, replies of random list words.

    It stands in for an API (describe() names a base URL), so the disclosure log has an endpoint."""

    spec = "openai:innocent"
    is_chat = True
    computes_logprobs_locally = True  # its numbers are its own: nothing to align

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def score(self, context, continuations, *, full_stats=False, progress=False):
        return [Scored([c], np.array([-float(self.rng.normal(5, 1))])) for c in continuations]

    def generate(self, prompt, *, max_tokens=32, temperature=0.0, n=1, seed=None):
        return [" ".join(WL.words[int(i)] for i in self.rng.integers(0, WL.size, 6)) for _ in range(n)]

    def chat(self, messages, **kw):
        return self.generate("", **kw)

    def describe(self):
        return {"spec": self.spec, "base_url": "https://api.example.com/v1"}


# --- defect 2: history -----------------------------------------------------------------------------------

def test_every_check_counts_and_is_corrected_for_the_ones_before(ident, tmp_path):
    path, i = ident
    words = i.ghost.words
    reply = tmp_path / "r.txt"
    reply.write_text("Sure: " + " ".join(words[-2:]), encoding="utf-8")
    seen = []
    for j in (1, 2, 3):
        d = json.loads(invoke("check", i.id, "--reply", reply, "--ledger", path, "--json").output)
        assert d["test_number"] == j
        assert d["p_history"] == pytest.approx(min(1.0, d["p_value"] * j * (j + 1)))
        seen.append(d["p_history"])
    assert seen[0] < seen[1] < seen[2]
    d = json.loads(invoke("show", i.id, "--ledger", path, "--json").output)
    h = d["history"]
    assert h["n_tests"] == 3 and [t["kind"] for t in h["tests"]] == ["check"] * 3
    assert h["p_over_all"] == pytest.approx(min(seen))
    out = invoke("show", i.id, "--ledger", path).output
    assert "tests: 3" in out and "corrected p over all tests" in out


def test_a_check_that_would_pass_alone_fails_after_enough_retests(ident, tmp_path):
    """One matched word of the tail (p = 2.6e-4) passes at 0.005 on the first test, not on the fourth (x20)."""
    path, i = ident
    reply = tmp_path / "r.txt"
    reply.write_text(i.ghost.words[-2] + " nothing", encoding="utf-8")
    verdicts = []
    for _ in range(4):
        d = json.loads(invoke("check", i.id, "--reply", reply, "--k", "2", "--alpha", "0.005", "--ledger", path,
                              "--json").output)
        verdicts.append(d["detected"])
    assert verdicts[0] and not verdicts[-1]


def test_library_runs_reserve_a_test_number_before_they_run(ident, tmp_path):
    path, i = ident
    settings = DetectionSettings(tests=("ppl",), n_nulls=50, controls=1, alpha=0.05)
    with open_ledger(path) as led:
        subjects = subjects_from_ledger([led.get(i.id)])
        res1, run1 = session.run_recorded(led, Innocent(1), subjects, settings, kind="ppl-test")
        res2, run2 = session.run_recorded(led, Innocent(2), subjects, settings, kind="ppl-test", store=False)
        assert run1 is not None and run2 is None
        m1, m2 = res1.members()[0], res2.members()[0]
        assert (m1.test_number, m2.test_number) == (1, 2)
        assert m2.p_history == pytest.approx(min(1.0, 6 * m2.p_value))
        h = history(led, i.id)
        assert h.n_tests == 2 and [t.stored for t in h.tests] == [True, False]
        assert h.tests[1].p_value == pytest.approx(m2.p_value)
        assert len(led.runs()) == 1  # --no-store keeps only the count, p and disclosure


def test_an_interrupted_test_still_counts(ident):
    path, i = ident

    class Broken(Innocent):
        def score(self, *a, **kw):
            raise RuntimeError("server went away")

    settings = DetectionSettings(tests=("ppl",), n_nulls=10, controls=0)
    with open_ledger(path) as led:
        subjects = subjects_from_ledger([led.get(i.id)])
        with pytest.raises(RuntimeError):
            session.run_recorded(led, Broken(), subjects, settings, kind="ppl-test")
        h = history(led, i.id)
        assert h.n_tests == 1 and h.tests[0].p_value is None
        res, _ = session.run_recorded(led, Innocent(), subjects, settings, kind="ppl-test")
        assert res.members()[0].test_number == 2


def test_history_survives_export_and_import(ident, tmp_path):
    path, i = ident
    reply = tmp_path / "r.txt"
    reply.write_text("no idea", encoding="utf-8")
    invoke("card", i.id, "--ledger", path)
    invoke("check", i.id, "--reply", reply, "--ledger", path)
    buf = io.StringIO()
    with open_ledger(path) as led:
        export_jsonl(led, buf)
    other = tmp_path / "other.db"
    with Ledger(other) as led:
        import_jsonl(led, io.StringIO(buf.getvalue()), "x.jsonl")
        import_jsonl(led, io.StringIO(buf.getvalue()), "x.jsonl")  # idempotent
        h = history(led, i.id)
        assert h.n_tests == 1 and len(h.disclosures) == 3  # the card: one per prompt
    d = json.loads(invoke("check", i.id, "--reply", reply, "--ledger", other, "--json").output)
    assert d["test_number"] == 2


def test_old_runs_count_as_tests_after_the_upgrade(ident, ledger_at):
    """A ledger from before the history existed: its stored runs are counted by the migration."""
    path, i = ident
    with ledger_at("old", _target_version=2) as led:
        led.add_identifier(i)
        for _ in range(2):
            run = led.add_run("probe", {"spec": "x"}, {}, {})
            led.add_run_records(run, [{"identifier_id": i.id, "role": "member", "test": "probe", "p_value": 0.5,
                                       "details": {}}])
    with ledger_at("old") as led:
        assert history(led, i.id).n_tests == 2


# --- defect 3: disclosure log -----------------------------------------------------------------------------

def test_card_and_api_tests_log_what_they_showed_to_whom(ident):
    path, i = ident
    assert invoke("card", i.id, "--ledger", path).exit_code == 0
    settings = DetectionSettings(tests=("probe", "ppl"), ks=(3, 4), n_nulls=20, controls=0)
    with open_ledger(path) as led:
        session.run_recorded(led, Innocent(), subjects_from_ledger([led.get(i.id)]), settings, kind="audit")
        h = history(led, i.id)
    by = {}
    for d in h.disclosures:
        by.setdefault((d.via, d.endpoint), []).append(d.words)
    api = "openai:innocent at https://api.example.com/v1"
    assert by[("card", session.CARD_ENDPOINT)] == [list(range(12 - k)) for k in (2, 3, 4)]  # one per prompt
    assert by[("probe", api)] == [list(range(9))]   # k=3 and k=4 prompts: at most 9 words
    assert by[("ppl", api)] == [list(range(12))]    # scoring shows every word
    d = json.loads(invoke("show", i.id, "--ledger", path, "--json").output)
    assert len(d["history"]["disclosures"]) == 5
    out = invoke("show", i.id, "--ledger", path).output
    assert "words 1-12 of 12" in out and "api.example.com" in out


def test_check_scores_only_what_no_card_has_shown(ident, tmp_path):
    path, i = ident
    words = i.ghost.words
    reply = tmp_path / "r.txt"
    reply.write_text("Sure: " + " ".join(words[-4:]), encoding="utf-8")
    assert json.loads(invoke("card", i.id, "--k", "4", "--ledger", path, "--json").output)["scored_words"] == 4
    d = json.loads(invoke("check", i.id, "--reply", reply, "--ledger", path, "--json").output)
    assert d["tail_words"] == 4 and d["records"][0]["matches"] == 4
    # now the k=2 prompt has shown words 3 and 4 from the end; a later k=4 card cannot take that back
    assert json.loads(invoke("card", i.id, "--k", "2", "--ledger", path, "--json").output)["scored_words"] == 2
    assert json.loads(invoke("card", i.id, "--k", "4", "--ledger", path, "--json").output)["scored_words"] == 2
    d = json.loads(invoke("check", i.id, "--reply", reply, "--ledger", path, "--json").output)
    assert d["tail_words"] == 2 and d["records"][0]["matches"] == 2


def test_disclosures_hold_no_secrets(ident, monkeypatch):
    path, i = ident
    monkeypatch.setenv("GS_TEST_SECRET", "sk-very-secret-key")

    class Keyed(Innocent):
        def describe(self):
            return {"spec": "openai:m", "base_url": "https://user:pw@api.example.com/v1?key=sk-very-secret-key"}

    with open_ledger(path) as led:
        session.run_recorded(led, Keyed(), subjects_from_ledger([led.get(i.id)]),
                             DetectionSettings(tests=("ppl",), n_nulls=5, controls=0), kind="ppl-test")
    with open_ledger(path) as led:  # read back through the backend's own connection (raw rows)
        raw = led._conn.execute("SELECT endpoint FROM disclosures").fetchall()
    assert raw and all("secret" not in e and "pw" not in e for (e,) in raw), raw
