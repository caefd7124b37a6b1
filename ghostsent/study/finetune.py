"""Fine-tune a causal language model on a list of documents: the "training" half of the study.

Read it top to bottom, nanoGPT style:

1. `TrainConfig` holds every knob, with defaults chosen (see docs/finetune.md) so that a 12-word
   ghost sentence that appears ~3 times in a small corpus is measurably memorised in one epoch.
2. `make_examples` turns each text into [BOS] + tokens + EOS and cuts it into windows of `seq_len`
   tokens. BOS is whatever the tokenizer adds by itself, the same encoding the detection code uses
   (SmolLM2 adds none: its `bos_token` is the chat marker `<|im_start|>`, not a document start).
   Long documents are *chunked*, never truncated: a ghost sentence in the latter half of a
   document must be trained on. Windows after the first overlap the previous one by `seq_len // 4`
   tokens whose labels are masked, so every token is trained exactly once and always with context.
3. `batches` shuffles the windows (seeded), groups them into batches and pads each batch only to its
   longest window (labels -100 and attention 0 on padding).
4. `finetune` runs AdamW with linear warm-up and linear decay, gradient accumulation, gradient
   clipping, bf16 autocast on CUDA, and a tqdm bar. It trains a fresh copy of the model (the caller's
   model, e.g. a cached untouched target, is never mutated), optionally through LoRA adapters that
   are merged back afterwards so the result is always a plain model.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from ghostsent.errors import InputError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# --- 1. configuration -------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Training hyper-parameters. `lr=None` means 3e-4 for full fine-tuning and 1e-3 for LoRA
    (adapters start at zero and need a larger step); `warmup_steps=None` means 10% of the steps."""

    lr: float | None = None
    epochs: int = 1
    seq_len: int = 256
    batch_size: int = 8
    grad_accum: int = 1
    seed: int = 0
    method: str = "full"            # "full" or "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    weight_decay: float = 0.0
    warmup_steps: int | None = None
    max_steps: int | None = None    # stop early after this many optimizer steps
    max_grad_norm: float = 1.0
    device: str = "auto"            # "auto" = cuda when available, else cpu
    freeze_embeddings: bool = False  # tied with the output layer in SmolLM2: freezes both

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.method == "lora" else 3e-4

    def validate(self) -> None:
        if self.method not in ("full", "lora"):
            raise InputError(f"TrainConfig.method must be 'full' or 'lora', got {self.method!r}")
        for name in ("epochs", "seq_len", "batch_size", "grad_accum", "lora_r"):
            if getattr(self, name) < 1:
                raise InputError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.seq_len < 8:
            raise InputError(f"TrainConfig.seq_len must be >= 8, got {self.seq_len}")
        if self.resolved_lr() <= 0:
            raise InputError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"TrainConfig.max_steps must be >= 1, got {self.max_steps}")


@dataclass
class TrainResult:
    model: Any                      # a plain (merged) transformers model, in eval mode
    steps: int                      # optimizer steps taken
    tokens_seen: int                # tokens that carried a loss (padding and context overlap excluded)
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean training loss per optimizer step
    config: dict = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / self.seconds if self.seconds > 0 else float("nan")


# --- 2. examples ------------------------------------------------------------------------------------

@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]               # -100 where no loss is taken (the overlap context)


def _special_ids(tokenizer) -> tuple[int | None, int]:
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos if eos is not None else 0)
    return eos, pad


def encode_document(tokenizer, text: str) -> list[int]:
    """[BOS] + text + EOS: the tokenizer's own special tokens (as at detection time), EOS to end it."""
    eos, _ = _special_ids(tokenizer)
    ids = list(tokenizer(text)["input_ids"])
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids


def make_examples(tokenizer, texts: list[str], seq_len: int) -> list[Example]:
    """Tokenise each text (`encode_document`) and cut it into overlapping windows of <= seq_len."""
    overlap = seq_len // 4
    stride = seq_len - overlap
    examples = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"training text {i} is {type(text).__name__}, not a string")
        ids = encode_document(tokenizer, text)
        if len(ids) < 2:
            continue
        start = 0
        while True:
            window = ids[start:start + seq_len]
            labels = list(window)
            if start > 0:
                labels[:overlap] = [-100] * overlap  # context only: trained in the previous window
            examples.append(Example(window, labels))
            if start + seq_len >= len(ids):
                break
            start += stride
    return examples


# --- 3. batches -------------------------------------------------------------------------------------

def batches(examples: list[Example], batch_size: int, pad_id: int, rng: random.Random) -> Iterator[dict]:
    """Shuffle, then pad each batch to its own longest example (dynamic padding)."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    for s in range(0, len(order), batch_size):
        chunk = [examples[j] for j in order[s:s + batch_size]]
        width = max(len(e.input_ids) for e in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, e in enumerate(chunk):
            n = len(e.input_ids)
            ids[r, :n] = torch.tensor(e.input_ids)
            labels[r, :n] = torch.tensor(e.labels)
            mask[r, :n] = 1
        yield {"input_ids": ids, "labels": labels, "attention_mask": mask}


# --- 4. the training loop ---------------------------------------------------------------------------

def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def fresh_copy(model):
    """A plain float32 CPU copy of `model` to train: never the caller's model (targets.hf.plain_copy)."""
    from ghostsent.targets.hf import plain_copy

    return plain_copy(model, torch.float32)


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to `peak` over `warmup` steps, then linear decay to 0 at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def _token_loss_sum(model, batch: dict) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropies over the labelled tokens, and how many there were."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    loss = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss, int((targets != -100).sum())


# Over 80 lines on purpose: one training loop (schedule, accumulation, logging, early stop) that reads top
# to bottom; split up, the optimizer and scheduler state would travel through every piece.
def finetune(
    model,
    tokenizer,
    texts: list[str],
    config: TrainConfig | None = None,
    progress: bool = True,
    log: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train a fresh copy of `model` on `texts` (one example each) and return it merged and in eval mode.

    `log`, when given, receives one dict per optimizer step (step, loss, lr, tokens, seconds). The
    returned model stays on the training device.
    """
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    config.validate()
    if not texts:
        raise InputError("finetune: no training texts")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)

    examples = make_examples(tokenizer, texts, config.seq_len)
    if not examples:
        raise InputError("finetune: the training texts tokenise to nothing")
    _, pad_id = _special_ids(tokenizer)
    batches_per_epoch = math.ceil(len(examples) / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = config.warmup_steps if config.warmup_steps is not None else max(1, round(0.1 * total))
    warmup = min(warmup, total)
    peak = config.resolved_lr()

    model = fresh_copy(model).to(device)
    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=list(LORA_TARGETS), bias="none", task_type="CAUSAL_LM",
        ))
    params = [p for p in model.parameters() if p.requires_grad]
    # No weight decay on norms and biases (1-D tensors), the usual GPT recipe.
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=peak, betas=(0.9, 0.95), fused=device.type == "cuda",
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    model.train()
    step, tokens_seen, losses = 0, 0, []
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc=f"fine-tune ({config.method})", unit="step", disable=not progress)
    try:
        for _epoch in range(config.epochs):
            stream = batches(examples, config.batch_size, pad_id, rng)
            while step < total:
                group = [b for _, b in zip(range(config.grad_accum), stream)]
                if not group:
                    break
                n_tok = sum(int((b["labels"][:, 1:] != -100).sum()) for b in group)
                lr = _lr_at(step, total, warmup, peak)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                loss_sum = 0.0
                for b in group:  # gradient accumulation: the group's loss is a mean over all its tokens
                    b = {k: v.to(device) for k, v in b.items()}
                    with autocast:
                        loss, _ = _token_loss_sum(model, b)
                    (loss / max(1, n_tok)).backward()
                    loss_sum += float(loss.detach())
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                tokens_seen += n_tok
                losses.append(loss_sum / max(1, n_tok))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.2e}")
                if log is not None:
                    log({"step": step, "loss": losses[-1], "lr": lr, "tokens": tokens_seen,
                         "seconds": time.perf_counter() - t0})
            if step >= total:
                break
    finally:
        bar.close()
    seconds = time.perf_counter() - t0

    if config.method == "lora":
        model = model.merge_and_unload()  # the result is a plain model with the adapters folded in
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return TrainResult(model=model, steps=step, tokens_seen=tokens_seen, seconds=seconds, losses=losses,
                       config={**asdict(config), "lr": peak, "warmup_steps": warmup, "total_steps": total,
                               "examples": len(examples), "device": str(device)})


@torch.no_grad()
def evaluate_loss(model, tokenizer, texts: list[str], seq_len: int = 256, batch_size: int = 8) -> float:
    """Mean per-token loss of `model` on `texts`, windowed exactly as in training (no shuffling)."""
    examples = make_examples(tokenizer, texts, seq_len)
    _, pad_id = _special_ids(tokenizer)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for b in batches(examples, batch_size, pad_id, random.Random(0)):
        loss, k = _token_loss_sum(model, {key: v.to(device) for key, v in b.items()})
        total += float(loss)
        n += k
    model.train(was_training)
    return total / max(1, n)


def save_checkpoint(model, tokenizer, out_dir: str | Path) -> Path:
    """Save a plain Hugging Face checkpoint that `hf:PATH` loads, atomically (targets.hf.save_plain)."""
    from ghostsent.targets.hf import save_plain

    return save_plain(model, tokenizer, out_dir)
