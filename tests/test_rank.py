"""The word-rank test (issue 10, section 1): exact validity by enumeration against innocent and
adversarial models, power on text the real model knows, the real llama.cpp server's top log-probabilities
over /v1/completions and chat, chat with prefill over llama.cpp's C++ server, the capability refusals, and the
CLI (rank-test, audit --tests rank)."""
from __future__ import annotations

import itertools
import json
import os
import random
from typing import Any, Sequence

import numpy as np
import pytest

from ghostsent import stats
from ghostsent.detection import rank
from ghostsent.errors import CapabilityError, ModelError
from ghostsent.passphrase import Ghost, draw_words, resolve_template
from ghostsent.targets.base import ReplyToken, Target
from ghostsent.wordlists import load_wordlist

from proc import child_env, gs

SMALL = ("apple", "apricot", "banana", "cherry", "date", "fig", "grape")


class TopNModel(Target):
    """An innocent subject model over an API-like interface: its top-N tokens are a fixed function of
    the prompt (here: words of the prompt itself, parts of words, a bare space, other casing), so it may
    echo what it was shown. It never sees the held-out word, which is all validity needs."""

    spec = "test:top-n"
    supports_raw = True
    supports_top_logprobs = True

    def __init__(self, style: str) -> None:
        self.style = style

    def top_next_tokens(self, prompts: Sequence[Any], n: int) -> list[dict[str, float]]:
        out = []
        for p in prompts:
            text = p if isinstance(p, str) else p[-1]["content"]
            seen = text.split()
            h = sum(map(ord, text))
            if self.style == "echo":      # repeats the prompt's words (and a bare space)
                top = {" " + w: -1.0 - i / 10 for i, w in enumerate(reversed(seen[-n:]))} | {" ": -0.5}
            elif self.style == "prefixes":  # word fragments, other casing, no space (a chat reply's start)
                top = {"A": -1.0, " ap": -1.5, "Ch": -2.0 - (h % 3), " b": -3.0, " fig": -0.2 - (h % 5) / 10}
            else:                          # nothing useful
                top = {"\n": -0.1}
            out.append(dict(list(top.items())[:n]))
        return out

    def top_reply_tokens(self, prompts: Sequence[Any], n: int, max_tokens: int) -> list[list[ReplyToken]]:
        """A chat reply that says "Sure!", echoes the prompt's text, then ends (echo), or word pieces
        (prefixes), or nothing at all (none); each step's top-N from top_next_tokens on a prompt that
        grows with the reply (so alternatives differ along it)."""
        out = []
        for p in prompts:
            text = p[-1]["content"]
            toks = {"echo": ["Sure", "!"] + [" " + w for w in text.split("\n")[-1].split()[-4:]] + ["."],
                    "prefixes": ["A", "pp", "le", " fig"], "none": []}[self.style][:max_tokens]
            tops = self.top_next_tokens([text + "".join(toks[:i]) for i in range(len(toks))], n)
            out.append([ReplyToken(t, top) for t, top in zip(toks, tops)])
        return out

    def score(self, *a: Any, **k: Any) -> Any:  # pragma: no cover - not used by the rank test
        raise NotImplementedError

    def generate(self, *a: Any, **k: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def chat(self, *a: Any, **k: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


class LocalModel(Target):
    """An innocent 'local' subject with the whole distribution: scores depend on the context (ties
    included), never on the held-out word."""

    spec = "test:local"
    computes_logprobs_locally = True

    def leading_token_ids(self, texts: Sequence[str]) -> list[int]:
        return [len(t) % 4 for t in texts]          # heavy ties: 4 token ids for 7 words

    def next_token_scores(self, contexts: Sequence[str], token_ids: Sequence[int]) -> np.ndarray:
        return np.array([[-((sum(map(ord, c)) + 3 * t) % 5) for t in token_ids] for c in contexts], float)

    score = generate = chat = TopNModel.score


class WordModel(LocalModel):
    """The innocent local subject, also scoring whole words: " w" is 1 to 3 tokens (the first one shared
    with other words), the remainder's log-probability a function of the context and the tokens (ties,
    and NaN for some), never of the held-out word."""

    spec = "test:local-words"
    supports_word_scores = True

    def word_token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [[len(t) % 4] + [ord(ch) for ch in t[1:1 + len(t) % 3]] for t in texts]

    def rest_logprobs(self, contexts: Sequence[str], rows: Sequence[Sequence[int]]) -> np.ndarray:
        hs = [sum(map(ord, c)) for c in contexts]
        return np.array([0.0 if len(r) < 2 else np.nan if (h + sum(r)) % 11 == 0 else -float((h + sum(r)) % 4)
                         for h, r in zip(hs, rows)])


class TextModel(Target):
    """An innocent text-only subject: greedy replies made from the prompt (its last words echoed, a
    fragment glued to the last word, other casing, punctuation) and list words chosen from the prompt,
    never from the held-out word."""

    spec = "test:text"
    supports_raw = True

    def _reply(self, text: str) -> str:
        seen = text.split()
        h = sum(map(ord, text))
        return [" " + " ".join(seen[-2:]) + " " + SMALL[h % 7],            # echo, then a list word
                "s " + SMALL[h % 5].upper() + ", " + SMALL[h % 3],          # glued fragment, casing
                "Sure! " + " ".join(seen[-3:]) + ": " + SMALL[(h // 7) % 7],  # chat-like echo and colon
                ""][h % 4]

    def generate_many(self, prompts: Sequence[str], **k: Any) -> list[list[str]]:
        return [[self._reply(p)] for p in prompts]

    def chat_many(self, conversations: Sequence[Any], **k: Any) -> list[list[str]]:
        return [[self._reply(c[-1]["content"])] for c in conversations]

    score = generate = chat = TopNModel.score


@pytest.mark.parametrize("model,mode", [(TopNModel("echo"), "completions"), (TopNModel("echo"), "chat"),
                                        (TextModel(), "text"), (TextModel(), "text-prefill"),
                                        (TextModel(), "text-chat"),
                                        (TopNModel("prefixes"), "chat"), (TopNModel("none"), "completions"),
                                        (TopNModel("echo"), "prefill"), (TopNModel("prefixes"), "prefill"),
                                        (TopNModel("none"), "chat"),
                                        (LocalModel(), "local"), (WordModel(), "local")])
@pytest.mark.parametrize("template", ["{words}", "The ghost sentence of this post is {words}."])
def test_size_is_at_most_alpha_by_exact_enumeration(model, mode, template):
    """Every passphrase of 3 words from a 7-word list, each equally likely (the null): the fraction with
    p <= a is the exact size of the test, and must be at most a for every a."""
    ghosts = [Ghost(w, template) for w in itertools.product(SMALL, repeat=3)]
    ps = np.array([r.p_value for r in rank.rank_tests(model, ghosts, SMALL, mode=mode, top_n=5,
                                                      refine=isinstance(model, WordModel))])
    for a in (0.01, 0.05, 0.1, 0.2, 0.5):
        assert np.mean(ps <= a) <= a + 1e-12, (a, np.mean(ps <= a))


@pytest.mark.parametrize("cap", [None, 0, 1, 2])
@pytest.mark.parametrize("template", ["{words}", "Ghost: {words}."])
def test_refined_local_size_is_at_most_alpha_with_and_without_the_cap(cap, template):
    """The refined rule over every 3-word passphrase: exact size <= a, whether the cap is off, or hit at
    some positions (count = candidates), or everywhere; and each position's p is super-uniform."""
    ghosts = [Ghost(w, template) for w in itertools.product(SMALL, repeat=3)]
    res = rank.rank_tests(WordModel(), ghosts, SMALL, cap=cap, refine=True)
    assert all(r.refined and r.cap == cap and len(r.candidates) == len(r.positions) for r in res)
    ps = np.array([r.p_value for r in res])
    for a in (0.01, 0.05, 0.1, 0.2, 0.5):
        assert np.mean(ps <= a) <= a + 1e-12, (a, np.mean(ps <= a))
    pj = np.array([r.p_positions[-1] for r in res])
    for x in sorted(set(pj)):
        assert np.mean(pj <= x) <= x + 1e-12


def test_refined_count_is_the_exact_full_word_count_or_an_upper_bound_past_the_cap():
    """refined_count against brute force (every word's full score computed) on random scores with ties
    and NaNs: equal with the cap off, never below it with any cap, never above the candidates."""
    rng = np.random.default_rng(0)
    for _ in range(400):
        V = int(rng.integers(2, 40))
        lead = np.round(rng.normal(-3, 2, V), 1)
        rest = np.minimum(0, np.round(rng.normal(-1, 2, V), 1))
        multi = rng.random(V) < 0.6
        lead[rng.random(V) < 0.05] = np.nan
        rest[rng.random(V) < 0.05] = np.nan
        rest[~multi] = 0     # a one-token word's full score is its leading token's
        full = lead + np.nan_to_num(rest, nan=0.0)     # another word's NaN remainder: S = lead
        tol = float(rng.choice([0.0, 0.1]))
        for own in range(V):
            own_s = lead[own] + rest[own]
            exact = V if np.isnan(own_s) else int(np.sum(np.isnan(full) | (full >= own_s - tol)))
            args = (lead, own, rest[own], lambda ix, rest=rest: rest[ix], multi)
            assert rank.refined_count(*args, None, tol)[0] == exact
            for cap in (0, 1, 3):
                got, n_cand = rank.refined_count(*args, cap, tol)
                assert exact <= got <= max(n_cand, exact) and n_cand <= V


def test_refined_breaks_leading_token_ties_but_is_not_bounded_by_the_leading_rule():
    """Words sharing a leading token tie under the old rule; full-word scores separate them. And the
    refined count is a different statistic, not a smaller one: a one-token word with a less likely
    leading token than the passphrase word's still beats it when its remainder is unlikely."""
    lead = np.array([-1.0, -1.0, -1.0, -2.0])     # words 0-2 share a leading token; word 3 is one token
    rest = np.array([-0.1, -3.0, -4.0, 0.0])
    multi = np.array([True, True, True, False])
    lead_count = lambda own: int(np.sum(lead >= lead[own]))   # noqa: E731
    assert lead_count(0) == 3 and rank.refined_count(lead, 0, rest[0], lambda ix: rest[ix], multi, None)[0] == 1
    assert lead_count(1) == 3 and rank.refined_count(lead, 1, rest[1], lambda ix: rest[ix], multi, None)[0] == 3


def test_per_position_p_is_super_uniform_given_the_past():
    """For each fixed past, p_j over the 7 equally likely words: P(p_j <= x) <= x at every x."""
    model = TopNModel("prefixes")
    for past in itertools.product(SMALL, repeat=1):
        ghosts = [Ghost((*past, w), "{words}") for w in SMALL]
        pj = np.array([r.p_positions[-1] for r in rank.rank_tests(model, ghosts, SMALL, mode="chat")])
        for x in sorted(set(pj)):
            assert np.mean(pj <= x) <= x + 1e-12


def test_matching_rules():
    s = rank.match_scores({" ap": -1.0, "Ch": -2.0, " ": -0.1, " apple": -0.5, " bananas": -0.3}, SMALL)
    got = dict(zip(SMALL, s))
    assert got["apple"] == -0.5 and got["apricot"] == -1.0          # best matching token, by prefix
    assert got["cherry"] == -2.0                                    # no space, other casing (chat start)
    assert got["banana"] == -np.inf                                 # " bananas" is not a prefix of " banana"
    assert got["date"] == -np.inf                                   # the bare space matches nothing
    assert rank.count_at_or_above(s, SMALL.index("apple")) == 1
    assert rank.count_at_or_above(s, SMALL.index("apricot")) == 2   # better words count
    assert rank.count_at_or_above(s, SMALL.index("date")) == 7      # unmatched: tied at the bottom


def test_chat_alignment_rule():
    """The scored reply token: right after the first reproduction of the shown text's last 1-3 words,
    when the next token starts a new word; else the first token."""
    al = rank.aligned_position
    assert al(["Sure", "!", " Here", ":", " date", " fig", " grape", "."], "apple date fig") == 6
    assert al(["date", " Fig", ",", " cherry"], "apple date fig") == 2          # casing/punctuation folded
    assert al(["Fig", "gy", " tree", "."], "apple fig") == 0                   # "figgy" is not "fig"
    assert al(["fig"], "apple fig") == 0                                       # nothing after it
    assert al(["I", " cannot", "."], "apple fig") == 0 and al([], "fig") == 0
    assert al([" a", " fig", " x", " b", " fig", " y"], "b fig") == 5          # the longest gram first


def test_chat_records_reply_and_place_and_uses_the_chosen_combiner():
    g = Ghost(("apple", "date", "fig"), "{words}")
    [r] = rank.rank_tests(TopNModel("echo"), [g], SMALL, mode="chat", top_n=5)
    assert r.reply_positions == [3, 4] and r.replies[0] == "Sure! apple." and len(r.prompts) == 2
    assert r.combiner == rank.COMBINERS["chat"] == "truncated-product(tau=0.05)" and "replies" in r.to_dict()
    [c] = rank.rank_tests(TopNModel("echo"), [g], SMALL, mode="completions", top_n=5)
    assert c.p_value == stats.truncated_product(c.p_positions, rank.TPM_TAU) and c.replies is None
    [loc] = rank.rank_tests(LocalModel(), [g], SMALL, mode="local")
    assert loc.combiner == "fisher" and loc.p_value == stats.fisher_combine(loc.p_positions)


def test_positions_are_fixed_by_the_template():
    assert rank.positions(Ghost(("a", "b", "c"), "{words}")) == [1, 2]
    assert rank.positions(Ghost(("a", "b", "c"), "Ghost: {words}.")) == [0, 1, 2]
    assert rank.context(Ghost(("a", "b", "c"), "Ghost: {words}."), 2) == "Ghost: a b"


# --- the real embedded model -------------------------------------------------------------------------------

FAMOUS = tuple("to be or not to be that is the question".split())


def _list_with(words: Sequence[str]) -> tuple[str, ...]:
    base = list(load_wordlist().words)
    return tuple(base + [w for w in dict.fromkeys(words) if w not in base])


def test_local_model_detects_text_it_knows_and_not_fresh_passphrases(default_target):
    """Power: the model knows Hamlet's line (p far below anything nulls could give); validity in
    practice: fresh passphrases get unremarkable p-values."""
    words = _list_with(FAMOUS)
    [known] = rank.rank_tests(default_target, [Ghost(FAMOUS, "{words}")], words)
    assert known.mode == "local" and known.p_value < 1e-9, known
    rng = random.Random(3)
    wl = load_wordlist()
    fresh = [Ghost(draw_words(wl, 6, rng), resolve_template("post")) for _ in range(4)]
    assert min(r.p_value for r in rank.rank_tests(default_target, fresh, wl.words)) > 1e-3


def test_refined_agrees_with_brute_force_scoring_of_every_word(default_target):
    """The refined count with the cap off equals the count from scoring every word of a 400-word list
    (with "be") in full with HFTarget.score (joint tokenisation, its own batches) on a real small case."""
    words = list(dict.fromkeys(["to", "be"] + list(load_wordlist().words[:398])))
    g = Ghost(("to", "be"), "{words}")
    [r] = rank.rank_tests(default_target, [g], words, cap=None, refine=True)
    assert r.refined and r.cap is None and r.positions == [1]
    full = np.array([float(np.sum(s.logprobs)) for s in default_target.score("to", [" " + w for w in words])])
    own = full[words.index("be")]
    assert r.at_or_above[0] == int(np.sum(full >= own - default_target.word_score_tolerance)), r
    assert r.at_or_above[0] <= r.candidates[0] < len(words)


def test_refined_p_values_are_super_uniform_on_never_inserted_ids(default_target):
    """Validity on the real model: the per-position p of 20 fresh 4-word passphrases (80 positions)
    stays at or above the uniform, within 3 binomial standard errors (fails if the rule under-counts)."""
    wl = load_wordlist()
    rng = random.Random(5)
    ghosts = [Ghost(draw_words(wl, 4, rng), resolve_template("post")) for _ in range(20)]
    ps = np.array([p for r in rank.rank_tests(default_target, ghosts, wl.words, refine=True) for p in r.p_positions])
    assert len(ps) == 80
    for x in (0.05, 0.1, 0.25, 0.5):
        assert np.mean(ps <= x) <= x + 3 * np.sqrt(x * (1 - x) / len(ps)), (x, np.mean(ps <= x))


def test_refined_beats_the_leading_token_rule_on_known_text(default_target):
    words = _list_with(FAMOUS)
    [lead] = rank.rank_tests(default_target, [Ghost(FAMOUS, "{words}")], words, refine=False)
    [ref] = rank.rank_tests(default_target, [Ghost(FAMOUS, "{words}")], words, refine=True)
    assert not lead.refined and ref.refined and ref.cap == rank.REFINE_CAP
    assert ref.p_value < lead.p_value / 10 and sum(ref.at_or_above) < sum(lead.at_or_above), (lead, ref)


# --- the real llama.cpp server -------------------------------------------------------------------------

def _api_target(server, key_env: str):
    """An OpenAI-compatible target on a loopback ServerProcess, its key in `key_env`."""
    from ghostsent.targets import load_target

    os.environ[key_env] = server.key
    return load_target("openai:smollm2", base_url=server.base_url, api_key_env=key_env)


@pytest.fixture(scope="module")
def upstream_target(upstream_llama_server):
    t = _api_target(upstream_llama_server, "GHOSTSENT_RANK_TEST_KEY")
    yield t
    t.close()


def test_llama_cpp_server_gives_top_logprobs_over_completions_and_chat(upstream_target):
    [comp] = upstream_target.top_next_tokens(["The capital of France is"], 20)
    assert len(comp) >= 10 and max(comp, key=comp.get) == " Paris"
    [chat] = upstream_target.top_next_tokens([[{"role": "user", "content": "The capital of France is"}]], 5)
    assert 1 <= len(chat) <= 5 and all(v <= 0 for v in chat.values())


def test_rank_test_over_llama_cpp_completions_detects_known_text(upstream_target):
    words = _list_with(FAMOUS)
    [r] = rank.rank_tests(upstream_target, [Ghost(FAMOUS, "{words}")], words, mode="completions", top_n=20)
    assert r.mode == "completions" and r.top_n == 20 and r.p_value < 1e-5, r
    assert all(isinstance(p, str) for p in r.prompts) and len(r.prompts) == len(FAMOUS) - 1


def test_a_server_without_top_logprobs_is_refused(llama_server):
    """The loopback reference server returns no top alternatives on generation: one-line refusal."""
    from ghostsent.targets import load_target
    from ghostsent.targets.capability import require_top_logprobs

    t = load_target("openai:smollm2", base_url=llama_server, api_key_env="GHOSTSENT_TEST_API_KEY")
    for mode in ("completions", "chat"):
        with pytest.raises(CapabilityError) as e:
            require_top_logprobs(t, mode, 20)
        assert "top log-probabilities" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelError) as e:   # the chat rank test's own request, refused the same way
        t.top_reply_tokens([rank.chat_prompt("a b")], 20, rank.CHAT_REPLY_TOKENS)
    assert "top log-probabilities" in str(e.value) and "\n" not in str(e.value)


# --- the CLI ------------------------------------------------------------------------------------------------

def test_rank_test_cli_is_counted_stored_and_disclosed(tmp_path, upstream_llama_server):
    db = tmp_path / "l.db"
    env = child_env(GHOSTSENT_RANK_TEST_KEY=upstream_llama_server.key)
    made = gs("new", "--owner", "o", "--template", "post", "--words", "6", "--json", "--ledger", db, env=env)
    assert made.returncode == 0, made.stderr
    new = json.loads(made.stdout)
    ident = new["id"]
    base = ["-m", "openai:smollm2", "--base-url", upstream_llama_server.base_url,
            "--api-key-env", "GHOSTSENT_RANK_TEST_KEY", "--ledger", str(db), "--report", str(tmp_path / "r")]
    out = gs("rank-test", ident, "--controls", "2", "--json", *base, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    member = [s for s in d["subjects"] if s["role"] == "member"][0]
    assert member["rank"]["mode"] == "chat" and member["rank"]["top_n"] == 20
    assert member["test_number"] == 1 and 0 < member["p_value"] <= 1
    assert d["controls"]["rank"]["n"] == 2
    show = json.loads(gs("show", ident, "--json", "--ledger", db, env=env).stdout)
    [disc] = show["history"]["disclosures"]
    assert disc["via"] == "rank" and disc["words"] == list(range(5)) and "127.0.0.1" in disc["endpoint"]
    out2 = gs("rank-test", ident, "--rank-mode", "completions", "--controls", "0", "--json", *base, env=env,
              timeout=300)
    assert out2.returncode == 0, out2.stderr
    m2 = [s for s in json.loads(out2.stdout)["subjects"] if s["role"] == "member"][0]
    assert m2["test_number"] == 2 and m2["rank"]["mode"] == "completions"


def test_local_top_n_agrees_with_the_llama_cpp_server(default_target, upstream_target):
    """The in-process top-N view of the same model (what the study uses for the API modes) names the
    same most likely tokens as the real server (Q4 weights dequantised vs llama.cpp: close, not equal)."""
    prompt = "The capital of France is"
    [local] = default_target.top_next_tokens([prompt], 10)
    [server] = upstream_target.top_next_tokens([prompt], 10)
    assert max(local, key=local.get) == max(server, key=server.get) == " Paris"
    assert len(set(local) & set(server)) >= 6
    assert abs(local[" Paris"] - server[" Paris"]) < 0.3


# --- the echo-aligned chat mode on the real model and server -------------------------------------------------

def test_chat_rank_over_llama_cpp_server_detects_known_text(upstream_target):
    """The real server's chat replies with top-20 per token: the aligned place predicts Hamlet's next word."""
    words = _list_with(FAMOUS)
    [r] = rank.rank_tests(upstream_target, [Ghost(FAMOUS, "{words}")], words, mode="chat", top_n=20)
    assert r.mode == "chat" and r.combiner.startswith("truncated-product"), r
    assert sum(k > 0 for k in r.reply_positions) >= len(r.positions) // 2, r.replies
    assert r.p_value < 1e-4, r


def test_local_chat_replies_agree_with_the_llama_cpp_server(default_target, upstream_target):
    """HFTarget.top_reply_tokens (what the study uses for rank_chat20) against the real server on the same
    model: the same greedy reply start, the same aligned place, the same best alternatives there."""
    shown = "to be or not to be that"
    prompt = [rank.chat_prompt(shown)]
    [local] = default_target.top_reply_tokens(prompt, 10, rank.CHAT_REPLY_TOKENS)
    [server] = upstream_target.top_reply_tokens(prompt, 10, rank.CHAT_REPLY_TOKENS)
    assert [t.token for t in local[:6]] == [t.token for t in server[:6]]
    k = rank.aligned_position([t.token for t in local], shown)
    assert k > 0 and k == rank.aligned_position([t.token for t in server], shown)
    a, b = local[k].top, server[k].top
    assert max(a, key=a.get) == max(b, key=b.get) and len(set(a) & set(b)) >= 6


def test_real_model_chat_rank_gives_fresh_passphrases_unremarkable_p(default_target):
    """An innocent real model (the embedded SmolLM2 never saw these ids) through the echo-aligned chat rule
    with the truncated product: nothing near detection."""
    rng = random.Random(5)
    wl = load_wordlist()
    fresh = [Ghost(draw_words(wl, 6, rng), resolve_template("post")) for _ in range(3)]
    rs = rank.rank_tests(default_target, fresh, wl.words, mode="chat", top_n=20)
    assert all(len(r.replies) == len(r.positions) == 6 for r in rs)
    assert min(r.p_value for r in rs) > 1e-3, [(r.p_value, r.at_or_above) for r in rs]


# --- chat with prefill: the shown text is the start of the assistant's reply ---------------------------------

@pytest.fixture(scope="module")
def prefill_target(cpp_llama_server):
    t = _api_target(cpp_llama_server, "GHOSTSENT_PREFILL_TEST_KEY")
    yield t
    t.close()


def test_local_prefill_continues_the_assistant_message(default_target):
    """The in-process chat template (what the study uses for rank_prefill20) leaves the final assistant
    message open: the prompt ends with the shown text, not with an end-of-turn, and a half word is finished."""
    ids = default_target._chat_ids(rank.prefill_prompt("to be or not to be that"))
    text = default_target.tokenizer.decode(ids)
    assert text.endswith("assistant\nto be or not to be that"), text[-80:]
    assert text.count(rank.PREFILL_INSTRUCTION) == 1 and "to be or not" not in text.split("assistant")[1]
    [top] = default_target.top_next_tokens([rank.prefill_prompt("Monday, Tuesday, Wednesday, Thurs")], 5)
    assert max(top, key=top.get).startswith("day"), top


def test_prefill_check_passes_servers_that_continue_and_refuses_one_that_starts_a_new_reply(
        default_target, prefill_target, upstream_target):
    """llama.cpp's C++ server and the local model continue the message; llama-cpp-python's server ignores
    continue_final_message and starts a new reply: refused in one line before any test is counted."""
    from ghostsent.targets.capability import require_top_logprobs

    require_top_logprobs(default_target, "prefill", 20)
    require_top_logprobs(prefill_target, "prefill", 20)
    with pytest.raises(CapabilityError) as e:
        require_top_logprobs(upstream_target, "prefill", 20)
    assert "does not continue a final assistant message" in str(e.value) and "\n" not in str(e.value)


def test_local_prefill_top_n_agrees_with_the_llama_cpp_cpp_server(default_target, prefill_target):
    """HFTarget.top_next_tokens on a prefill conversation against llama-server on the same model: the same
    best token and most of the top 10 (Q4 weights dequantised vs llama.cpp: close, not equal)."""
    for shown in ("to be or not to be, that is the", "The capital of France is"):
        [local] = default_target.top_next_tokens([rank.prefill_prompt(shown)], 10)
        [server] = prefill_target.top_next_tokens([rank.prefill_prompt(shown)], 10)
        assert max(local, key=local.get) == max(server, key=server.get), (local, server)
        assert len(set(local) & set(server)) >= 6, (local, server)


def test_completions_rank_over_llama_server_reads_its_chat_form_logprobs(prefill_target):
    """llama.cpp's C++ server answers /v1/completions with logprobs in the chat form (content[i].top_logprobs),
    not OpenAI's legacy top_logprobs dicts: both are read."""
    [comp] = prefill_target.top_next_tokens(["The capital of France is"], 20)
    assert len(comp) >= 10 and max(comp, key=comp.get) == " Paris"
    words = _list_with(FAMOUS)
    [r] = rank.rank_tests(prefill_target, [Ghost(FAMOUS, "{words}")], words, mode="completions", top_n=20)
    assert r.p_value < 1e-5, r


def test_prefill_rank_over_llama_cpp_server_detects_known_text(prefill_target):
    words = _list_with(FAMOUS)
    [r] = rank.rank_tests(prefill_target, [Ghost(FAMOUS, "{words}")], words, mode="prefill", top_n=20)
    assert r.mode == "prefill" and r.combiner.startswith("truncated-product") and r.p_value < 1e-5, r
    assert all(p[-1] == {"role": "assistant", "content": rank.context(Ghost(FAMOUS, "{words}"), j)}
               for p, j in zip(r.prompts, r.positions))


def test_real_model_prefill_rank_gives_fresh_passphrases_unremarkable_p(default_target):
    """The innocent embedded model through the prefill rule: nothing near detection."""
    rng = random.Random(6)
    wl = load_wordlist()
    fresh = [Ghost(draw_words(wl, 6, rng), resolve_template("post")) for _ in range(3)]
    rs = rank.rank_tests(default_target, fresh, wl.words, mode="prefill", top_n=20)
    assert min(r.p_value for r in rs) > 1e-3, [(r.p_value, r.at_or_above) for r in rs]


def test_rank_test_cli_prefill_refused_uncounted_then_counted_on_llama_server(tmp_path, upstream_llama_server,
                                                                             cpp_llama_server):
    db = tmp_path / "l.db"
    env = child_env(GHOSTSENT_RANK_TEST_KEY=upstream_llama_server.key, GHOSTSENT_PREFILL_TEST_KEY=cpp_llama_server.key)
    made = gs("new", "--owner", "o", "--words", "6", "--json", "--ledger", db, env=env)
    ident = json.loads(made.stdout)["id"]
    common = ["-m", "openai:smollm2", "--rank-mode", "prefill", "--controls", "1", "--json", "--ledger", str(db)]
    refused = gs("rank-test", ident, "--base-url", upstream_llama_server.base_url, "--api-key-env",
                 "GHOSTSENT_RANK_TEST_KEY", *common, env=env, timeout=300)
    err = refused.stderr.decode()
    assert refused.returncode == 5 and "does not continue a final assistant message" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    ok = gs("rank-test", ident, "--base-url", cpp_llama_server.base_url, "--api-key-env",
            "GHOSTSENT_PREFILL_TEST_KEY", *common, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    member = [x for x in json.loads(ok.stdout)["subjects"] if x["role"] == "member"][0]
    assert member["rank"]["mode"] == "prefill" and member["test_number"] == 1 and 0 < member["p_value"] <= 1


# --- text only: the greedy reply's next word ------------------------------------------------------------------

def test_next_word_place_rules():
    assert rank.next_word_place(["fig", "date"], " fig date", "an apple", rank.TEXT) == 0
    assert rank.next_word_place(["s", "fig"], "s fig", "an apple", rank.TEXT) == 1        # glued: "apples"
    assert rank.next_word_place(["fig"], ", fig", "an apple", rank.TEXT_PREFILL) == 0
    shown = "one two three"
    assert rank.next_word_place(["sure", "two", "three", "fig"], "Sure! two three fig", shown, rank.TEXT_CHAT) == 3
    assert rank.next_word_place(["fig", "date"], "fig date", shown, rank.TEXT_CHAT) == 0


def test_text_modes_record_replies_places_and_p_is_one_over_v_per_hit():
    class Knows(TextModel):
        def _reply(self, text: str) -> str:   # a model that knows the ghost "apple fig date"
            nxt = {"apple": "fig", "fig": "date"}.get(text.split()[-1], "cherry")
            return " " + nxt + " and more"

    g = Ghost(("apple", "fig", "date"), "{words}")
    for mode in rank.TEXT_MODES[:2]:
        [r] = rank.rank_tests(Knows(), [g], SMALL, mode=mode)
        assert r.p_positions == [1 / 7, 1 / 7] and r.at_or_above == [1, 1] and r.reply_positions == [0, 0]
        assert r.replies == [" fig and more", " date and more"] and r.combiner == "binomial-hits"
        assert r.p_value == pytest.approx((1 / 7) ** 2)     # P(Binomial(2, 1/7) >= 2)


def test_text_and_chat_modes_count_refusals_apart():
    class Declines(TextModel):
        def _reply(self, text: str) -> str:
            return "I'm sorry, I can't reproduce that text." if len(text) % 2 else " fig"

    g = Ghost(("apple", "fig", "date", "cherry"), "{words}")
    for mode in rank.TEXT_MODES:
        [r] = rank.rank_tests(Declines(), [g], SMALL, mode=mode)
        assert r.refusals == sum("sorry" in x for x in r.replies) and 0 < r.refusals < len(r.positions), r.replies
        assert r.to_dict()["refusals"] == r.refusals
    [r] = rank.rank_tests(TopNModel("echo"), [g], SMALL, mode="chat")
    assert r.refusals == 0


def test_local_text_rank_detects_known_text_and_not_fresh_passphrases(default_target):
    """The embedded model continues Hamlet's line word by word (raw text and prefill, greedy, no
    log-probabilities read), and fresh passphrases give nothing near detection."""
    words = _list_with(FAMOUS)
    [r] = rank.rank_tests(default_target, [Ghost(FAMOUS, "{words}")], words, mode=rank.TEXT)
    assert r.p_value < 1e-5 and sum(c == 1 for c in r.at_or_above) >= 4, r.replies
    for mode in (rank.TEXT_PREFILL, rank.TEXT_CHAT):   # this small model often repeats the text instead
        [r] = rank.rank_tests(default_target, [Ghost(FAMOUS, "{words}")], words, mode=mode)
        assert r.p_value < 1e-3 and sum(c == 1 for c in r.at_or_above) >= 2, (mode, r.replies)
    rng = random.Random(7)
    wl = load_wordlist()
    fresh = [Ghost(draw_words(wl, 6, rng), resolve_template("post")) for _ in range(3)]
    for mode in rank.TEXT_MODES:
        rs = rank.rank_tests(default_target, fresh, wl.words, mode=mode)
        assert min(r.p_value for r in rs) > 1e-3, (mode, [(r.p_value, r.replies) for r in rs])


def test_text_prefill_over_llama_cpp_server_detects_known_text_and_python_server_is_refused(
        prefill_target, upstream_target):
    from ghostsent.targets.capability import require_rank_capability

    require_rank_capability(prefill_target, rank.TEXT_PREFILL, 20)
    words = _list_with(FAMOUS)
    [r] = rank.rank_tests(prefill_target, [Ghost(FAMOUS, "{words}")], words, mode=rank.TEXT_PREFILL)
    assert r.p_value < 1e-3 and sum(c == 1 for c in r.at_or_above) >= 2, r.replies
    with pytest.raises(CapabilityError) as e:
        require_rank_capability(upstream_target, rank.TEXT_PREFILL, 20)
    assert "does not continue a final assistant message" in str(e.value) and "\n" not in str(e.value)
