"""Local transformers models as detection targets (including the embedded GGUF).

Scoring is the hot loop of the perplexity test: hundreds or thousands of candidate passphrases after
the same prefix. So the shared context runs through the model once; its key/value cache is expanded
over each batch and only the candidates' own tokens are computed, in right-padded batches sized by a
token budget. Everything else (the unbatched reference, generation) stays deliberately simple.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ghostsent.errors import ModelError
from ghostsent.targets.base import DTYPES, ReplyToken, Scored, Target, is_prefill

log = logging.getLogger(__name__)

# Tokens (rows x padded length) per forward batch. Large enough for efficient matmuls, small enough
# that the fp32 logits (tokens x vocab x 4 bytes) stay a few hundred MB on CPU.
CPU_TOKEN_BUDGET = 2048
CUDA_TOKEN_BUDGET = 16384
MAX_BATCH_ROWS = 512
REPLY_BATCH = 16   # chat replies generated together (left-padded) by top_reply_tokens


def _offline_env() -> None:
    """Never reach a model hub: ghostsent works from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pick_device(device: str | None = None) -> str:
    """`device` as given, else CUDA when present, else CPU."""
    import torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {device!r} requested but CUDA is not available")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype: Any = None) -> Any:
    """fp32 on CPU (bf16 matmuls are slow there); bf16 on CUDA where supported, else fp16."""
    import torch

    if dtype is None or dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = DTYPES.get(str(dtype).lower())
    if name is None:
        raise ModelError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16, auto")
    return getattr(torch, name)


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Name, size and SHA-256 of a weights file, so a report pins exactly which model was tested."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"file": path.name, "size": path.stat().st_size, "sha256": h.hexdigest()}


def _locate(path: str | Path, gguf: str | None) -> tuple[Path, Path | None]:
    """(folder to load from, GGUF file or None): `gguf` is a file name in `path` or a path of its own;
    `path` may itself be a .gguf file. A local-looking path that does not exist is refused here."""
    p = Path(path).expanduser()
    if gguf:
        g = Path(gguf).expanduser()
        gguf_path, p = (g, g.parent) if g.is_absolute() or g.parent != Path(".") else (p / g, p)
        if not gguf_path.is_file():
            raise ModelError(f"GGUF file not found: {gguf_path}")
        return p, gguf_path
    if p.suffix == ".gguf" and p.is_file():
        return p.parent, p
    if not p.exists() and (str(path).startswith((".", "/", "~")) or os.sep in str(path) and p.parent.exists()):
        raise ModelError(f"model directory not found: {p}")
    return p, None


# --------------------------------------------------------------------------------------------- cache
def _cache_kv(cache: Any) -> list[tuple[Any, Any]]:
    """Per-layer (key, value) tensors of a DynamicCache across transformers versions."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [tuple(kv[:2]) for kv in cache]  # legacy tuple-of-tuples


def _cache_kwarg(model: Any) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class HFTarget(Target):
    """A transformers causal LM (a directory, a hub name already cached locally, or a GGUF file)."""

    supports_raw = True
    supports_logprobs = True
    supports_top_logprobs = True        # the whole next-token distribution
    computes_logprobs_locally = True    # straight from its own logits (tested against a plain forward pass)

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        spec: str,
        *,
        gguf_file: Path | None = None,
        source: str | None = None,
        token_budget: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.source = source
        self.gguf_file = Path(gguf_file) if gguf_file else None
        self.is_chat = bool(getattr(tokenizer, "chat_template", None))  # depends on what was loaded
        dev = next(model.parameters()).device
        self.device = dev
        self.token_budget = token_budget or (CUDA_TOKEN_BUDGET if dev.type == "cuda" else CPU_TOKEN_BUDGET)
        self._cache_kw = _cache_kwarg(model)
        self._fingerprint: dict[str, Any] | None = None
        self._boundary_warned = False
        self._bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if self._bos is None:
            raise ModelError(f"{spec}: tokenizer has neither a BOS nor an EOS token to start a text with")
        pad = tokenizer.pad_token_id
        self._pad = pad if pad is not None else (tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0)

    # ------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        gguf: str | None = None,
        device: str | None = None,
        dtype: Any = None,
        spec: str | None = None,
        revision: str | None = None,
        token_budget: int | None = None,
    ) -> "HFTarget":
        """Load from a local directory (or a locally cached hub name, at `revision`); `gguf` names a GGUF
        file in it. GGUF weights are dequantised to fp32 by transformers and then cast to the chosen dtype.
        """
        _offline_env()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dev = pick_device(device)
        dt = pick_dtype(dev, dtype)
        p, gguf_path = _locate(path, gguf)
        kw: dict[str, Any] = {"local_files_only": True}
        if gguf_path is not None:
            kw["gguf_file"] = gguf_path.name
        if revision:
            kw["revision"] = revision
        where = str(p) if p.exists() else str(path)
        try:
            tok = AutoTokenizer.from_pretrained(where, **kw)
            load_dtype = torch.float32 if gguf_path is not None else dt
            model = AutoModelForCausalLM.from_pretrained(where, dtype=load_dtype, **kw)
        except (OSError, ValueError, EnvironmentError) as e:
            raise ModelError(
                f"cannot load model {where!r}"
                + (f" (GGUF {gguf_path.name})" if gguf_path else "")
                + f": {str(e).splitlines()[0] if str(e) else type(e).__name__}. ghostsent never downloads "
                "models: give a local directory saved with save_pretrained, or a GGUF file"
            ) from e
        model = model.to(device=dev, dtype=dt)
        model.eval()
        return cls(model, tok, spec or f"hf:{path}", gguf_file=gguf_path, source=where, token_budget=token_budget)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, spec: str) -> "HFTarget":
        """Wrap an in-memory model (e.g. just fine-tuned); its device and dtype are left as they are."""
        return cls(model, tokenizer, spec, source="in-memory")

    # ------------------------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """inference_mode + eval, restoring the caller's training flag (fine-tuning code wraps us)."""
        import torch

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            if was_training:
                self.model.train()

    def _encode(self, text: str) -> list[int]:
        """Token ids of a prompt; an empty text is the BOS token alone (the model needs one input)."""
        ids = list(self.tokenizer(text).input_ids) if text else []
        if not ids:
            ids = list(self.tokenizer("").input_ids) or [self._bos]
        return ids

    def _continuation_ids(self, context: str, ctx_ids: list[int], cont: str) -> list[int]:
        """The continuation's tokens after `ctx_ids`.

        Normally the joint tokenisation of context+continuation starts with the context's tokens
        (continuations start with a space, which BPE pre-tokenisers split at), and its tail is the
        continuation as the model would see it in running text. When the context's last token would
        merge with the continuation (context ending in a space or mid-word), we keep the context's
        tokens and tokenise the continuation on its own, so every candidate shares one prefix.
        """
        if not cont:
            return []
        if context:
            joint = list(self.tokenizer(context + cont).input_ids)
            n = len(ctx_ids)
            if joint[:n] == ctx_ids and len(joint) > n:
                return joint[n:]
            if not self._boundary_warned:
                self._boundary_warned = True
                log.warning(
                    "%s: the context's last token merges with the continuation; scoring the "
                    "continuation tokenised on its own (end the context without a space)", self.spec
                )
        return list(self.tokenizer(cont, add_special_tokens=False).input_ids)

    def _token_strings(self, ids: list[int]) -> list[str]:
        """Per-token strings that concatenate back to the text.

        Byte-level BPE splits a multi-byte character over tokens; decoding those alone gives U+FFFD,
        so then a token gets "" until the character is complete and the completing token carries it.
        """
        dec = self.tokenizer.decode
        pieces = [dec([t]) for t in ids]
        if not any("\ufffd" in p for p in pieces):
            return pieces
        out: list[str] = []
        emitted = 0
        for i in range(len(ids)):
            full = dec(ids[: i + 1])
            if full.endswith("\ufffd") and i + 1 < len(ids):
                out.append("")
                continue
            out.append(full[emitted:])
            emitted = len(full)
        return out

    def _forward(self, input_ids: Any, attention_mask: Any = None, cache: Any = None) -> Any:
        kw: dict[str, Any] = {"input_ids": input_ids, "use_cache": cache is not None}
        if attention_mask is not None:
            kw["attention_mask"] = attention_mask
        if cache is not None:
            kw[self._cache_kw] = cache
        return self.model(**kw).logits

    def _batches(self, rows: list[list[int]], prefix_len: int) -> Iterator[list[int]]:
        """Indices of rows grouped into batches, longest first, within the token budget.

        The budget bounds computed positions (rows x padded width: compute and logits memory); the
        expanded prefix cache (rows x (prefix + width) keys/values per layer) gets 8x that.
        """
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        batch: list[int] = []
        for i in order:
            width = max(len(rows[batch[0]]) if batch else len(rows[i]), 1)  # the first row is the longest
            b = len(batch) + 1
            if batch and (
                b * width > self.token_budget
                or b * (width + prefix_len) > 8 * self.token_budget
                or b > MAX_BATCH_ROWS
            ):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    @staticmethod
    def _position_stats(logits: Any, targets: Any, full_stats: bool) -> tuple[Any, Any, Any]:
        """log p(target) and, for Min-K%++, mean/std of log p(z) under z ~ p, per position."""
        import torch

        logits = logits.float()
        lse = torch.logsumexp(logits, dim=-1, keepdim=True)
        lp_t = (logits.gather(-1, targets.unsqueeze(-1)) - lse).squeeze(-1)
        if not full_stats:
            return lp_t, None, None
        logp = logits - lse
        p = logp.exp()
        mu = (p * logp).sum(-1)
        var = (p * logp * logp).sum(-1) - mu * mu
        return lp_t, mu, var.clamp_min(0).sqrt()

    # ------------------------------------------------------------------------------------ Target API
    def score(
        self,
        context: str,
        continuations: Sequence[str],
        *,
        full_stats: bool = False,
        progress: bool = False,
    ) -> list[Scored]:
        conts = list(continuations)
        if not conts:
            return []
        ctx_ids = self._encode(context)
        rows = [self._continuation_ids(context, ctx_ids, c) for c in conts]
        stats = self._score_rows(ctx_ids, rows, full_stats=full_stats, progress=progress)
        return [Scored(tokens=self._token_strings(r), logprobs=lp, mu=mu, sigma=sd)
                for r, (lp, mu, sd) in zip(rows, stats)]

    def _score_rows(self, ctx_ids: list[int], rows: list[list[int]], *, full_stats: bool = False,
                    progress: bool = False) -> list[tuple[Any, Any, Any]]:
        """Per row of token ids after `ctx_ids`: (log p of each token, and with full_stats mu and sigma)."""
        import torch
        from transformers import DynamicCache

        out: list[tuple[Any, Any, Any] | None] = [None] * len(rows)
        dev = self.device
        with self._inference():
            # The shared context, once: its KV cache and the logits that predict each row's first token.
            cache = DynamicCache()
            ctx_logits = self._forward(torch.tensor([ctx_ids], device=dev), cache=cache)[0, -1:]
            kv = _cache_kv(cache)
            P = len(ctx_ids)
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(rows), desc="scoring", unit="text")
            try:
                for idx in self._batches(rows, P):
                    B = len(idx)
                    T = max(1, max(len(rows[i]) for i in idx))
                    ids = torch.full((B, T), self._pad, dtype=torch.long)
                    mask = torch.zeros((B, P + T), dtype=torch.long)
                    mask[:, :P] = 1
                    for b, i in enumerate(idx):
                        r = rows[i]
                        ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
                        mask[b, P : P + len(r)] = 1
                    ids, mask = ids.to(dev), mask.to(dev)
                    batch_cache = DynamicCache([(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in kv])
                    logits = self._forward(ids, mask, batch_cache)  # (B, T, V)
                    # position j predicts token j+1; the context's last position predicts token 0
                    pred = torch.cat([ctx_logits.unsqueeze(0).expand(B, -1, -1), logits[:, :-1]], dim=1)
                    lp, mu, sd = self._position_stats(pred, ids, full_stats)
                    lp = lp.double().cpu().numpy()
                    if full_stats:
                        mu, sd = mu.double().cpu().numpy(), sd.double().cpu().numpy()
                    for b, i in enumerate(idx):
                        n = len(rows[i])
                        out[i] = (lp[b, :n].copy(), mu[b, :n].copy() if full_stats else None,
                                  sd[b, :n].copy() if full_stats else None)
                    if bar is not None:
                        bar.update(B)
            finally:
                if bar is not None:
                    bar.close()
        return [o for o in out if o is not None]

    def _left_pad(self, rows: list[list[int]]) -> tuple[Any, Any]:
        """Left-padded ids and attention mask on the device, so each row continues from its own end."""
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _generate_ids(self, ids: list[int], max_tokens: int, temperature: float, n: int, seed: int | None) -> list[str]:
        return self._generate_batch([ids], max_tokens, temperature, n, seed)[0]

    def _generate_batch(self, rows: list[list[int]], max_tokens: int, temperature: float, n: int,
                        seed: int | None) -> list[list[str]]:
        """Greedy or sampled continuations of several prompts in one left-padded generate() call.

        One call amortises the per-step overhead of decoding over every prompt of a probe run (most of a
        step's cost for a small model); prompts are left-padded so each continues from its own end.
        """
        import torch

        if n < 1:
            raise ValueError("n must be >= 1")
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        ids, mask = self._left_pad(rows)
        kw: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": self._pad,
                              "eos_token_id": self.tokenizer.eos_token_id, "attention_mask": mask}
        greedy = temperature == 0
        if greedy:
            kw.update(do_sample=False, num_return_sequences=1)
        else:
            kw.update(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0, num_return_sequences=n)
        devices = [self.device] if self.device.type == "cuda" else []
        with self._inference(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(4), "little"))
            seqs = self.model.generate(ids, **kw)
        width = ids.shape[1]
        texts = [self.tokenizer.decode(s[width:], skip_special_tokens=True) for s in seqs]
        per = 1 if greedy else n
        grouped = [texts[i * per:(i + 1) * per] for i in range(len(rows))]
        return [g * n for g in grouped] if greedy else grouped

    def generate_many(self, prompts, *, max_tokens: int = 32, temperature: float = 0.0, n: int = 1,
                      seed: int | None = None) -> list[list[str]]:
        return self._generate_batch([self._encode(p) for p in prompts], max_tokens, temperature, n, seed)

    def chat_many(self, conversations, *, max_tokens: int = 48, temperature: float = 0.0, n: int = 1,
                  seed: int | None = None) -> list[list[str]]:
        return self._generate_batch([self._chat_ids(m) for m in conversations], max_tokens, temperature, n, seed)

    def generate(
        self, prompt: str, *, max_tokens: int = 32, temperature: float = 0.0, n: int = 1, seed: int | None = None
    ) -> list[str]:
        """Continuation(s) of raw text; greedy (deterministic) at temperature 0, seeded sampling otherwise."""
        return self._generate_ids(self._encode(prompt), max_tokens, temperature, n, seed)

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 48,
        temperature: float = 0.0,
        n: int = 1,
        seed: int | None = None,
    ) -> list[str]:
        """Reply through the tokenizer's chat template (_chat_ids: a final assistant message is continued)."""
        return self._generate_ids(self._chat_ids(messages), max_tokens, temperature, n, seed)

    def top_next_tokens(self, prompts: Sequence[Any], n: int) -> list[dict[str, float]]:
        """What an OpenAI-compatible server running this model returns as the first generated token's
        top-n alternatives: raw text as /v1/completions would see it, messages through the chat
        template (add_generation_prompt; a final assistant message continued, as with prefill). Lets a study measure the API modes of the word-rank test on a
        model it just trained; the real servers are tested separately (tests/test_rank.py)."""
        import torch

        out = []
        with self._inference():
            for p in prompts:
                ids = self._encode(p) if isinstance(p, str) else self._chat_ids(p)
                out.append(self._top_n(self._forward(torch.tensor([ids], device=self.device))[0, -1], n))
        return out

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat template's tokens; a conversation ending with an assistant message is continued
        (its end-of-turn left off), as vLLM's continue_final_message and llama.cpp's server prefill do."""
        if not self.is_chat:
            raise ModelError(f"{self.spec}: the tokenizer has no chat template; use generate() (raw text)")
        cont = is_prefill(messages)
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=not cont,
                                                  continue_final_message=cont, tokenize=False)
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def top_reply_tokens(self, prompts: Sequence[list[dict[str, str]]], n: int,
                         max_tokens: int) -> list[list[ReplyToken]]:
        """What an OpenAI-compatible chat server running this model returns with logprobs=true,
        top_logprobs=n at temperature 0: the greedy reply's tokens (end-of-sequence excluded) and the
        top-n alternatives at each, from the raw logits (no sampling processors)."""
        out: list[list[ReplyToken]] = []
        rows = [self._chat_ids(p) for p in prompts]
        eos = self.tokenizer.eos_token_id
        with self._inference():
            for at in range(0, len(rows), REPLY_BATCH):
                ids, mask = self._left_pad(rows[at:at + REPLY_BATCH])
                g = self.model.generate(ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False,
                                        output_logits=True, return_dict_in_generate=True, pad_token_id=self._pad,
                                        eos_token_id=eos)
                for b in range(ids.shape[0]):
                    new = g.sequences[b, ids.shape[1]:].tolist()
                    stop = new.index(eos) if eos in new else len(new)
                    strings = self._token_strings(new[:stop])
                    out.append([ReplyToken(t, self._top_n(g.logits[i][b], n)) for i, t in enumerate(strings)])
        return out

    def _top_n(self, logits: Any, n: int) -> dict[str, float]:
        import torch

        vals, idx = torch.topk(torch.log_softmax(logits.float(), -1), n)
        top: dict[str, float] = {}
        for v, i in zip(vals.tolist(), idx.tolist()):
            tok = self.tokenizer.decode([i])
            top[tok] = max(float(v), top.get(tok, -np.inf))
        return top

    def leading_token_ids(self, texts: Sequence[str]) -> list[int]:
        out = []
        for t in texts:
            ids = list(self.tokenizer(t, add_special_tokens=False).input_ids)
            out.append(ids[0] if ids else self._pad)
        return out

    supports_word_scores = True

    @property
    def word_score_tolerance(self) -> float:  # type: ignore[override]
        """Full-word scores come from batches whose make-up depends on the word tested, so the same word
        can score a little differently; this margin (counted against the ghost) is well above that noise
        in float32 (measured by scripts/bench_rank.py) and wide for 16-bit weights."""
        import torch

        return 1e-3 if next(self.model.parameters()).dtype == torch.float32 else 0.05

    def word_token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(self.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]

    def rest_logprobs(self, contexts: Sequence[str], rows: Sequence[Sequence[int]]) -> np.ndarray:
        """One context for all rows: batched over its shared KV cache (`_score_rows`, the perplexity
        test's hot loop). Several: each row after its own context, in plain right-padded batches."""
        out = np.zeros(len(rows))
        todo = [i for i, r in enumerate(rows) if len(r) > 1]
        if not todo:
            return out
        if len(set(contexts[i] for i in todo)) == 1:
            stats = self._score_rows(self._encode(contexts[todo[0]]), [list(rows[i]) for i in todo])
            for i, (lp, _, _) in zip(todo, stats):
                out[i] = float(np.sum(lp[1:]))
            return out
        for k in range(0, len(todo), 16):
            chunk = todo[k:k + 16]
            for i, v in zip(chunk, self._rest_separate([self._encode(contexts[i]) for i in chunk], [list(rows[i]) for i in chunk])):
                out[i] = v
        return out

    def _rest_separate(self, ctx_ids: list[list[int]], rows: list[list[int]]) -> list[float]:
        import torch

        seqs = [c + r for c, r in zip(ctx_ids, rows)]
        T = max(map(len, seqs))
        ids = torch.full((len(seqs), T), self._pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for b, q in enumerate(seqs):
            ids[b, : len(q)] = torch.tensor(q, dtype=torch.long)
            mask[b, : len(q)] = 1
        with self._inference():
            logp = torch.log_softmax(self._forward(ids.to(self.device), mask.to(self.device)).float(), dim=-1)
        out = []
        for b, (c, r) in enumerate(zip(ctx_ids, rows)):
            P = len(c)  # the logits at P-1+k predict the row's token k
            out.append(float(sum(logp[b, P - 1 + k, r[k]] for k in range(1, len(r)))))
        return out

    def next_token_scores(self, contexts: Sequence[str], token_ids: Sequence[int]) -> np.ndarray:
        """One forward pass over the longest context serves every context whose tokens are its prefix
        (a ghost's positions are nested prefixes); any other context gets its own pass."""
        import torch

        dev = self.device
        cols = torch.tensor(list(token_ids), dtype=torch.long, device=dev)
        out = np.empty((len(contexts), len(cols)))
        if not len(contexts):
            return out
        full = self._encode(max(contexts, key=len))
        full_logits = None
        with self._inference():
            for i, c in enumerate(contexts):
                ids = self._encode(c)
                if full[: len(ids)] == ids:
                    if full_logits is None:
                        full_logits = self._forward(torch.tensor([full], device=dev))[0]
                    row = full_logits[len(ids) - 1]
                else:
                    row = self._forward(torch.tensor([ids], device=dev))[0, -1]
                out[i] = torch.log_softmax(row.float(), dim=-1).index_select(0, cols).double().cpu().numpy()
        return out

    def describe(self) -> dict[str, Any]:
        import torch

        m = self.model
        d: dict[str, Any] = {
            "spec": self.spec,
            "class": type(self).__name__,
            "backend": "transformers",
            "architecture": type(m).__name__,
            "source": self.source,
            "name_or_path": getattr(m.config, "_name_or_path", None) or getattr(m, "name_or_path", None),
            "params": int(sum(p.numel() for p in m.parameters())),
            "dtype": str(next(m.parameters()).dtype).replace("torch.", ""),
            "device": str(self.device),
            "is_chat": self.is_chat,
            "torch": torch.__version__,
        }
        if self.gguf_file is not None:
            if self._fingerprint is None:
                self._fingerprint = file_fingerprint(self.gguf_file)
            d["gguf"] = self._fingerprint
        return d


def reference_logprobs(model: Any, tokenizer: Any, context: str, continuation: str) -> np.ndarray:
    """log p of the continuation's tokens from one plain forward pass over context+continuation.

    The slow, obviously-correct version of HFTarget.score (no batching, no cache reuse), used by the
    tests and the benchmark as ground truth. Tokenisation matches score() (joint text, split after
    the context's tokens; BOS alone for an empty context).
    """
    import torch

    t = HFTarget.from_model(model, tokenizer, "reference")
    ctx = t._encode(context)
    tail = t._continuation_ids(context, ctx, continuation)
    with t._inference():
        logits = model(input_ids=torch.tensor([ctx + tail], device=t.device)).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    P = len(ctx)
    return np.array([float(logp[P - 1 + j, tail[j]]) for j in range(len(tail))], dtype=np.float64)


def plain_copy(model: Any, dtype: Any = None) -> Any:
    """A plain transformers model on the CPU with `model`'s weights (in `dtype`, default its own),
    detached from how it was loaded.

    A GGUF-loaded model carries a `quantization_config` (its weights are already dequantised) that makes
    `save_pretrained` refuse or write a config other loaders misread, and training must never change the
    caller's model (often a cached untouched target). So: build from a copy of the config without it, on
    the meta device (no pointless random init), and take every weight and buffer from the source,
    non-persistent ones (rotary inv_freq) included."""
    import torch
    from transformers import AutoModelForCausalLM

    if hasattr(model, "merge_and_unload") and hasattr(model, "peft_config"):
        raise ModelError("got a PEFT-wrapped model: call merge_and_unload() on it first")
    dtype = dtype or next(model.parameters()).dtype
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        new = AutoModelForCausalLM.from_config(config, dtype=dtype)
    new.to_empty(device="cpu")
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype) for k, v in model.state_dict().items()}
    missing, unexpected = new.load_state_dict(state, strict=False)
    tied = getattr(config, "tie_word_embeddings", False)
    missing = [k for k in missing if not (k == "lm_head.weight" and tied)]
    if missing or unexpected:
        raise ModelError(f"weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, buf in model.named_buffers():
        new.get_buffer(name).copy_(buf.detach().to("cpu"))
    if tied:
        new.tie_weights()
    if getattr(model, "generation_config", None) is not None:
        new.generation_config = copy.deepcopy(model.generation_config)
    return new.eval()


def save_plain(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Save a (possibly GGUF-loaded) model as a plain transformers directory that `hf:DIR` loads.

    The directory appears atomically: written beside `out_dir`, then renamed in (an existing `out_dir`
    is replaced only after the new one is complete).
    """
    out = Path(out_dir).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    plain = plain_copy(model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
