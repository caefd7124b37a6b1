"""Any model behind an OpenAI-compatible HTTP API (OpenAI, vLLM, llama.cpp servers, ...).

Standard library only (urllib + a thread pool), so the API path adds no dependency. The API key is read
from the environment at each call and is scrubbed from every message we produce: it never reaches
describe(), logs, reprs or exceptions. Transient failures (429, 5xx, connection errors, timeouts) are
retried with exponential backoff and jitter, honouring Retry-After.

Scoring uses /v1/completions with echo=true and logprobs: the server returns the prompt's tokens with
their log-probabilities, and the continuation's tokens are those at or after len(context) by
text_offset. Many servers get this wrong (no prompt log-probabilities, or shifted by one token), which
is why detection calls `capability.require_logprobs` before trusting these numbers.
"""
from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ghostsent.errors import ModelError
from ghostsent.targets.base import Scored, Target

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 120.0


@dataclass
class EchoLogprobs:
    """A prompt's tokens as the server returned them: strings, start offsets, log-probabilities."""

    tokens: list[str]
    offsets: list[int]
    logprobs: list[float | None]
    top: list[dict[str, float] | None] | None = None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _api_root(base_url: str) -> str:
    """Base URL up to and including /v1 (OPENAI_BASE_URL conventionally ends in /v1; accept both)."""
    u = base_url.strip().rstrip("/")
    if not u.startswith(("http://", "https://")):
        raise ModelError(f"base URL {base_url!r} must start with http:// or https://")
    return u if u.endswith("/v1") else u + "/v1"


def _safe_url(url: str) -> str:
    """The URL without user-info or query string (either could carry a credential)."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host = f"{host}:{p.port}"
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


class OpenAITarget(Target):
    """A model served over the OpenAI HTTP API; `model` is the server's model name."""

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60,
        max_retries: int = 5,
        concurrency: int = 4,
        spec: str | None = None,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
    ) -> None:
        self.model = model
        self.root = _api_root(base_url)
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.concurrency = max(1, int(concurrency))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.spec = spec or f"openai:{model}"
        self.is_chat = True  # an API cannot tell us; chat() works on any chat-capable server
        self.supports_logprobs = True  # provisional: capability.require_logprobs decides
        self._sem = threading.BoundedSemaphore(self.concurrency)

    def __repr__(self) -> str:
        return f"OpenAITarget(model={self.model!r}, base_url={_safe_url(self.root)!r}, api_key_env={self.api_key_env!r})"

    # ------------------------------------------------------------------------------------ HTTP
    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def _scrub(self, text: str) -> str:
        key = self._key()
        if key and len(key) >= 4:
            text = text.replace(key, "***")
        return text

    def _fail(self, msg: str) -> ModelError:
        return ModelError(self._scrub(f"{self.spec}: {msg}"))

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with retries; the parsed response, or ModelError with the status and server message."""
        url = self.root + path
        body = json.dumps(payload).encode()
        attempts = self.max_retries + 1
        last = ""
        for attempt in range(attempts):
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            key = self._key()
            if key:
                headers["Authorization"] = f"Bearer {key}"
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            wait: float | None = None
            try:
                with self._sem, urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                try:
                    return json.loads(raw)
                except ValueError:
                    raise self._fail(f"POST {path} returned invalid JSON: {raw[:200]!r}") from None
            except urllib.error.HTTPError as e:
                msg = self._server_message(e)
                if e.code == 429 or e.code >= 500:
                    last = f"HTTP {e.code} from POST {path}: {msg}"
                    wait = _retry_after(e.headers.get("Retry-After") if e.headers else None)
                else:
                    hint = f" (check ${self.api_key_env})" if e.code in (401, 403) else ""
                    raise self._fail(f"HTTP {e.code} from POST {path}: {msg}{hint}") from None
            except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                last = f"cannot reach {_safe_url(url)}: {reason}"
            if attempt == attempts - 1:
                break
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random())
            wait = min(wait, MAX_RETRY_AFTER)
            log.warning("%s", self._scrub(f"{self.spec}: {last}; retry {attempt + 1}/{self.max_retries} in {wait:.1f}s"))
            time.sleep(wait)
        raise self._fail(f"{last} (gave up after {attempts} attempts)")

    @staticmethod
    def _server_message(e: urllib.error.HTTPError) -> str:
        try:
            raw = e.read().decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - the status alone is still useful
            return e.reason or ""
        try:
            d = json.loads(raw)
        except ValueError:
            return raw.strip()[:300] or str(e.reason or "")
        err = d.get("error") if isinstance(d, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
        if isinstance(d, dict) and d.get("detail"):
            return str(d["detail"])[:300]
        return raw.strip()[:300]

    def _map(self, fn: Any, items: Sequence[Any], progress: bool = False, desc: str = "") -> list[Any]:
        """fn over items with at most `concurrency` requests in flight, results in order."""
        if len(items) <= 1:
            return [fn(x) for x in items]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc=desc, unit="req")
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency) as ex:
                futs = [ex.submit(fn, x) for x in items]
                out = []
                for f in futs:
                    out.append(f.result())
                    if bar is not None:
                        bar.update(1)
                return out
        finally:
            if bar is not None:
                bar.close()

    # ------------------------------------------------------------------------------------ logprobs
    def echo_logprobs(self, prompt: str) -> EchoLogprobs:
        """The prompt's tokens and log-probabilities as the server reports them (prompt tokens only).

        max_tokens is 1, not 0: several servers treat 0 as "no limit"; the generated token is dropped
        by its offset (>= len(prompt)).
        """
        d = self._post(
            "/completions",
            {"model": self.model, "prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0},
        )
        try:
            ch = d["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise self._fail("POST /completions returned no choices") from None
        lp = ch.get("logprobs") or {}
        tokens = list(lp.get("tokens") or [])
        vals = list(lp.get("token_logprobs") or [])
        offs = lp.get("text_offset")
        top = lp.get("top_logprobs")
        if not tokens and ch.get("prompt_logprobs"):  # vLLM-style per-prompt-token dicts
            return self._from_prompt_logprobs(ch["prompt_logprobs"])
        if not offs or len(offs) != len(tokens):
            offs, pos = [], 0
            for t in tokens:
                offs.append(pos)
                pos += len(t)
        keep = [i for i, o in enumerate(offs) if o < len(prompt)]
        vals = vals + [None] * (len(tokens) - len(vals))
        return EchoLogprobs(
            tokens=[tokens[i] for i in keep],
            offsets=[int(offs[i]) for i in keep],
            logprobs=[None if vals[i] is None else float(vals[i]) for i in keep],
            top=[top[i] for i in keep] if isinstance(top, list) and len(top) == len(tokens) else None,
        )

    @staticmethod
    def _from_prompt_logprobs(entries: list[Any]) -> EchoLogprobs:
        """vLLM's `prompt_logprobs` (one {token_id: {logprob, decoded_token}} per prompt token).

        Only entries holding just the prompt token itself are unambiguous; others count as missing.
        """
        tokens: list[str] = []
        offs: list[int] = []
        vals: list[float | None] = []
        pos = 0
        for e in entries:
            items = list(e.values()) if isinstance(e, dict) else []
            tok = str(items[0].get("decoded_token", "")) if items else ""
            tokens.append(tok)
            vals.append(float(items[0]["logprob"]) if len(items) == 1 else None)
            offs.append(pos)
            pos += len(tok)
        return EchoLogprobs(tokens, offs, vals)

    def _score_one(self, context: str, cont: str) -> Scored:
        if not cont:
            return Scored([], np.zeros(0, dtype=np.float64))
        e = self.echo_logprobs(context + cont)
        n0 = len(context)
        toks: list[str] = []
        vals: list[float] = []
        for i, (t, o, v) in enumerate(zip(e.tokens, e.offsets, e.logprobs)):
            end = e.offsets[i + 1] if i + 1 < len(e.offsets) else len(context + cont)
            if end <= n0:
                continue  # a context token
            # tokens starting at/after the context, plus one straddling the boundary (a merge)
            if v is None:
                if i == 0:
                    continue  # the very first token of a text is never predicted
                raise self._fail(
                    f"server gave no log-probability for continuation token {t!r}; it cannot be used "
                    "for the perplexity test (see the capability check in docs/targets.md)"
                )
            toks.append(t)
            vals.append(v)
        if not toks:
            raise self._fail(
                "server returned no prompt log-probabilities for the continuation (only generated tokens?)"
            )
        return Scored(toks, np.asarray(vals, dtype=np.float64))

    # ------------------------------------------------------------------------------------ Target API
    def score(
        self,
        context: str,
        continuations: Sequence[str],
        *,
        full_stats: bool = False,
        progress: bool = False,
    ) -> list[Scored]:
        """Per-continuation log-probabilities (one request each, `concurrency` in flight).

        An API exposes only the chosen tokens' log-probabilities, so mu/sigma (full_stats) stay None.
        """
        return self._map(lambda c: self._score_one(context, c), list(continuations), progress, "scoring")

    def generate(
        self, prompt: str, *, max_tokens: int = 32, temperature: float = 0.0, n: int = 1, seed: int | None = None
    ) -> list[str]:
        payload: dict[str, Any] = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens,
                                   "temperature": temperature, "n": n}
        if seed is not None:
            payload["seed"] = seed
        return self._n_replies("/completions", payload, n, lambda c: c.get("text"))

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 48,
        temperature: float = 0.0,
        n: int = 1,
        seed: int | None = None,
    ) -> list[str]:
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                                   "temperature": temperature, "n": n}
        if seed is not None:
            payload["seed"] = seed
        return self._n_replies("/chat/completions", payload, n, lambda c: (c.get("message") or {}).get("content"))

    def _choices(self, d: dict[str, Any], path: str, get: Any) -> list[str]:
        chs = sorted(d.get("choices") or [], key=lambda c: c.get("index", 0))
        out = [get(c) for c in chs]
        if not out or any(x is None for x in out):
            raise self._fail(f"POST {path} returned no text in its choices")
        return [str(x) for x in out]

    def _n_replies(self, path: str, payload: dict[str, Any], n: int, get: Any) -> list[str]:
        """n replies even from servers that ignore `n` (llama.cpp): ask again for the rest."""
        out = self._choices(self._post(path, payload), path, get)
        i = 1
        while len(out) < n:
            p = dict(payload, n=n - len(out))
            if "seed" in p:
                p["seed"] = int(p["seed"]) + i
            out += self._choices(self._post(path, p), path, get)
            i += 1
        return out[:n]

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "class": type(self).__name__,
            "backend": "openai-compatible",
            "model": self.model,
            "base_url": _safe_url(self.root),
            "api_key_env": self.api_key_env,
            "is_chat": self.is_chat,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "concurrency": self.concurrency,
        }
