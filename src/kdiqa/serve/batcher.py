"""Micro-batching: concurrent requests' views go through the model together, on one model thread.

A job is one image's views (V, 3, H, W). The worker takes the first waiting job, then keeps collecting
for up to ``wait_ms`` or until ``max_batch`` views are waiting; the collected jobs run through
:func:`~kdiqa.runtime.predictor.predict_views` (views of equal size share a forward, at most ``max_batch``
per forward) on a single thread, so the model is used by one thread only and the event loop never blocks.

Admission is separate (:meth:`MicroBatcher.admit`): at most ``max_queue`` images are in the service at a
time, from upload to answer; beyond that a request is refused (:class:`ServiceBusy`, HTTP 503).
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..runtime.predictor import predict_views


class ServiceBusy(Exception):
    """The service already holds ``max_queue`` images."""


@dataclass
class BatchStats:
    forwards: int = 0  # calls of the worker (each may hold several equal-size forwards)
    jobs: int = 0
    views: int = 0
    largest: int = 0  # the most jobs served by one worker call

    def to_json(self) -> dict:
        return {
            "batches": self.forwards,
            "jobs": self.jobs,
            "views": self.views,
            "jobs_per_batch": round(self.jobs / self.forwards, 3) if self.forwards else 0.0,
            "largest_batch_jobs": self.largest,
        }


@dataclass
class _Job:
    views: np.ndarray
    future: asyncio.Future


class MicroBatcher:
    """Runs ``backend.predict`` on batches gathered from concurrent callers of :meth:`predict`.

    Args:
        backend: a :class:`~kdiqa.runtime.predictor.Backend`.
        max_batch: views per forward pass (1: no micro-batching).
        wait_ms: how long the first job of a batch waits for company.
        max_queue: images admitted at a time (:meth:`admit`).
    """

    def __init__(self, backend, max_batch: int = 16, wait_ms: float = 5.0, max_queue: int = 64) -> None:
        if max_batch < 1 or max_queue < 1 or wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and wait_ms >= 0")
        self.backend = backend
        self.max_batch, self.wait_s, self.max_queue = max_batch, wait_ms / 1000.0, max_queue
        self.in_flight = 0
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kdiqa-model")
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._executor:
            self._executor.shutdown(wait=True)

    @contextlib.contextmanager
    def admit(self, n: int):
        """Holds ``n`` of the ``max_queue`` places while a request is served; :class:`ServiceBusy` if full."""
        if self.in_flight + n > self.max_queue:
            raise ServiceBusy(f"the service is busy ({self.in_flight} of {self.max_queue} places taken); retry later")
        self.in_flight += n
        try:
            yield
        finally:
            self.in_flight -= n

    async def predict(self, views: np.ndarray) -> np.ndarray:
        """Normalised scores of one job's views (V,), computed in a shared batch."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(views, fut))
        return await fut

    async def _collect(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        n = len(jobs[0].views)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while n < self.max_batch:
            left = deadline - loop.time()
            try:
                job = self._queue.get_nowait() if left <= 0 else await asyncio.wait_for(self._queue.get(), left)
            except (asyncio.QueueEmpty, TimeoutError):
                break
            jobs.append(job)
            n += len(job.views)
        return [j for j in jobs if not j.future.done()]  # callers that timed out are dropped

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            if not jobs:
                continue
            items = [(i, j.views) for i, j in enumerate(jobs)]
            try:
                out = await loop.run_in_executor(self._executor, predict_views, self.backend, items, self.max_batch)
            except Exception as exc:  # the model failed: every caller of this batch gets the error
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
                continue
            self.stats.forwards += 1
            self.stats.jobs += len(jobs)
            self.stats.views += sum(len(j.views) for j in jobs)
            self.stats.largest = max(self.stats.largest, len(jobs))
            for i, j in enumerate(jobs):
                if not j.future.done():
                    j.future.set_result(out[i])
