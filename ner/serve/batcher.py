"""Micro-batching for ``ner serve``: the texts of concurrent requests are tagged together, in one worker thread.

Each request puts its texts on a bounded queue and waits. One asyncio task drains the queue: it takes the first
request, then more until the batch holds ``max_texts`` texts or ``max_wait`` seconds have passed since it took the
first, and runs ``tag_batch`` on all their texts in a thread of its own. The tagger is used by that one thread
only (``Tagger`` keeps a cache, and one thread is what a core gives), and the event loop keeps accepting and
answering requests while a batch is tagged. Each request then gets its own results, or the batch's error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

TagBatch = Callable[[list[str]], list[Any]]
"""Tag a list of texts, one result per text (``ner.entities.tag_texts`` with the tagger bound)."""


class Busy(Exception):
    """The queue of waiting requests is full: answer 503 and let the client come back."""


class Stopped(Exception):
    """The service stopped before the request was tagged."""


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future[list[Any]]


class MicroBatcher:
    """Batches the texts of concurrent ``submit`` calls: at most ``max_texts`` texts a batch (a request with more
    is a batch of its own), gathered for at most ``max_wait`` seconds, at most ``max_queue`` requests waiting."""

    def __init__(self, tag_batch: TagBatch, max_texts: int = 32, max_wait: float = 0.005, max_queue: int = 256) -> None:
        if max_texts < 1 or max_wait < 0 or max_queue < 1:
            raise ValueError(
                f"expected max_texts >= 1, max_wait >= 0, max_queue >= 1, got {max_texts}, {max_wait}, {max_queue}"
            )
        self.tag_batch, self.max_texts, self.max_wait, self.max_queue = tag_batch, max_texts, max_wait, max_queue
        self.batches = 0  # batches tagged so far
        self.texts = 0  # texts tagged so far
        self._queue: asyncio.Queue[_Request] | None = None
        self._held: _Request | None = None  # taken from the queue, too many texts for the batch that took it
        self._batch: list[_Request] = []  # taken from the queue, not answered yet
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def waiting(self) -> int:
        """Requests waiting for a batch."""
        return (self._queue.qsize() if self._queue else 0) + (self._held is not None)

    async def start(self) -> None:
        """Start the worker (in the running event loop)."""
        self._queue = asyncio.Queue(self.max_queue)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ner-tagger")
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the worker; the requests not answered yet get ``Stopped`` (a batch being tagged finishes in its
        thread first)."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        waiting = [*self._batch, *([self._held] if self._held else [])]
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for request in waiting:
            _fail(request, Stopped("the service is stopping"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str]) -> list[Any]:
        """The results of ``tag_batch`` for ``texts``, tagged in a batch with other requests' texts."""
        if self._queue is None or self._worker is None or self._worker.done():
            raise Stopped("the service is not running")
        request = _Request(texts, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            raise Busy(f"the queue of waiting requests is full (max-queue {self.max_queue})") from None
        return await request.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._next_batch()
            batch = self._batch = [request for request in self._batch if not request.future.done()]
            if not batch:
                continue  # every client of the batch went away
            texts = [text for request in batch for text in request.texts]
            try:
                results = await loop.run_in_executor(self._executor, self.tag_batch, texts)
                if len(results) != len(texts):
                    raise RuntimeError(f"tagging {len(texts)} texts gave {len(results)} results")
            except Exception as error:  # one bad batch must not stop the service
                log.exception("tagging a batch of %d texts failed", len(texts))
                for request in batch:
                    _fail(request, error)
                continue
            self.batches += 1
            self.texts += len(texts)
            at = 0
            for request in batch:
                if not request.future.done():
                    request.future.set_result(results[at : at + len(request.texts)])
                at += len(request.texts)
            self._batch = []

    async def _next_batch(self) -> None:
        """Wait for a request, then gather more into ``_batch`` for at most ``max_wait`` seconds, up to
        ``max_texts`` texts."""
        assert self._queue is not None
        first, self._held = self._held or await self._queue.get(), None
        self._batch, size = [first], len(first.texts)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_texts:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                request = (
                    self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
                )
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if size + len(request.texts) > self.max_texts:
                self._held = request  # first of the next batch
                break
            self._batch.append(request)
            size += len(request.texts)


def _fail(request: _Request, error: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(error)
