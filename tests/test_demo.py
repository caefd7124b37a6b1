"""`ghostsent demo` on a reduced size: the whole loop runs, leaves only its reports, and keeps away from
the user's ledger unless asked."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from ghostsent.study.demo import run_demo
from ghostsent.ledger import Ledger

pytestmark = pytest.mark.slow


def test_demo_loop_reports_and_cleans_up(tmp_path, monkeypatch, default_target):
    monkeypatch.chdir(tmp_path)
    before = set(Path(tempfile.gettempdir()).glob("ghostsent-demo-*"))
    res = run_demo(tmp_path / "out", corpus="builtin:pydoc", seed=3, n_docs=8, n_carriers=4, n_nulls=40,
                   progress=False, log=lambda m: None)
    assert [r.model for r in res.rows] == ["untouched", "fine-tuned"]
    for r in res.rows:
        assert 0 < r.ppl_p <= 1 and 0 < r.probe_p <= 1 and r.ppl_n == 41
        assert Path(r.report).exists()
    assert not res.rows[0].detected  # the untouched model never saw the fresh ghost
    # one identifier tested twice, through the session: the second test pays its history share
    assert [r.test_number for r in res.rows] == [1, 2]
    for r in res.rows:
        assert r.p_history == pytest.approx(min(1.0, 2 * min(r.probe_p, r.ppl_p) * r.test_number * (r.test_number + 1)))
    assert res.ppl_floor == pytest.approx(2 / 41 * 6)
    assert res.train["steps"] >= 1
    assert not (tmp_path / "ghostsent.db").exists()  # the user's ledger is not touched
    assert set(Path(tempfile.gettempdir()).glob("ghostsent-demo-*")) == before  # work folder removed

    led = tmp_path / "mine.db"
    res2 = run_demo(tmp_path / "out2", corpus="builtin:pydoc", seed=4, n_docs=8, n_carriers=4, n_nulls=40,
                    ledger_path=led, progress=False, log=lambda m: None)
    with Ledger(led) as ledger:
        ident = ledger.get(res2.identifier)
        assert ident.owner == "demo" and ledger.count_insertions(ident.id) == 4
        from ghostsent.ledger.history import history
        assert history(ledger, ident.id).n_tests == 2  # both tests counted and stored
        assert len(ledger.runs()) == 2
