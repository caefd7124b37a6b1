"""Detection backends ("targets"): what a model spec names.

Forms (SCHEMES): `default` (or nothing) = the embedded SmolLM2-135M-Instruct GGUF; `hf:PATH_OR_NAME` = a
local transformers directory, a GGUF file, or a hub name already in the local cache (never downloaded);
`openai:MODEL` = any OpenAI-compatible HTTP API (base URL from `base_url` or $OPENAI_BASE_URL). Each
scheme declares the model options it takes (the CLI's repeatable `-M key=value`), checked here with one
clear error per bad key or value. Local models are cached per process: loading one takes longer than
most detection runs. A new backend adds one Scheme to SCHEMES.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ghostsent.errors import ModelError
from ghostsent.extras import require
from ghostsent.targets.base import DTYPES, EchoLogprobs, Generation, Scored, Target

__all__ = ["Target", "Scored", "Generation", "EchoLogprobs", "load_target", "clear_cache", "SCHEMES",
           "SPEC_FORMS", "parse_model_args"]


def _positive_int(v: str) -> int:
    n = int(v)
    if n < 1:
        raise ValueError("must be at least 1")
    return n


def _non_negative_int(v: str) -> int:
    n = int(v)
    if n < 0:
        raise ValueError("must be at least 0")
    return n


def _positive_float(v: str) -> float:
    x = float(v)
    if not x > 0:
        raise ValueError("must be above 0")
    return x


def _dtype(v: str) -> str:
    if v.lower() not in DTYPES and v != "auto":
        raise ValueError(f"one of {', '.join(sorted(set(DTYPES)))} or auto")
    return v


# Model options (-M key=value): name -> (converter, what it means)
LOCAL_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "device": (str, "cpu, cuda, cuda:N, mps (default: cuda when present)"),
    "dtype": (_dtype, "float32, bfloat16, float16 or auto (default: fp32 on CPU, bf16/fp16 on CUDA)"),
    "token_budget": (_positive_int, "tokens per scoring batch (rows x padded length)"),
    "revision": (str, "revision of a hub name in the local cache"),
}
API_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "timeout": (_positive_float, "seconds per request"),
    "max_retries": (_non_negative_int, "retries of 429/5xx/connection failures"),
    "concurrency": (_positive_int, "requests in flight"),
    "batch_size": (_positive_int, "prompts per /v1/completions request where the server takes lists"),
}


@dataclass(frozen=True)
class Scheme:
    """One kind of model spec: how to build it, which options it takes, an example."""

    name: str
    build: Callable[[str, "Mapping[str, Any]", "dict[str, Any]"], Target]   # (rest of spec, options, context)
    options: Mapping[str, tuple[Callable[[str], Any], str]]
    example: str


_CACHE: dict[tuple[Any, ...], Target] = {}
_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget loaded local models (tests, or to free memory)."""
    with _LOCK:
        _CACHE.clear()


def _local(path: str, gguf: str | None, spec: str, opts: Mapping[str, Any]) -> Target:
    require("detect", "torch", "transformers", "gguf", what=f"the model {spec}")
    from ghostsent.targets.hf import HFTarget

    where = os.path.expanduser(path)
    key = (os.path.abspath(where) if os.path.exists(where) else path, gguf,
           *(str(opts.get(k)) for k in ("device", "dtype", "revision", "token_budget")))
    with _LOCK:
        t = _CACHE.get(key)
        if t is None:
            t = HFTarget.from_pretrained(path, gguf=gguf, spec=spec, **dict(opts))
            _CACHE[key] = t
        return t


def _build_default(rest: str, opts: Mapping[str, Any], ctx: dict[str, Any]) -> Target:
    from ghostsent.targets.default import default_gguf_path

    g = default_gguf_path()
    return _local(str(g.parent), g.name, "default", opts)


def _build_hf(rest: str, opts: Mapping[str, Any], ctx: dict[str, Any]) -> Target:
    if not rest:
        raise ModelError("hf: needs a path or name, e.g. hf:./my-model")
    return _local(rest, ctx.get("gguf"), f"hf:{rest}", opts)


def _build_openai(rest: str, opts: Mapping[str, Any], ctx: dict[str, Any]) -> Target:
    if not rest:
        raise ModelError("openai: needs a model name, e.g. openai:gpt-4o-mini")
    url = ctx.get("base_url") or os.environ.get("OPENAI_BASE_URL")
    if not url:
        raise ModelError(f"openai:{rest}: no API base URL; give one or set OPENAI_BASE_URL", hint="base_url")
    require("detect", "httpx", what=f"the model openai:{rest}")
    from ghostsent.targets.openai import OpenAITarget

    return OpenAITarget(rest, url, api_key_env=ctx.get("api_key_env") or "OPENAI_API_KEY", spec=f"openai:{rest}",
                        **dict(opts))


SCHEMES: dict[str, Scheme] = {
    "default": Scheme("default", _build_default, LOCAL_OPTIONS, "default"),
    "hf": Scheme("hf", _build_hf, LOCAL_OPTIONS, "hf:./my-model or hf:model.gguf"),
    "openai": Scheme("openai", _build_openai, API_OPTIONS, "openai:gpt-4o-mini (with a base URL)"),
}
SPEC_FORMS = (
    "default (the embedded SmolLM2-135M-Instruct GGUF), "
    "hf:PATH_OR_NAME (local transformers directory or GGUF file, or a GGUF file inside a directory), "
    "openai:MODEL (OpenAI-compatible API; needs a base URL or $OPENAI_BASE_URL)"
)


def parse_model_args(items: Sequence[str]) -> dict[str, str]:
    """`key=value` strings (the CLI's -M) as a dict; ModelError for one without '=' or a repeated key."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ModelError(f"model option {item!r} is not of the form key=value")
        if key in out:
            raise ModelError(f"model option {key!r} is given twice")
        out[key] = value.strip()
    return out


def _options(scheme: Scheme, given: Mapping[str, Any]) -> dict[str, Any]:
    """Each option checked against what the scheme takes: values given as text are converted."""
    out: dict[str, Any] = {}
    for key, value in given.items():
        if value is None:
            continue
        if key not in scheme.options:
            accepted = ", ".join(sorted(scheme.options)) or "none"
            raise ModelError(f"model option {key!r} does not apply to {scheme.name} models (they take: {accepted})")
        convert, meaning = scheme.options[key]
        try:
            out[key] = convert(value) if isinstance(value, str) else value
        except ValueError as e:
            raise ModelError(f"model option {key}={value!r}: {e} ({meaning})") from None
    return out


def load_target(spec: str | None = None, *, gguf: str | None = None, base_url: str | None = None,
                api_key_env: str = "OPENAI_API_KEY", options: Mapping[str, Any] | None = None,
                **more: Any) -> Target:
    """The target a model spec names; ModelError (listing the accepted forms) for anything else.
    `options` (and keyword arguments such as device=, dtype=, timeout=) are the scheme's model options."""
    s = (spec or "default").strip()
    scheme_name, sep, rest = s.partition(":")
    scheme = SCHEMES.get(scheme_name if sep or s == "default" else "")
    if scheme is None or (scheme.name == "default" and sep):
        raise ModelError(f"{s!r} is not a model spec; use one of: {SPEC_FORMS}")
    opts = _options(scheme, {**(options or {}), **more})
    try:
        return scheme.build(rest, opts, {"gguf": gguf, "base_url": base_url, "api_key_env": api_key_env})
    except ModelError as e:
        if str(e).startswith(s):
            raise
        raise e.again(f"model {s!r}: {e}") from None
