"""Dynamic batching: requests that wait while the model is busy run together as one
`session.run`, and each gets exactly its own rows back.

As Triton's dynamic batcher with its default queue delay of 0: a request that finds a runner
free runs at once (no latency is added at one client); requests that queue up behind a busy
model are joined, up to BATCH_MAX_SIZE rows, and BATCH_MAX_DELAY_MS (default 0) lets a runner
wait that long for more. Only requests whose inputs agree beyond the first dimension (and which
ask for the same outputs) are joined. If a joined run fails, each of its requests runs alone,
so one client's bad data is reported to that client only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(eq=False)  # identity: the queue removes exactly this request (its arrays have no ==)
class _Pending:
    feeds: dict[str, np.ndarray]
    wanted: tuple[str, ...]
    rows: int
    key: tuple
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


def batchable(inputs: list[Any], outputs: list[Any]) -> bool:
    """Every input and output has a free first dimension: rows can be joined and split."""
    return all(t.shape and t.shape[0] is None for t in [*inputs, *outputs])


class Batcher:
    """`await infer(feeds, wanted)`. `run(feeds, wanted)` is the (thread-safe) model call, made by
    `runners` tasks through `to_thread`; `on_batch(rows, requests)` and `on_queue(seconds)`
    feed the metrics."""

    def __init__(
        self,
        run: Callable[[dict[str, np.ndarray], list[str] | None], dict[str, np.ndarray]],
        to_thread: Callable[..., Any],
        max_rows: int,
        max_delay_s: float = 0.0,
        runners: int = 1,
        on_batch: Callable[[int, int], None] | None = None,
        on_queue: Callable[[float], None] | None = None,
    ) -> None:
        self.run, self.to_thread = run, to_thread
        self.max_rows, self.max_delay_s = max(1, max_rows), max(0.0, max_delay_s)
        self.runners = max(1, runners)
        self.on_batch = on_batch or (lambda rows, requests: None)
        self.on_queue = on_queue or (lambda seconds: None)
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        """Start the runner tasks (in the serving event loop)."""
        self._wake = asyncio.Event()
        self._tasks = [asyncio.create_task(self._runner()) for _ in range(self.runners)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def infer(
        self, feeds: dict[str, np.ndarray], wanted: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        rows = {int(a.shape[0]) for a in feeds.values() if a.ndim}
        if len(rows) != 1 or not self._tasks:  # no common first dimension: as it is
            return await self.to_thread(self.run, feeds, wanted)
        key = (
            tuple(sorted((k, a.dtype.str, a.shape[1:]) for k, a in feeds.items())),
            tuple(wanted or ()),
        )
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(feeds, tuple(wanted or ()), rows.pop(), key, future))
        assert self._wake is not None
        self._wake.set()
        return await future

    def _join(self, batch: list[_Pending]) -> None:
        """Move the queued requests that fit `batch` (same key, rows to spare) into it."""
        rows = sum(p.rows for p in batch)
        for item in list(self._queue):
            if rows >= self.max_rows:
                break
            if item.key == batch[0].key and rows + item.rows <= self.max_rows:
                self._queue.remove(item)
                batch.append(item)
                rows += item.rows

    async def _runner(self) -> None:
        assert self._wake is not None
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            batch = [self._queue.popleft()]
            self._join(batch)
            try:
                if self.max_delay_s and sum(p.rows for p in batch) < self.max_rows:
                    await asyncio.sleep(self.max_delay_s)  # let more arrive, then take them too
                    self._join(batch)
                await self._run(batch)
            except Exception as exc:  # a bug here must not leave its requests waiting forever
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
            if self._queue:
                self._wake.set()

    async def _run(self, batch: list[_Pending]) -> None:
        batch = [p for p in batch if not p.future.done()]  # clients that went away
        if not batch:
            return
        now = time.perf_counter()
        for p in batch:
            self.on_queue(now - p.queued)
        total = sum(p.rows for p in batch)
        self.on_batch(total, len(batch))
        if len(batch) == 1:
            await self._run_alone(batch[0])
            return
        joined = {n: np.concatenate([p.feeds[n] for p in batch]) for n in batch[0].feeds}
        try:
            results = await self.to_thread(self.run, joined, list(batch[0].wanted) or None)
            if any(len(v) != total for v in results.values()):  # rows that cannot be split
                raise ValueError("an output's first dimension is not the batch")
        except Exception:
            for p in batch:  # each alone: an error goes to the request that caused it
                await self._run_alone(p)
            return
        start = 0
        for p in batch:
            mine = {k: v[start : start + p.rows] for k, v in results.items()}
            start += p.rows
            if not p.future.done():
                p.future.set_result(mine)

    async def _run_alone(self, p: _Pending) -> None:
        try:
            result = await self.to_thread(self.run, p.feeds, list(p.wanted) or None)
        except Exception as exc:
            if not p.future.done():
                p.future.set_exception(exc)
            return
        if not p.future.done():
            p.future.set_result(result)
