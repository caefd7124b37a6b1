"""The last-k probe and the card/check path stay valid whatever the user pastes (issue 7: defects 1, 8, 9, 6).

The card's nested prompts reveal, in the k=2 prompt, the words the k=3 and k=4 prompts hold out. A chat
transcript pasted whole contains every prompt, so only words that no prompt ever showed may be scored.
"""
from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from ghostsent.cli import main
from ghostsent.errors import InputError
from ghostsent.ledger import Ledger
from ghostsent.passphrase import new_ghost
from ghostsent.detection.probe import card_prompts, check_reply, run_probes
from ghostsent.targets.base import Target
from ghostsent.wordlists import load_wordlist

WL = load_wordlist("en")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def ident(tmp_path):
    path = tmp_path / "l.db"
    with Ledger(path) as led:
        i = led.new_identifier("w", WL, 12, "post")
    return path, i


def _card(path, ident):
    r = invoke("card", ident.id, "--ledger", path, "--json")
    assert r.exit_code == 0, r.output
    return {p["k"]: p["prompt"] for p in json.loads(r.output)["prompts"]}


def _echo_transcript(prompts: dict[int, str], ks=(2,)) -> str:
    """The issue's innocent chat: each prompt pasted, the model echoing its end and giving up."""
    parts = []
    for k in ks:
        p = prompts[k]
        parts += [p, "..." + " ".join(p.split()[-4:]), "Sorry, I don't know how this continues."]
    return "\n\n".join(parts)


# --- defect 1: check without --k must not score revealed words ----------------------------------------

def test_pasted_chat_with_the_k2_prompt_is_not_detected(ident, tmp_path):
    path, i = ident
    prompts = _card(path, i)
    reply = tmp_path / "reply.txt"
    reply.write_text(_echo_transcript(prompts), encoding="utf-8")
    r = invoke("check", i.id, "--reply", reply, "--ledger", path, "--exit-code", "--json")
    d = json.loads(r.output)
    assert r.exit_code == 0 and not d["detected"], d
    assert d["p_value"] == 1.0 and d["tail_words"] == 2


def test_pasted_whole_card_conversation_is_not_detected(ident, tmp_path):
    path, i = ident
    prompts = _card(path, i)
    reply = tmp_path / "reply.txt"
    reply.write_text(_echo_transcript(prompts, ks=(4, 3, 2)), encoding="utf-8")
    for extra in ([], ["--k", "4"], ["--k", "3"], ["--k", "2"]):
        r = invoke("check", i.id, "--reply", reply, *extra, "--ledger", path, "--json")
        d = json.loads(r.output)
        assert not d["detected"] and d["p_value"] == 1.0, (extra, d)


def test_library_check_reply_scores_only_words_no_prompt_showed():
    g = new_ghost(WL, 12, "post", random.Random(1))
    prompts = {p["k"]: p["prompt"] for p in card_prompts(g)}
    res = check_reply(g, _echo_transcript(prompts), WL.size, (2, 3, 4))
    assert res.p_value == 1.0
    assert {r.k for r in res.records} == {2}  # the never-revealed tail


@pytest.mark.parametrize("k", [2, 3, 4])
def test_a_real_completion_is_still_detected_with_and_without_k(ident, tmp_path, k):
    path, i = ident
    prompts = _card(path, i)
    words = i.ghost.words
    reply = tmp_path / "reply.txt"
    reply.write_text("Sure: " + " ".join(words[len(words) - k:]) + ".", encoding="utf-8")
    for extra in ([], ["--k", str(k)]):
        r = invoke("check", i.id, "--reply", reply, *extra, "--ledger", path, "--json")
        d = json.loads(r.output)
        assert d["detected"] and d["records"][0]["matches"] == 2, (extra, d)
    assert prompts[k].endswith(" ".join(words[: len(words) - k]))


def test_check_takes_several_replies_at_once(ident, tmp_path):
    path, i = ident
    _card(path, i)
    files = []
    for n in range(4):
        f = tmp_path / f"r{n}.txt"
        f.write_text(f"I do not know ({n}).", encoding="utf-8")
        files += ["--reply", f]
    r = invoke("check", i.id, *files, "--ledger", path, "--json")
    d = json.loads(r.output)
    assert r.exit_code == 0 and len(d["records"]) == 4 and d["n_probes"] == 4
    assert [rec["reply"] for rec in d["records"]] == [f"I do not know ({n})." for n in range(4)]


# --- defect 8: 1 <= k < n everywhere --------------------------------------------------------------------

@pytest.mark.parametrize("k", ["12", "13", "0"])
def test_card_and_check_refuse_k_outside_1_to_n_minus_1(ident, tmp_path, k):
    path, i = ident
    f = tmp_path / "r.txt"
    f.write_text("x", encoding="utf-8")
    for args in (("card", i.id), ("check", i.id, "--reply", f)):
        r = invoke(*args, "--k", k, "--ledger", path)
        assert r.exit_code == 2, (args, r.output)
        assert "--k" in r.output


def test_library_refuses_k_equal_to_the_number_of_words():
    g = new_ghost(WL, 6, "post", random.Random(2))
    with pytest.raises(InputError, match="k=6"):
        card_prompts(g, (6,))
    with pytest.raises(InputError, match="k=6"):
        check_reply(g, "anything", WL.size, (6,))
    with pytest.raises(InputError, match="k=0"):
        run_probes(_Recorder(), [(g, WL.size)], ks=(0,))


# --- defect 9 and 6: batches never mix one identifier's different prompts; order is shuffled --------------

class _Recorder(Target):
    """A model that never saw anything: replies 'no idea', and records the batches it was sent."""

    spec = "test:recorder"
    is_chat = True

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def score(self, context, continuations, *, full_stats=False, progress=False):  # pragma: no cover
        raise NotImplementedError

    def generate(self, prompt, **kw):  # pragma: no cover - batched path below
        return ["no idea"]

    def chat(self, messages, **kw):  # pragma: no cover
        return ["no idea"]

    def generate_many(self, prompts, *, n=1, **kw):
        self.batches.append(list(prompts))
        return [["no idea"] * n for _ in prompts]

    def chat_many(self, conversations, *, n=1, **kw):
        self.batches.append([c[-1]["content"] for c in conversations])
        return [["no idea"] * n for _ in conversations]


def test_no_batch_holds_two_different_prompts_of_one_identifier():
    rng = random.Random(3)
    ghosts = [new_ghost(WL, 8, "post", rng) for _ in range(3)]
    t = _Recorder()
    run_probes(t, [(g, WL.size) for g in ghosts], ks=(2, 3, 4), modes=("raw", "chat"))
    assert t.batches
    for batch in t.batches:
        for g in ghosts:
            contexts = {g.context_for(k) for k in (2, 3, 4) if any(p.endswith(g.context_for(k)) for p in batch)}
            assert len(contexts) <= 1, batch


def test_prompts_are_sent_in_a_shuffled_order_which_is_recorded():
    rng = random.Random(4)
    ghosts = [new_ghost(WL, 8, "post", rng) for _ in range(4)]
    firsts = set()
    for _ in range(12):
        t = _Recorder()
        res = run_probes(t, [(g, WL.size) for g in ghosts], ks=(2,), modes=("raw",))
        firsts.add(t.batches[0][0])
        sent = sorted((r.sent, gi) for gi, pr in enumerate(res) for r in pr.records)
        assert [s for s, _ in sent] == list(range(4))
    assert len(firsts) > 1
