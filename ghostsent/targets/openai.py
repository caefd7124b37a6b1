"""Any model behind an OpenAI-compatible HTTP API (OpenAI, vLLM, llama.cpp servers, ...).

One httpx.Client per target keeps connections open across requests (`concurrency` in flight). The API
key is read from the environment at each call and is scrubbed from every message we produce: it never
reaches describe(), logs, reprs or exceptions. Transient failures (429, 5xx, connection errors,
timeouts) are retried with exponential backoff and jitter, honouring Retry-After.

Scoring uses /v1/completions with echo=true and logprobs: the server returns the prompt's tokens with
their log-probabilities, and the continuation's tokens are those at or after len(context) by
text_offset. Many servers get this wrong (no prompt log-probabilities, or shifted by one token), which
is why detection calls `capability.require_logprobs` before trusting these numbers.

Batching: /v1/completions accepts a list of prompts in the OpenAI API, so scoring and raw generation
send up to `batch_size` prompts per request. Servers that refuse lists (llama.cpp's takes one prompt)
are detected on the first batched request, which is not retried: any refusal switches this target to
one prompt per request for good.
"""
from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from ghostsent.errors import ModelError
from ghostsent.targets.base import EchoLogprobs, ReplyToken, Scored, Target, is_prefill, safe_url

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 120.0
DEFAULT_BATCH = 16  # prompts per /v1/completions request where the server takes lists


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


class _Refused(Exception):
    """A batched request the server refused (status, message): fall back to single prompts."""


class OpenAITarget(Target):
    """A model served over the OpenAI HTTP API; `model` is the server's model name."""

    is_chat = True                 # an API cannot tell us; chat() works on any chat-capable server
    supports_raw = False           # chat-tuned API models: the default probe asks in chat form
    supports_logprobs = True       # provisional: capability.require_logprobs decides
    supports_top_logprobs = True   # where the server returns top alternatives (checked, not assumed)

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60,
        max_retries: int = 5,
        concurrency: int = 4,
        batch_size: int = DEFAULT_BATCH,
        spec: str | None = None,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
    ) -> None:
        import httpx

        self.model = model
        self.root = _api_root(base_url)
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.concurrency = max(1, int(concurrency))
        self.batch_size = max(1, int(batch_size))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.spec = spec or f"openai:{model}"
        self._lists: bool | None = None if self.batch_size > 1 else False  # None: not known yet
        self._lists_lock = threading.Lock()
        self._client = httpx.Client(timeout=self.timeout, limits=httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency))

    def __repr__(self) -> str:
        return f"OpenAITarget(model={self.model!r}, base_url={safe_url(self.root)!r}, api_key_env={self.api_key_env!r})"

    def close(self) -> None:
        self._client.close()

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

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, path: str, payload: dict[str, Any], probe_lists: bool = False) -> dict[str, Any]:
        """POST JSON with retries; the parsed response, or ModelError with the status and server message.
        With `probe_lists` (a first batched request) a refusal raises _Refused at once, unretried."""
        import httpx

        url = self.root + path
        attempts = self.max_retries + 1
        last = ""
        for attempt in range(attempts):
            wait: float | None = None
            try:
                resp = self._client.post(url, content=json.dumps(payload).encode(), headers=self._headers())
            except httpx.TransportError as e:
                last = f"cannot reach {safe_url(url)}: {type(e).__name__}: {e}"
            else:
                if resp.status_code == 200:
                    return self._json(resp, path)
                msg = self._server_message(resp)
                retryable = resp.status_code == 429 or resp.status_code >= 500
                if probe_lists and resp.status_code not in (401, 403, 429):
                    raise _Refused(f"HTTP {resp.status_code}: {msg}")
                if not retryable:
                    hint = f" (check ${self.api_key_env})" if resp.status_code in (401, 403) else ""
                    raise self._fail(f"HTTP {resp.status_code} from POST {path}: {msg}{hint}")
                last = f"HTTP {resp.status_code} from POST {path}: {msg}"
                wait = _retry_after(resp.headers.get("Retry-After"))
            if attempt == attempts - 1:
                break
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random())
            wait = min(wait, MAX_RETRY_AFTER)
            log.warning("%s", self._scrub(f"{self.spec}: {last}; retry {attempt + 1}/{self.max_retries} in {wait:.1f}s"))
            time.sleep(wait)
        raise self._fail(f"{last} (gave up after {attempts} attempts)")

    def _json(self, resp: Any, path: str) -> dict[str, Any]:
        try:
            d = resp.json()
        except ValueError:
            raise self._fail(f"POST {path} returned invalid JSON: {resp.content[:200]!r}") from None
        if not isinstance(d, dict):
            raise self._fail(f"POST {path} returned {type(d).__name__}, not a JSON object")
        return d

    @staticmethod
    def _server_message(resp: Any) -> str:
        raw = resp.text
        try:
            d = json.loads(raw)
        except ValueError:
            return raw.strip()[:300] or str(resp.reason_phrase or "")
        err = d.get("error") if isinstance(d, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
        if isinstance(d, dict) and d.get("detail"):
            return str(d["detail"])[:300]
        return raw.strip()[:300]

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any], progress: bool = False, desc: str = "",
             weight: Callable[[Any], int] = lambda x: 1) -> list[Any]:
        """fn over items with at most `concurrency` requests in flight, results in order."""
        if len(items) <= 1:
            return [fn(x) for x in items]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=sum(weight(x) for x in items), desc=desc, unit="text")
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency) as ex:
                futs = [ex.submit(fn, x) for x in items]
                out = []
                for x, f in zip(items, futs):
                    out.append(f.result())
                    if bar is not None:
                        bar.update(weight(x))
                return out
        finally:
            if bar is not None:
                bar.close()

    # ------------------------------------------------------------------------------------ batching
    def _completions(self, prompts: list[str], payload: dict[str, Any],
                     parse: Callable[[dict[str, Any], str], Any]) -> list[Any]:
        """POST /completions for several prompts (one choice each): one request with a list where the
        server takes lists, else one request per prompt. `parse(choice, prompt)` reads each choice."""
        if len(prompts) > 1 and self._lists is not False:
            got = self._batched(prompts, payload, parse)
            if got is not None:
                return got
        return [parse(self._first_choice(self._post("/completions", {**payload, "prompt": p})), p) for p in prompts]

    def _batched(self, prompts: list[str], payload: dict[str, Any],
                 parse: Callable[[dict[str, Any], str], Any]) -> list[Any] | None:
        """The batched request, or None (and this target stops batching) when the server refuses lists
        or answers with a choice missing."""
        first = self._lists is None
        try:
            d = self._post("/completions", {**payload, "prompt": prompts}, probe_lists=first)
        except _Refused as e:
            log.info("%s: no batched prompts (%s); one prompt per request", self.spec, self._scrub(str(e)))
            self._lists = False
            return None
        chs = d.get("choices") if isinstance(d.get("choices"), list) else []
        by_index = {c.get("index"): c for c in chs if isinstance(c, dict)}
        if len(chs) != len(prompts) or set(by_index) != set(range(len(prompts))):
            if not first:
                raise self._fail(f"POST /completions answered {len(chs)} choices for {len(prompts)} prompts")
            self._lists = False
            return None
        with self._lists_lock:
            self._lists = True
        return [parse(by_index[i], p) for i, p in enumerate(prompts)]

    def _first_choice(self, d: dict[str, Any]) -> dict[str, Any]:
        try:
            return d["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise self._fail("POST /completions returned no choices") from None

    def _chunks(self, items: list[Any]) -> list[list[Any]]:
        size = self.batch_size if self._lists is not False else 1
        return [items[i:i + size] for i in range(0, len(items), size)]

    # ------------------------------------------------------------------------------------ logprobs
    _ECHO = {"echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0}

    def echo_logprobs(self, prompt: str) -> EchoLogprobs:
        """The prompt's tokens and log-probabilities as the server reports them (prompt tokens only).

        max_tokens is 1, not 0: several servers treat 0 as "no limit"; the generated token is dropped
        by its offset (>= len(prompt)).
        """
        return self.echo_many([prompt])[0]

    def echo_many(self, prompts: list[str]) -> list[EchoLogprobs]:
        return self._completions(prompts, {"model": self.model, **self._ECHO}, self._echo_choice)

    def _echo_choice(self, ch: dict[str, Any], prompt: str) -> EchoLogprobs:
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

    def _continuation(self, e: EchoLogprobs, context: str, cont: str) -> Scored:
        """The continuation's tokens out of the echo of context + continuation."""
        n0, full = len(context), context + cont
        toks: list[str] = []
        vals: list[float] = []
        for i, (t, v) in enumerate(zip(e.tokens, e.logprobs)):
            end = e.offsets[i + 1] if i + 1 < len(e.offsets) else len(full)
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
        """Per-continuation log-probabilities (`batch_size` texts per request, `concurrency` in flight).

        An API exposes only the chosen tokens' log-probabilities, so mu/sigma (full_stats) stay None.
        """
        conts = list(continuations)
        out: list[Scored | None] = [None] * len(conts)
        todo = [i for i, c in enumerate(conts) if c]
        for i, c in enumerate(conts):
            if not c:
                out[i] = Scored([], np.zeros(0, dtype=np.float64))
        if todo and self._lists is None:  # learn whether lists work before sending many in parallel
            head, todo = todo[:self.batch_size], todo[self.batch_size:]
            for i, e in zip(head, self.echo_many([context + conts[i] for i in head])):
                out[i] = self._continuation(e, context, conts[i])

        def run(chunk: list[int]) -> list[Scored]:
            echoes = self.echo_many([context + conts[i] for i in chunk])
            return [self._continuation(e, context, conts[i]) for i, e in zip(chunk, echoes)]

        chunks = self._chunks(todo)
        for chunk, scored in zip(chunks, self._map(run, chunks, progress, "scoring", len)):
            for i, s in zip(chunk, scored):
                out[i] = s
        return [s for s in out if s is not None]

    def generate(
        self, prompt: str, *, max_tokens: int = 32, temperature: float = 0.0, n: int = 1, seed: int | None = None
    ) -> list[str]:
        return self._n_replies("/completions", self._gen_payload(prompt, max_tokens, temperature, n, seed), n,
                               lambda c: c.get("text"))

    def _gen_payload(self, prompt: Any, max_tokens: int, temperature: float, n: int, seed: int | None) -> dict:
        payload: dict[str, Any] = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens,
                                   "temperature": temperature, "n": n}
        if seed is not None:
            payload["seed"] = seed
        return payload

    def generate_many(
        self, prompts: Sequence[str], *, max_tokens: int = 32, temperature: float = 0.0, n: int = 1,
        seed: int | None = None,
    ) -> list[list[str]]:
        """Raw continuations of several prompts: batched (one choice per prompt) where the server takes
        lists and one reply each is wanted; otherwise one request per prompt. `concurrency` in flight."""
        prompts = list(prompts)
        if n != 1 or len(prompts) < 2 or self._lists is False:
            return self._map(lambda p: self.generate(p, max_tokens=max_tokens, temperature=temperature, n=n,
                                                     seed=seed), prompts)
        payload = {k: v for k, v in self._gen_payload("", max_tokens, temperature, 1, seed).items() if k != "prompt"}

        def text(ch: dict[str, Any], prompt: str) -> list[str]:
            if ch.get("text") is None:
                raise self._fail("POST /completions returned no text in its choices")
            return [str(ch["text"])]

        head, rest = prompts[:self.batch_size], prompts[self.batch_size:]
        out = self._completions(head, payload, text)  # learns whether the server takes lists
        chunks = self._chunks(rest)
        return out + [r for got in self._map(lambda c: self._completions(c, payload, text), chunks) for r in got]

    def chat_many(
        self, conversations: Sequence[list[dict[str, str]]], *, max_tokens: int = 48, temperature: float = 0.0,
        n: int = 1, seed: int | None = None,
    ) -> list[list[str]]:
        """Chat completions take one conversation per request: `concurrency` in flight."""
        return self._map(lambda c: self.chat(c, max_tokens=max_tokens, temperature=temperature, n=n, seed=seed),
                         list(conversations))

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
                                   "temperature": temperature, "n": n, **_continuation(messages)}
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

    def top_next_tokens(self, prompts: Sequence[Any], n: int) -> list[dict[str, float]]:
        """One short request per prompt (max_tokens=1, temperature 0): /completions with logprobs=n for
        raw text, /chat/completions with logprobs=true, top_logprobs=n for a chat."""
        return self._map(lambda p: self._top_one(p, n), list(prompts))

    def _top_one(self, prompt: Any, n: int) -> dict[str, float]:
        base = {"model": self.model, "max_tokens": 1, "temperature": 0}
        if isinstance(prompt, str):
            ch = self._first_choice(self._post("/completions", {**base, "prompt": prompt, "logprobs": n}))
            # OpenAI's legacy form (top_logprobs: one dict per token); llama.cpp's llama-server answers
            # /completions in the chat form (content: one entry per token, with its top_logprobs list)
            tops = ((ch.get("logprobs") or {}).get("top_logprobs") or [None])[0] or _first_content_top(ch)
        else:
            d = self._post("/chat/completions", {**base, "messages": prompt, "logprobs": True, "top_logprobs": n,
                                                 **_continuation(prompt)})
            tops = _first_content_top(self._first_choice(d))
        got = _top_dict(tops)
        if not got:
            path = "/completions" if isinstance(prompt, str) else "/chat/completions"
            raise self._fail(f"POST {path} returned no top log-probabilities (the word-rank test needs them)")
        return got

    def top_reply_tokens(self, prompts: Sequence[list[dict[str, str]]], n: int,
                         max_tokens: int) -> list[list[ReplyToken]]:
        """One /chat/completions request per conversation: greedy, max_tokens, logprobs=true,
        top_logprobs=n; choices[0].logprobs.content gives each generated token and its alternatives."""
        return self._map(lambda p: self._reply_one(p, n, max_tokens), list(prompts))

    def _reply_one(self, messages: list[dict[str, str]], n: int, max_tokens: int) -> list[ReplyToken]:
        d = self._post("/chat/completions", {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                                             "temperature": 0, "logprobs": True, "top_logprobs": n})
        content = (self._first_choice(d).get("logprobs") or {}).get("content")
        steps = [e for e in content if isinstance(e, dict)] if isinstance(content, list) else []
        if not steps:
            raise self._fail("POST /chat/completions returned no top log-probabilities (the word-rank test needs them)")
        # A malformed token string counts as empty text (it cannot help align anything).
        return [ReplyToken(e["token"] if isinstance(e.get("token"), str) else "", _top_dict(e.get("top_logprobs")))
                for e in steps]

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "class": type(self).__name__,
            "backend": "openai-compatible",
            "model": self.model,
            "base_url": safe_url(self.root),
            "api_key_env": self.api_key_env,
            "is_chat": self.is_chat,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "concurrency": self.concurrency,
            "batch_size": self.batch_size,
        }


def _first_content_top(choice: dict[str, Any]) -> Any:
    """The first generated token's alternatives in the chat form: logprobs.content[0].top_logprobs."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    first = content[0] if isinstance(content, list) and content else None
    return first.get("top_logprobs") if isinstance(first, dict) else None


def _continuation(messages: Any) -> dict[str, Any]:
    """A final assistant message is continued (prefill): vLLM's fields, which llama.cpp's llama-server
    also reads. A server that does not know them refuses them (OpenAI) or ignores them and starts a new
    reply (llama-cpp-python); capability.require_rank_capability refuses the second kind before a test counts."""
    return {"continue_final_message": True, "add_generation_prompt": False} if is_prefill(messages) else {}


def _top_dict(tops: Any) -> dict[str, float]:
    """Top alternatives as {token: logprob}: OpenAI completions give a dict, chat (and vLLM) a list of
    {"token", "logprob"}. Non-finite or malformed entries are dropped (never counted for a word)."""
    pairs: list[tuple[Any, Any]] = []
    if isinstance(tops, dict):
        pairs = list(tops.items())
    elif isinstance(tops, list):
        pairs = [(e.get("token"), e.get("logprob")) for e in tops if isinstance(e, dict)]
    out: dict[str, float] = {}
    for tok, lp in pairs:
        if isinstance(tok, str) and isinstance(lp, (int, float)) and np.isfinite(lp):
            out[tok] = max(float(lp), out.get(tok, -np.inf))
    return out
