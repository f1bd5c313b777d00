"""The HTTP service of ``ner serve`` (FastAPI on uvicorn): ``POST /tag``, ``GET /health`` and a page at ``GET /``.

``POST /tag`` takes ``{"text": "..."}`` or ``{"texts": ["...", ...]}``, optionally with ``"min_score": P``, and
answers with the records of ``ner tag``: ``{"text": "...", "entities": [{"start", "end", "type", "text",
"score"}]}`` for a text, ``{"records": [...]}`` (one per text, in order) for a list. Offsets are Python string
offsets (code points) into each text; a text is one document, whatever else is tagged in its batch.

Bad input gets a status and ``{"detail": "one line"}``, never a crash: a body over ``max_body_bytes``,
more than ``max_texts`` texts or a text over ``max_text_chars`` characters 413; malformed JSON 400; another
shape or type 422; a full queue 503 (``ner/serve/limits.py``).
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from ner.data.schemes import tag_type
from ner.entities import tag_texts
from ner.errors import NerError
from ner.model import Tagger
from ner.serve.batcher import Busy, MicroBatcher, Stopped
from ner.serve.limits import Limits
from ner.web import service_page

try:
    import uvicorn
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, Response
except ModuleNotFoundError as missing:
    raise NerError(
        f"`ner serve` needs the serve extra ({missing.name} is not installed): pip install 'ner[serve]'"
    ) from None

JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
KEYS = ("text", "texts", "min_score")
DEFAULT_LIMITS = Limits()


def entity_types(tagger: Tagger) -> list[str]:
    """The entity types the tagger knows, sorted."""
    return sorted({tag_type(tag) for tag in tagger.tags.items} - {None})


def create_app(tagger: Tagger, limits: Limits = DEFAULT_LIMITS, name: str = "model") -> FastAPI:
    """The service for ``tagger`` (``name`` is shown by ``/health`` and the page); its batcher starts and stops
    with the app (the framework's lifespan)."""
    batcher = MicroBatcher(
        partial(tag_texts, tagger, batch_size=limits.batch_size),
        limits.batch_texts,
        limits.batch_wait_ms / 1000,
        limits.max_queue,
    )
    types = entity_types(tagger)
    page = service_page()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="ner", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": name,
            "types": types,
            "waiting": batcher.waiting,
            "batches": batcher.batches,
            "texts": batcher.texts,
        }

    @app.post("/tag")
    async def tag(request: Request) -> Response:
        texts, several, min_score = parse_request(await _read_body(request, limits.max_body_bytes), limits)
        try:
            entities = await batcher.submit(texts) if texts else []
        except Busy as error:
            raise HTTPException(503, f"busy: {error}; try again shortly") from None
        except Stopped as error:
            raise HTTPException(503, str(error)) from None
        except Exception as error:  # whatever broke the batch: this request fails, the service goes on
            raise HTTPException(500, f"tagging failed: {type(error).__name__}: {error}") from None
        # a batch mixes requests of different min_score: each keeps its own entities here
        records = [
            {"text": text, "entities": [e for e in found if e["score"] >= min_score]}
            for text, found in zip(texts, entities)
        ]
        body = {"records": records} if several else records[0]
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {declared} bytes: the limit is {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body over {limit} bytes: the limit is {limit} bytes")
    return bytes(body)


def parse_request(body: bytes, limits: Limits) -> tuple[list[str], bool, float]:
    """The texts of a ``POST /tag`` body, whether it gave a list, and its ``min_score``; ``HTTPException`` (400,
    413 or 422, one line) for anything else."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise HTTPException(400, f"malformed JSON: not UTF-8 (byte {error.start}: {error.reason})") from None
    except json.JSONDecodeError as error:
        raise HTTPException(400, f"malformed JSON: {error}") from None
    except RecursionError:
        raise HTTPException(400, "malformed JSON: nested too deeply") from None
    if not isinstance(payload, dict):
        raise HTTPException(
            422, f'expected a JSON object {{"text": "..."}} or {{"texts": ["...", ...]}}, got {_json_type(payload)}'
        )
    unknown = [key for key in payload if key not in KEYS]
    if unknown:
        raise HTTPException(422, f"unknown key {unknown[0]!r}: expected text or texts, and optionally min_score")
    if ("text" in payload) == ("texts" in payload):
        raise HTTPException(422, 'expected exactly one of "text" (a string) and "texts" (a list of strings)')
    several = "texts" in payload
    texts = payload["texts"] if several else [payload["text"]]
    if not isinstance(texts, list):
        raise HTTPException(422, f"texts: expected an array of strings, got {_json_type(texts)}")
    if len(texts) > limits.max_texts:
        raise HTTPException(413, f"texts: {len(texts)} texts, more than the limit of {limits.max_texts} a request")
    for index, text in enumerate(texts):
        where = f"texts[{index}]" if several else "text"
        if not isinstance(text, str):
            raise HTTPException(422, f"{where}: expected a string, got {_json_type(text)}")
        if len(text) > limits.max_text_chars:
            raise HTTPException(413, f"{where}: {len(text)} characters, more than the limit of {limits.max_text_chars}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise HTTPException(
                422, f"{where}: lone surrogate {text[error.start]!r} at offset {error.start} (not a Unicode character)"
            ) from None
    min_score = payload.get("min_score", 0.0)
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0.0 <= min_score <= 1.0:
        raise HTTPException(422, f"min_score: expected a number in [0, 1], got {json.dumps(min_score)}")
    return texts, several, float(min_score)


def _json_type(value: object) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def listen(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A socket listening on ``host``:``port`` (port 0: any free port); ``NerError`` if that cannot be, e.g.
    the port is taken (before a model is loaded for nothing)."""
    if not 0 <= port <= 65535:
        raise NerError(f"--port: expected 0 to 65535, got {port}")
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except (OSError, OverflowError) as error:  # the port is taken, the host is not an address of this machine...
        listener.close()
        raise NerError(f"{host}:{port}: cannot listen there: {getattr(error, 'strerror', None) or error}") from None
    return listener


def run_server(tagger: Tagger, listener: socket.socket, limits: Limits = DEFAULT_LIMITS, name: str = "model") -> None:
    """Serve ``tagger`` on ``listener`` (from ``listen``) until interrupted; says where on standard error."""
    host, port = listener.getsockname()[:2]
    print(
        f"serving {name} on http://{f'[{host}]' if ':' in host else host}:{port}/ (Ctrl+C stops)",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(create_app(tagger, limits, name), log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    with listener:
        server.run(sockets=[listener])
    if server.should_exit:  # stopped by a signal, whose re-raise asyncio.run can lose in a race: same end either way
        raise KeyboardInterrupt
