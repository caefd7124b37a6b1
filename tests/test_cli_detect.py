"""Detection commands end to end: real ledger, real embedded model, real report files."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ghostsent.cli import main
from ghostsent.ledger import Ledger
from ghostsent.wordlists import load_wordlist


@pytest.fixture()
def ledger_with_ids(tmp_path):
    path = tmp_path / "l.db"
    with Ledger(path) as led:
        a = led.new_identifier("alice", load_wordlist("en"), 8, "post")
        b = led.new_identifier("alice", load_wordlist("en"), 8, "post")
    return path, a, b


def invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r


def test_card_and_check_pasted_reply(ledger_with_ids, tmp_path):
    path, a, _ = ledger_with_ids
    r = invoke("card", a.id, "--ledger", path, "--json")
    assert r.exit_code == 0, r.output
    prompts = json.loads(r.output)["prompts"]
    assert [p["k"] for p in prompts] == [2, 3, 4]
    shown = " ".join(a.ghost.words[:-3])
    assert shown in prompts[1]["prompt"] and a.ghost.words[-1] not in prompts[1]["prompt"].split()[-1:]

    good = tmp_path / "good.txt"
    good.write_text("Sure: " + " ".join(a.ghost.words) + ".", encoding="utf-8")
    r = invoke("check", a.id, "--reply", good, "--k", "3", "--ledger", path, "--exit-code", "--json")
    assert r.exit_code == 1, r.output  # detected
    d = json.loads(r.output)
    # only the last 2 words count (the card's k=2 prompt showed the rest): 2 of 2 at a few places
    assert d["detected"] and d["tail_words"] == 2 and d["p_value"] < 1e-7

    bad = tmp_path / "bad.txt"
    bad.write_text("I don't know how this sentence ends.", encoding="utf-8")
    r = invoke("check", a.id, "--reply", bad, "--ledger", path, "--exit-code")
    assert r.exit_code == 0 and "NOT DETECTED" in r.output


def test_check_unknown_identifier_exit_code(ledger_with_ids, tmp_path):
    path, _, _ = ledger_with_ids
    f = tmp_path / "r.txt"
    f.write_text("x")
    r = invoke("check", "gs-doesnotexist", "--reply", f, "--ledger", path)
    assert r.exit_code == 4 and "gs-doesnotexist" in r.output


@pytest.mark.slow
def test_audit_ppl_and_probe_store_run_and_write_report(ledger_with_ids, tmp_path, default_target):
    path, a, b = ledger_with_ids
    rep = tmp_path / "rep"
    r = invoke("audit", "--tests", "ppl", "--nulls", "60", "--controls", "2", "--seed", "3", "--alpha", "0.01",
               "--ledger", path, "--report", rep, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    members = [s for s in d["subjects"] if s["role"] == "member"]
    assert {s["key"] for s in members} == {a.id, b.id}
    assert all("p_holm" in s and s["ppl"]["n_nulls"] == 60 for s in members)
    assert "ppl_rank_sum" in d["combined"]
    assert not d["detected"]
    for f in ("report.json", "report.md", "report.html", "pvalues.png", "ppl_null_0.png"):
        assert (rep / f).exists(), f
    with Ledger(path) as led:
        runs = led.runs()
        assert len(runs) == 1
        full = led.run(runs[0]["id"])
        assert len([x for x in full["records"] if x["test"] == "ppl"]) == 4  # 2 members + 2 controls

    r = invoke("probe", a.id, "--k", "2", "--controls", "1", "--mode", "raw", "--ledger", path,
               "--report", tmp_path / "rep2")
    assert r.exit_code == 0, r.output
    assert "NOT DETECTED" in r.output
    assert "approx" not in r.output and "test #2" in r.output  # a's second test; no extrapolation beside it
    r = invoke("ppl-test", a.id, "--nulls", "30", "--controls", "0", "--no-store", "--ledger", path,
               "--report", tmp_path / "rep3")
    assert r.exit_code == 0 and "test #3" in r.output and "(at most 5.0)" in r.output, r.output
    h = json.loads(invoke("show", a.id, "--ledger", path, "--json").output)["history"]
    assert [t["kind"] for t in h["tests"]] == ["audit", "probe", "ppl-test"]
    assert [t["stored"] for t in h["tests"]] == [True, True, False]
    assert {(d["via"], d["endpoint"]) for d in h["disclosures"]} == {("ppl", "default"), ("probe", "default")}
    with Ledger(path) as led:
        assert len(led.runs()) == 2  # --no-store: counted, not stored


# --- the API path end to end: the CLI against a real OpenAI-compatible server on loopback ----------


@pytest.mark.slow
@pytest.mark.server
def test_probe_and_ppl_test_through_the_api(ledger_with_ids, tmp_path, llama_server):
    path, a, _ = ledger_with_ids
    r = invoke("probe", a.id, "--model", "openai:smollm2", "--base-url", llama_server,
               "--api-key-env", "GHOSTSENT_TEST_API_KEY", "--k", "2", "--controls", "1",
               "--ledger", path, "--report", tmp_path / "p", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["model"]["spec"] == "openai:smollm2"
    assert all(rec["mode"].startswith("chat") for rec in d["subjects"][0]["probe"]["records"])
    assert not d["detected"]

    r = invoke("ppl-test", a.id, "--model", "openai:smollm2", "--base-url", llama_server,
               "--api-key-env", "GHOSTSENT_TEST_API_KEY", "--nulls", "20", "--controls", "1", "--alpha", "0.05",
               "--ledger", path, "--report", tmp_path / "q", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["subjects"][0]["ppl"]["n_nulls"] == 20
    # the key never reaches the report or the ledger
    key = __import__("os").environ["GHOSTSENT_TEST_API_KEY"]
    assert key not in (tmp_path / "q" / "report.json").read_text()
    assert key not in path.read_bytes().decode("utf-8", "replace")


@pytest.mark.slow
@pytest.mark.server
def test_ppl_test_refuses_a_server_with_shifted_logprobs(ledger_with_ids, tmp_path, upstream_llama_server, api_key_env):
    path, a, _ = ledger_with_ids
    env = api_key_env(upstream_llama_server.key)
    r = invoke("ppl-test", a.id, "--model", "openai:smollm2", "--base-url", upstream_llama_server.base_url,
               "--api-key-env", env, "--nulls", "20", "--ledger", path, "--report", tmp_path / "r")
    assert r.exit_code == 5, r.output
    assert "shifted by one token" in r.output


def test_python_dash_m_ghostsent_is_the_same_command(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "ghostsent", "new", "--owner", "x", "--ledger", str(tmp_path / "l.db"),
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["owner"] == "x"
    r = subprocess.run([sys.executable, "-m", "ghostsent", "show", "nope", "--ledger", str(tmp_path / "l.db")],
                       capture_output=True, text=True)
    assert r.returncode == 4 and "nope" in r.stderr


def test_library_api_is_importable_without_loading_torch():
    import subprocess
    import sys

    code = ("import sys, ghostsent; assert 'torch' not in sys.modules; "
            "[getattr(ghostsent, n) for n in ghostsent.__all__]; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_model_options_are_checked_before_anything_is_counted(ledger_with_ids):
    """-M key=value: an option the kind of model does not take (or a malformed one) is one line naming
    what it takes, exit 5, and the identifier's history gains no test."""
    from ghostsent.ledger.history import history

    path, a, _ = ledger_with_ids
    r = invoke("probe", a.id, "--ledger", path, "-M", "colour=blue")
    assert r.exit_code == 5 and "model option 'colour' does not apply to default models" in r.output
    assert "dtype" in r.output and "Traceback" not in r.output
    r = invoke("ppl-test", a.id, "--ledger", path, "-M", "dtype")
    assert r.exit_code == 5 and "not of the form key=value" in r.output
    with Ledger(path) as led:
        assert history(led, a.id).n_tests == 0


def test_ctrl_c_is_one_message_and_exit_130(monkeypatch, tmp_path):
    """Ctrl-C in any command ends in the one handler of the CLI (exit 130, one line, no traceback)."""
    import ghostsent.wordlists

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ghostsent.wordlists, "load_wordlist", interrupted)
    r = CliRunner().invoke(main, ["new", "--ledger", str(tmp_path / "l.db")])
    assert r.exit_code == 130 and r.output.strip() == "Interrupted." and not (tmp_path / "l.db").exists()
