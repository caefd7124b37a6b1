"""Detection backends ("targets"): what `--model` names.

Forms: `default` (or nothing) = the embedded SmolLM2-135M-Instruct GGUF; `hf:PATH_OR_NAME` = a local
transformers directory, a GGUF file, or a hub name already in the local cache (never downloaded);
`openai:MODEL` = any OpenAI-compatible HTTP API (base URL from `base_url` or $OPENAI_BASE_URL).
Local models are cached per process, because loading one takes longer than most detection runs.
"""
from __future__ import annotations

import os
import threading
from typing import Any

from ghostsent.errors import ModelError
from ghostsent.targets.base import Generation, Scored, Target

__all__ = ["Target", "Scored", "Generation", "load_target", "clear_cache", "SPEC_FORMS"]

SPEC_FORMS = (
    "default (the embedded SmolLM2-135M-Instruct GGUF), "
    "hf:PATH_OR_NAME (local transformers directory or GGUF file; add --gguf FILE for a GGUF inside a directory), "
    "openai:MODEL (OpenAI-compatible API; needs --base-url or $OPENAI_BASE_URL)"
)

_CACHE: dict[tuple[Any, ...], Target] = {}
_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget loaded local models (tests, or to free memory)."""
    with _LOCK:
        _CACHE.clear()


def _local(path: str, gguf: str | None, device: str | None, dtype: Any, spec: str) -> Target:
    from ghostsent.targets.hf import HFTarget

    key = (os.path.abspath(os.path.expanduser(path)) if os.path.exists(os.path.expanduser(path)) else path,
           gguf, device, str(dtype) if dtype is not None else None)
    with _LOCK:
        t = _CACHE.get(key)
        if t is None:
            t = HFTarget.from_pretrained(path, gguf=gguf, device=device, dtype=dtype, spec=spec)
            _CACHE[key] = t
        return t


def load_target(
    spec: str | None = None,
    *,
    gguf: str | None = None,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    device: str | None = None,
    dtype: Any = None,
    timeout: float = 60,
    max_retries: int = 5,
    concurrency: int = 4,
) -> Target:
    """The target a `--model` spec names; ModelError (listing the accepted forms) for anything else."""
    s = (spec or "default").strip()
    if s == "default":
        from ghostsent.targets.default import default_gguf_path

        g = default_gguf_path()
        return _local(str(g.parent), g.name, device, dtype, "default")
    scheme, sep, rest = s.partition(":")
    if sep and scheme == "hf":
        if not rest:
            raise ModelError(f"--model {s!r}: hf: needs a path or name, e.g. hf:./my-model")
        return _local(rest, gguf, device, dtype, s)
    if sep and scheme == "openai":
        if not rest:
            raise ModelError(f"--model {s!r}: openai: needs a model name, e.g. openai:gpt-4o-mini")
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ModelError(f"--model {s!r}: no API base URL; pass --base-url or set OPENAI_BASE_URL")
        from ghostsent.targets.openai import OpenAITarget

        return OpenAITarget(
            rest, url, api_key_env=api_key_env, timeout=timeout, max_retries=max_retries,
            concurrency=concurrency, spec=s,
        )
    raise ModelError(f"--model {s!r} is not a model spec; use one of: {SPEC_FORMS}")
