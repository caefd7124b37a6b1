"""`ghostsent serve`: a tagging service for publish-time hooks (docs/scale.md, "The tagging service").

    POST /tag                text + owner -> tagged text (tagging.core.tag_record, the one set of rules);
                             the insertion is committed to the ledger BEFORE the response is sent
    POST /check              replies pasted from a chat -> the same test as `ghostsent check` (counted in
                             the identifier's history; what it scores excludes every word ever shown)
    GET  /identifiers/{owner}  the owner's identifiers, without passphrases unless the server was
                             started with --allow-reveal AND the request asks (?reveal=true)

Every request needs `Authorization: Bearer $GHOSTSENT_SERVE_TOKEN` (compared in constant time). Bodies
over the size limit are refused (413) before they are parsed; every error is JSON {"error": ...} with a
status code. Logs are one line per request (method, path, status, time): never a body, a query, a
header or an exception message, so no passphrase or token can reach them.

Why one ledger thread and group commit (LedgerWorker): a ledger connection belongs to one thread, and
a commit costs a disk flush (or a database round trip), so insertions that arrive together are
committed together, each reply waiting for the commit that holds its insertion. More worker processes
(--workers) each have their own thread and connection to the same ledger.

No `from __future__ import annotations` here: FastAPI reads the request models of the routes (defined
inside create_app, since their limits come from the settings) from evaluated annotations.
"""
import contextlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, AsyncIterator, Awaitable, Callable

from ghostsent.errors import GhostsentError, InputError, LedgerError
from ghostsent.insert import DEFAULT_POSITION, POSITIONS

TOKEN_ENV = "GHOSTSENT_SERVE_TOKEN"
CONFIG_ENV = "GHOSTSENT_SERVE_CONFIG"  # the settings handed to worker processes (never the token)
MIN_TOKEN = 16
log = logging.getLogger("ghostsent.serve")


@dataclass(frozen=True)
class ServiceConfig:
    ledger: str                        # a SQLite path or a postgresql:// URL
    max_bytes: int = 1 << 20           # largest request body
    max_replies: int = 64              # most replies one /check may score
    wordlist: str = "en"               # for identifiers of new owners
    n_words: int = 12
    template: str | None = None
    position: str = DEFAULT_POSITION
    allow_reveal: bool = False         # may GET /identifiers return passphrases (?reveal=true)
    timeout: float = 30.0              # seconds a ledger write waits for another writer

    def validate(self) -> None:
        if self.position not in POSITIONS:
            raise InputError(f"unknown position {self.position!r} (choose from {', '.join(POSITIONS)})")
        if self.max_bytes < 1024 or self.max_replies < 1 or self.n_words < 1:
            raise InputError("the body limit must be >= 1024 bytes, replies >= 1 and words >= 1")


def token_from_env() -> str:
    token = os.environ.get(TOKEN_ENV, "")
    if len(token) < MIN_TOKEN:
        raise InputError(f"${TOKEN_ENV} must hold the bearer token clients send (at least {MIN_TOKEN} characters)")
    return token


# -- the guard: auth, body limit, JSON errors for what never reaches a route, the request log ----------

async def _send_json(send: Callable[..., Awaitable[None]], status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """ASGI wrapper around the app: checks the token before reading anything, reads the body up to the
    limit (413 beyond it), logs one scrubbed line per request, and turns an unexpected exception into a
    JSON 500 without logging its message (it could quote a text)."""

    def __init__(self, app: Any, token: str, max_bytes: int) -> None:
        self.app, self.token, self.max_bytes = app, token.encode(), max_bytes

    def _authorised(self, scope: dict) -> bool:
        got = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, value = got.partition(b" ")
        # compare_digest on equal-length digests: the time taken says nothing about the token
        return scheme.lower() == b"bearer" and hmac.compare_digest(
            hmac.new(b"ghostsent", value.strip(), "sha256").digest(), hmac.new(b"ghostsent", self.token, "sha256").digest())

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [0]

        async def logged_send(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)
        try:
            await self._handle(scope, receive, logged_send)
        except Exception as e:  # noqa: BLE001 — the response (JSON 500) is already sent; never re-raise with text
            log.error("%s %s: unhandled %s", scope.get("method"), scope.get("path"), type(e).__name__)
            if not status[0]:
                await _send_json(logged_send, 500, {"error": "internal error"})
        log.info("%s %s %d %.1f ms", scope.get("method"), scope.get("path"), status[0],
                 (time.perf_counter() - t0) * 1000)

    async def _handle(self, scope: dict, receive: Callable, send: Callable) -> None:
        if not self._authorised(scope):
            return await _send_json(send, 401, {"error": "missing or wrong bearer token"},
                                    [(b"www-authenticate", b"Bearer")])
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _send_json(send, 413, {"error": f"request body over {self.max_bytes} bytes"})
        body = bytearray()
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            if len(body) > self.max_bytes:
                return await _send_json(send, 413, {"error": f"request body over {self.max_bytes} bytes"})
            if not msg.get("more_body"):
                break
        done = False

        async def replay() -> dict:
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()
        await self.app(scope, replay, send)


# -- the routes ------------------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _owner_ghost(identifier: Any, position: str) -> Any:
    from ghostsent.tagging.core import OwnerGhost

    return OwnerGhost.of(identifier, position)


class Service:
    """The work behind the routes, on one open ledger (plain methods: testable without HTTP)."""

    def __init__(self, config: ServiceConfig, ledger: Any) -> None:
        from ghostsent.ledger.keys import selection_secret
        from ghostsent.tagging.core import RecordRules, TagPolicy
        from ghostsent.tagging.selection import Selection, SelectionKey
        from ghostsent.wordlists import load_wordlist

        self.config, self.ledger = config, ledger
        self.wordlist = load_wordlist(config.wordlist)
        # Every post sent is tagged (the publishing hook decides which to send): a selection without a cap
        # or fraction. Placement is keyed by (owner, document) like every other front end.
        policy = TagPolicy(id_field="document", position=config.position)
        self.rules = RecordRules(policy, Selection(SelectionKey.of(selection_secret(ledger))))

    def ghost_for(self, owner: str) -> Any:
        ident = self.ledger.identifier_for_owner(owner)  # a read: no write lock for known owners
        if ident is None:
            ident, _ = self.ledger.identifier_for_owner_or_new(owner, self.wordlist, self.config.n_words,
                                                               self.config.template)
        return _owner_ghost(ident, self.config.position)

    def prepare(self, text: str, owner: str, document: str | None) -> tuple[dict[str, Any], tuple | None]:
        """Tag the text (the one tagging core); returns the reply without its insertion id and the ledger
        row to commit (None when nothing was inserted)."""
        from ghostsent.tagging.core import TAGGED, BadRecord, tag_record

        try:
            # a post without a document name gets a fresh random key, so its placement is not predictable
            key = document if document else "service:" + secrets.token_hex(16)
            rt = tag_record({"text": text, "owner": owner, "document": key}, self, self.rules, 0)
        except BadRecord as e:
            raise InputError(str(e)) from None
        doc = document or "service"
        row = rt.tag.insertion(rt.ghost.identifier_id, doc, self.config.position) if rt.tag.status == TAGGED else None
        reply = {"text": rt.tag.new_text, "status": rt.tag.status, "owner": rt.owner,
                 "identifier": rt.ghost.identifier_id if rt.ghost else None, "insertion": None, "document": doc}
        return reply, row

    def commit(self, rows: list[tuple]) -> list[int]:
        """Record insertions in ONE transaction (group commit): all are stored, or none and it raises."""
        with self.ledger.transaction():
            return [self.ledger.add_insertion(*row) for row in rows]

    def tag(self, text: str, owner: str, document: str | None) -> dict[str, Any]:
        """prepare + commit for one text: the insertion is in the ledger when this returns."""
        reply, row = self.prepare(text, owner, document)
        if row is not None:
            reply["insertion"] = self.commit([row])[0]
        return reply

    def check(self, identifier: str, replies: list[str], alpha: float, ks: list[int] | None) -> dict[str, Any]:
        from ghostsent.detection.session import check_recorded

        if self.ledger.find(identifier) is None:
            raise _NotFound(f"unknown identifier {identifier!r}")
        out = check_recorded(self.ledger, identifier, replies, alpha, ks or None)
        best = min(out.result.records, key=lambda r: r.p_value)
        # the numbers only: no ghost text or held-out words go back over the wire
        return {"identifier": out.identifier_id, "detected": out.detected, "p_value": out.result.p_value,
                "p_history": out.p_history, "test_number": out.test_number, "alpha": alpha,
                "tail_words": out.tail_words, "revealed_words": out.revealed, "best_matches": best.matches,
                "replies": len(replies), "run_id": out.run_id}

    def identifiers(self, owner: str, reveal: bool) -> list[dict[str, Any]]:
        from ghostsent.ledger.commitments import identifier_commitment
        from ghostsent.names import normalise_owner

        if reveal and not self.config.allow_reveal:
            raise _Forbidden("this server was started without allowing passphrases to be revealed")
        out = []
        for ident in self.ledger.identifiers(normalise_owner(owner)):
            d = ident.to_dict() if reveal else {k: v for k, v in ident.to_dict().items() if k not in ("text", "words")}
            out.append(d | {"commitment": identifier_commitment(ident)})
        return out


class _NotFound(GhostsentError):
    pass


class _Forbidden(GhostsentError):
    pass


class LedgerWorker:
    """All ledger work of one server process on ONE thread (a ledger connection belongs to its thread),
    so the event loop keeps reading requests while the ledger waits on the disk or the database.

    Group commit: insertions of requests that arrive while a commit is running wait for the next one
    and share its transaction. Each request's reply is sent only after the commit holding its
    insertion returned; if a commit fails, every request in it gets the error and none is acknowledged."""

    def __init__(self, config: ServiceConfig) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ghostsent-ledger")
        self._asyncio = asyncio
        self._pending: list[tuple[tuple, Any]] = []
        self._flushing = False
        self.service: Service = self._pool.submit(self._open, config).result()  # errors surface at start

    @staticmethod
    def _open(config: ServiceConfig) -> Service:
        from ghostsent.ledger import open_ledger

        return Service(config, open_ledger(config.ledger, create=True, timeout=config.timeout))

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def tag(self, text: str, owner: str, document: str | None) -> dict[str, Any]:
        reply, row = await self.run(self.service.prepare, text, owner, document)
        if row is not None:
            fut = self._asyncio.get_running_loop().create_future()
            self._pending.append((row, fut))
            if not self._flushing:
                self._flushing = True
                self._asyncio.ensure_future(self._flush())
            reply["insertion"] = await fut
        return reply

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    ids = await self.run(self.service.commit, [row for row, _ in batch])
                except Exception as e:  # noqa: BLE001 — handed to every waiting request
                    for _, fut in batch:
                        fut.done() or fut.set_exception(e)
                    continue
                for (_, fut), n in zip(batch, ids):
                    fut.done() or fut.set_result(n)
        finally:
            self._flushing = False

    def close(self) -> None:
        self._pool.submit(self.service.ledger.close).result()
        self._pool.shutdown()


def _status(e: Exception) -> int:
    if isinstance(e, _NotFound):
        return 404
    if isinstance(e, _Forbidden):
        return 403
    if isinstance(e, InputError):
        return 400
    if isinstance(e, LedgerError):
        return 503  # locked, unreachable or full: the client may retry; nothing was recorded
    return 500


def create_app(config: ServiceConfig, token: str) -> Any:
    """The ASGI application: FastAPI routes inside the Guard."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException
    from pydantic import BaseModel, Field

    config.validate()
    worker = LedgerWorker(config)  # opens (creates, migrates) the ledger now: a bad --ledger fails at start

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        worker.close()

    app = FastAPI(title="ghostsent", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    class TagIn(BaseModel):
        text: str
        owner: str
        document: str | None = Field(default=None, max_length=4096)

    class CheckIn(BaseModel):
        identifier: str = Field(max_length=64)
        replies: list[str] = Field(min_length=1, max_length=config.max_replies)
        alpha: float = Field(default=1e-3, gt=0, le=1)
        k: list[int] | None = None

    @app.exception_handler(GhostsentError)
    async def _ghostsent_error(request: Any, e: GhostsentError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=_status(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Any, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        if first.get("type") == "json_invalid":
            return JSONResponse({"error": "the body is not valid JSON"}, status_code=422)
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or "body"
        return JSONResponse({"error": f"field {where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Any, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _internal(request: Any, e: Exception) -> JSONResponse:
        return JSONResponse({"error": "internal error"}, status_code=500)

    @app.post("/tag")
    async def tag(body: TagIn) -> dict:
        return await worker.tag(body.text, body.owner, body.document)

    @app.post("/check")
    async def check(body: CheckIn) -> dict:
        return await worker.run(worker.service.check, body.identifier, body.replies, body.alpha, body.k)

    @app.get("/identifiers/{owner}")
    async def identifiers(owner: str, reveal: bool = False) -> list:
        return await worker.run(worker.service.identifiers, owner, reveal)

    return Guard(app, token, config.max_bytes)


def app_from_env() -> Any:
    """The app of one uvicorn worker process: settings from $GHOSTSENT_SERVE_CONFIG, the token from
    $GHOSTSENT_SERVE_TOKEN."""
    return create_app(ServiceConfig(**json.loads(os.environ[CONFIG_ENV])), token_from_env())


LOG_CONFIG: dict[str, Any] = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {"ghostsent.serve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False}},
}


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8790, workers: int = 1) -> None:
    """Run the service with uvicorn until interrupted. The token must be in $GHOSTSENT_SERVE_TOKEN."""
    import importlib.util

    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise InputError("ghostsent serve needs FastAPI and uvicorn: pip install 'ghostsent[serve]'")
    import uvicorn

    token_from_env()
    config.validate()
    os.environ[CONFIG_ENV] = json.dumps(asdict(config))
    from ghostsent.ledger import open_ledger

    with open_ledger(config.ledger, create=True, timeout=config.timeout):
        pass  # a bad --ledger fails here, as one line, before any worker starts
    uvicorn.run("ghostsent.serve.service:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_config=LOG_CONFIG, access_log=False, server_header=False)
