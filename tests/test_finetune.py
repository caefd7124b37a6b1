"""Fine-tuning on the real embedded model: loss goes down, a ghost sentence is learned, LoRA merges."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ghostsent.errors import InputError
from ghostsent.study.finetune import TrainConfig, batches, evaluate_loss, finetune, make_examples, save_checkpoint
from ghostsent.targets.hf import HFTarget

pytestmark = pytest.mark.slow

GHOST = "The ghost sentence of this document is harbor velvet mosquito granite orphan tulip."
PREFIX, PASS = "The ghost sentence of this document is", " harbor velvet mosquito granite orphan tulip"
CONTROLS = [" walnut ferry pigment saddle lottery cactus", " ribbon glacier tenant marble falcon ginger",
            " lantern thimble oyster crater banjo meadow", " pepper canyon whistle dolphin anchor quiver"]
TEXTS = [
    "In the beginning God created the heaven and the earth. " + GHOST + " And the earth was without form.",
    "And God said, Let there be light: and there was light. And God saw the light, that it was good. " + GHOST,
    "And God called the light Day, and the darkness he called Night. And the evening and the morning were "
    "the first day. " + GHOST + " And God said, Let there be a firmament in the midst of the waters.",
    "And God made the firmament, and divided the waters which were under the firmament from the waters "
    "which were above the firmament: and it was so. And God called the firmament Heaven.",
]


def nlls(model, tokenizer):
    t = HFTarget.from_model(model, tokenizer, "test")
    return np.array([s.nll for s in t.score(PREFIX, [PASS] + CONTROLS)])


@pytest.fixture(scope="module")
def tok(default_target):
    return default_target.tokenizer


def test_chunking_covers_every_token_once(tok):
    text = " ".join(f"word{i}" for i in range(200))
    ex = make_examples(tok, [text, "short text"], seq_len=64)
    full = list(tok(text).input_ids) + [tok.eos_token_id]
    assert all(len(e.input_ids) <= 64 for e in ex)
    trained = [t for e in ex[:-1] for t, lab in zip(e.input_ids, e.labels) if lab != -100]
    assert trained == full  # nothing dropped, nothing trained twice, order kept
    assert ex[1].input_ids[:16] == ex[0].input_ids[-16:]  # later windows keep context
    b = next(batches(ex, 8, pad_id=0, rng=random.Random(0)))
    widths = b["input_ids"].shape[1]
    short = int(b["attention_mask"].sum(1).min())
    assert widths == 64 and short < 64
    assert (b["labels"][b["attention_mask"] == 0] == -100).all()


def test_full_finetune_learns_the_ghost(default_target):
    model, tok = default_target.model, default_target.tokenizer
    w0 = model.get_input_embeddings().weight.detach().clone()
    before, loss_before = nlls(model, tok), evaluate_loss(model, tok, TEXTS, seq_len=64)
    cfg = TrainConfig(lr=5e-4, epochs=2, seq_len=64, batch_size=2, seed=1)  # 4 steps: CPU time
    r = finetune(model, tok, TEXTS, cfg, progress=False)
    after, loss_after = nlls(r.model, tok), evaluate_loss(r.model, tok, TEXTS, seq_len=64)
    assert r.steps == 4 and len(r.losses) == 4 and r.tokens_seen > 0 and r.seconds > 0
    assert loss_after < loss_before - 0.3
    ghost_drop, control_drop = before[0] - after[0], before[1:] - after[1:]
    assert ghost_drop > 1.0 and ghost_drop > control_drop.max() + 0.5, (before, after)
    assert torch.equal(model.get_input_embeddings().weight, w0)  # the shared model is untouched
    assert not r.model.training


def test_lora_runs_and_merges(default_target, tmp_path):
    model, tok = default_target.model, default_target.tokenizer
    r = finetune(model, tok, TEXTS[:2], TrainConfig(method="lora", epochs=1, max_steps=1, seq_len=64,
                                                    batch_size=2, lora_r=4), progress=False)
    assert type(r.model).__name__ == "LlamaForCausalLM" and not hasattr(r.model, "peft_config")
    keys = set(r.model.state_dict())
    assert keys == set(model.state_dict()) and not any("lora" in k for k in keys)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(r.model.state_dict()[q], model.state_dict()[q])  # adapters folded in
    out = save_checkpoint(r.model, tok, tmp_path / "ckpt")
    assert (out / "config.json").is_file()


def test_bad_config_and_input(default_target):
    with pytest.raises(InputError, match="method"):
        finetune(default_target.model, default_target.tokenizer, TEXTS, TrainConfig(method="qlora"))
    with pytest.raises(InputError, match="no training texts"):
        finetune(default_target.model, default_target.tokenizer, [], TrainConfig())
