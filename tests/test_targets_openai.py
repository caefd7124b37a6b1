"""The API target against real loopback servers (llama.cpp on the embedded GGUF), and the breaking proxy."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest

import servers
from ghostsent.errors import CapabilityError, ModelError
from ghostsent.targets import load_target
from ghostsent.targets.capability import NO_PROMPT_LOGPROBS, SHIFTED, check_logprob_capability, require_logprobs
from ghostsent.targets.openai import OpenAITarget

pytestmark = pytest.mark.server

CONTEXT = "The ghost sentence of this post is"
CANDIDATES = [" apple banana cherry orange", " quietly negotiate with seventeen stubborn lighthouses", " zebra"]


@pytest.fixture()
def api(llama_server):
    return load_target("openai:smollm2", base_url=llama_server, api_key_env="GHOSTSENT_TEST_API_KEY")


@pytest.fixture()
def proxy_factory(reference_server):
    made: list[servers.LogprobProxy] = []

    def make(mode: str, **kw) -> servers.LogprobProxy:
        p = servers.LogprobProxy(reference_server.base_url, mode, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


# ------------------------------------------------------------------------------------------ happy path
def test_reference_server_passes_the_capability_check(api):
    rep = check_logprob_capability(api, refresh=True)
    assert rep.ok, rep.problems
    assert require_logprobs(api).ok


@pytest.mark.slow
def test_api_scores_agree_with_the_local_model(api, default_target):
    """Same GGUF through llama.cpp and through transformers' dequantisation: same tokens, close values."""
    a = api.score(CONTEXT, CANDIDATES)
    h = default_target.score(CONTEXT, CANDIDATES)
    xs, ys = [], []
    for x, y in zip(a, h):
        assert x.tokens == y.tokens
        xs.extend(x.logprobs)
        ys.extend(y.logprobs)
    xs, ys = np.array(xs), np.array(ys)
    assert np.corrcoef(xs, ys)[0, 1] > 0.98
    assert np.mean(np.abs(xs - ys)) < 0.3
    # and the ranking of candidates by mean NLL is the same
    assert np.argsort([s.nll for s in a]).tolist() == np.argsort([s.nll for s in h]).tolist()


def test_concurrent_scoring_keeps_order(api):
    many = [f" word{i} number {i}" for i in range(8)]
    batched = api.score(CONTEXT, many)
    one = [api.score(CONTEXT, [c])[0] for c in many[:3]]
    for x, y in zip(batched, one):
        assert x.tokens == y.tokens and np.allclose(x.logprobs, y.logprobs, atol=1e-5)
    assert ["".join(s.tokens) for s in batched] == many


def test_chat_and_generate(api):
    reply = api.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=24)
    assert len(reply) == 1 and reply[0].strip()
    g = api.generate("1, 2, 3, 4, 5,", max_tokens=6)
    assert g[0].startswith(" 6")
    assert len(api.generate("Once upon a time", max_tokens=4, temperature=0.9, n=2, seed=1)) == 2


# ------------------------------------------------------------------------------------------ broken servers
def test_upstream_llama_cpp_server_is_caught_shifting_by_one(upstream_llama_server, api_key_env):
    """llama-cpp-python's echo log-probabilities read the logits row of the *next* position (#1983)."""
    sp = upstream_llama_server
    t = OpenAITarget("smollm2", sp.base_url, api_key_env=api_key_env(sp.key))
    rep = check_logprob_capability(t)
    assert not rep.ok and SHIFTED in rep.problems
    assert rep.details["top_alternative_votes"]["next"] > 50


def test_proxy_that_strips_prompt_logprobs_is_caught(proxy_factory, reference_server, api_key_env):
    p = proxy_factory("strip")
    t = OpenAITarget("smollm2", p.base_url, api_key_env=api_key_env(reference_server.key))
    rep = check_logprob_capability(t)
    assert rep.problems == [NO_PROMPT_LOGPROBS]
    with pytest.raises(CapabilityError, match="only generated tokens"):
        require_logprobs(t)
    with pytest.raises(ModelError, match="no prompt log-probabilities"):
        t.score(CONTEXT, [" zebra"])


def test_proxy_that_shifts_by_one_is_caught(proxy_factory, reference_server, api_key_env):
    p = proxy_factory("shift")
    t = OpenAITarget("smollm2", p.base_url, api_key_env=api_key_env(reference_server.key))
    rep = check_logprob_capability(t)
    assert SHIFTED in rep.problems
    assert any("prompt tokens have no log-probability" in x for x in rep.problems)  # the 2nd token lost its value
    with pytest.raises(CapabilityError, match="shifted by one token"):
        require_logprobs(t)


# ------------------------------------------------------------------------------------------ HTTP behaviour
def test_429_is_retried_honouring_retry_after(proxy_factory, reference_server, api_key_env):
    p = proxy_factory("429", fail_first=2, retry_after="1")
    t = OpenAITarget("smollm2", p.base_url, api_key_env=api_key_env(reference_server.key), max_retries=3)
    t0 = time.monotonic()
    assert t.generate("Hello", max_tokens=2)[0] is not None
    assert p.requests == 3 and time.monotonic() - t0 >= 2.0


def test_429_past_the_retry_limit_names_status_and_message(proxy_factory, reference_server, api_key_env):
    p = proxy_factory("429", fail_first=10)
    t = OpenAITarget("smollm2", p.base_url, api_key_env=api_key_env(reference_server.key), max_retries=1)
    with pytest.raises(ModelError, match=r"HTTP 429 .*rate limited, slow down.*2 attempts"):
        t.generate("Hello", max_tokens=2)
    assert p.requests == 2


def test_wrong_key_is_an_immediate_401_error(reference_server, api_key_env):
    t = OpenAITarget("smollm2", reference_server.base_url, api_key_env=api_key_env("not-the-key"))
    with pytest.raises(ModelError, match=r"HTTP 401.*invalid API key.*GHOSTSENT_TEST_API_KEY"):
        t.generate("Hello", max_tokens=2)


def test_unreachable_server_is_retried_then_reported(api_key_env):
    t = OpenAITarget("m", f"http://127.0.0.1:{servers.free_port()}/v1", api_key_env=api_key_env("k" * 20),
                     max_retries=2, backoff=0.01, timeout=2)
    with pytest.raises(ModelError, match=r"cannot reach http://127\.0\.0\.1:\d+/v1/completions.*3 attempts"):
        t.generate("x")


def test_api_key_never_leaks(proxy_factory, reference_server, api_key_env, caplog):
    """Not in describe(), repr, logs, or errors, even when the server quotes it back."""
    key = reference_server.key
    p = proxy_factory("leak", fail_first=10)
    t = OpenAITarget("smollm2", p.base_url, api_key_env=api_key_env(key), max_retries=2, backoff=0.01)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ModelError) as e:
        t.generate("Hello", max_tokens=2)
    assert "upstream hiccup for Bearer ***" in str(e.value)
    assert caplog.records and "retry" in caplog.text
    for text in (str(e.value), caplog.text, repr(t), str(t.describe())):
        assert key not in text


def test_requests_reuse_one_connection(proxy_factory, reference_server, api_key_env):
    p = proxy_factory("pass")
    t = OpenAITarget("smollm2", p.base_url, api_key_env=api_key_env(reference_server.key), concurrency=1)
    for _ in range(4):
        t.generate("Hello", max_tokens=1)
    assert p.requests == 4 and len(set(p.peers)) == 1  # one TCP connection, kept alive


def test_scoring_and_generation_batch_prompts_where_the_server_takes_lists(proxy_factory, reference_server,
                                                                          api_key_env):
    p = proxy_factory("pass")
    t = OpenAITarget("smollm2", p.base_url, api_key_env=api_key_env(reference_server.key), batch_size=8)
    one = OpenAITarget("smollm2", reference_server.base_url, api_key_env=api_key_env(reference_server.key),
                       batch_size=1)
    many = [f" word{i} number {i}" for i in range(20)]
    batched = t.score(CONTEXT, many)
    assert p.requests == 3 and p.prompts_seen == 20  # 8 + 8 + 4 prompts in three requests
    for x, y in zip(batched, one.score(CONTEXT, many)):
        assert x.tokens == y.tokens and np.allclose(x.logprobs, y.logprobs, atol=1e-5)
    prompts = ["1, 2, 3, 4,", "Monday, Tuesday,", "A, B, C,"]
    assert t.generate_many(prompts, max_tokens=3) == one.generate_many(prompts, max_tokens=3)
    assert p.requests == 4


def test_a_server_refusing_lists_gets_one_prompt_per_request(proxy_factory, reference_server, api_key_env):
    """llama.cpp's own server takes one prompt (a list of two fails with a 500): the first refusal is not
    retried, and the target sends single prompts from then on."""
    p = proxy_factory("single")
    t = OpenAITarget("smollm2", p.base_url, api_key_env=api_key_env(reference_server.key), batch_size=8,
                     max_retries=3, backoff=5)
    many = [f" word{i} number {i}" for i in range(5)]
    t0 = time.monotonic()
    scored = t.score(CONTEXT, many)
    assert time.monotonic() - t0 < 5  # no backoff spent on the refusal
    assert ["".join(s.tokens) for s in scored] == many
    assert p.requests == 1 + 5 and p.prompts_seen == 5
    assert len(t.generate_many(["1, 2,", "3, 4,"], max_tokens=2)) == 2 and p.requests == 8
    assert t.describe()["batch_size"] == 8


# ------------------------------------------------------------------------------------------ library path
def test_library_refuses_a_shifting_server_before_scoring(proxy_factory, reference_server, api_key_env):
    """The capability check lives where scores are produced: ppl_test and run_detection refuse shifted
    echo log-probabilities for a library user exactly as the CLI does (issue 7, defect 15)."""
    import random

    from ghostsent.detection.engine import run_detection
    from ghostsent.detection.results import DetectionSettings
    from ghostsent.detection.subjects import Subject
    from ghostsent.passphrase import new_ghost
    from ghostsent.detection.perplexity import ppl_test
    from ghostsent.wordlists import load_wordlist

    wl = load_wordlist("en")
    ghost = new_ghost(wl, 6, "post", random.Random(0))
    p = proxy_factory("shift")
    t = OpenAITarget("smollm2", p.base_url, api_key_env=api_key_env(reference_server.key))
    with pytest.raises(CapabilityError, match="shifted by one token"):
        ppl_test(t, ghost, wl, n_nulls=30)
    with pytest.raises(CapabilityError, match="shifted by one token"):
        run_detection(t, [Subject("g", "member", ghost, wl)], DetectionSettings(tests=("ppl",), n_nulls=30, controls=0))
    assert p.requests <= 4  # only the capability probes (cached per target): no candidate was scored
