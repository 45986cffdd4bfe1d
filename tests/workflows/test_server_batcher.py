"""The exported server's dynamic batcher on its own: joined runs split back exactly, only
compatible requests are joined, a failing joined run reports to the request that caused it,
and a lone request never waits."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources" / "templates" / "docker"))
from server.batcher import Batcher


class Model:
    """y = 2x + row sum, per row; records the rows of every call; refuses negative input."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, feeds: dict[str, np.ndarray], wanted: list[str] | None) -> dict:
        x = feeds["x"]
        with self.lock:
            self.calls.append(len(x))
        time.sleep(self.delay)
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": 2 * x + x.sum(axis=tuple(range(1, x.ndim)), keepdims=True)}


async def to_thread(function, *args):
    return await asyncio.to_thread(function, *args)


def run(coro):
    return asyncio.run(coro)


def test_joined_runs_split_back_exactly():
    model = Model(delay=0.02)
    rng = np.random.default_rng(0)
    requests = [rng.normal(size=(int(rng.integers(1, 5)), 3)).astype(np.float32) + 5
                for _ in range(64)]  # fmt: skip

    async def main():
        batcher = Batcher(model, to_thread, max_rows=32, runners=1)
        batcher.start()
        answers = await asyncio.gather(*(batcher.infer({"x": x}) for x in requests))
        await batcher.stop()
        return answers

    answers = run(main())
    for x, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer["y"], model({"x": x}, None)["y"])
    calls = model.calls[: -len(requests)]  # the reference calls above came last
    assert sum(calls) == sum(len(x) for x in requests)
    assert len(calls) < len(requests) / 4, calls  # joined, not one run per request
    assert max(calls) <= 32


def test_only_matching_requests_are_joined_and_errors_stay_with_their_request():
    model = Model(delay=0.02)

    async def main():
        batcher = Batcher(model, to_thread, max_rows=64, runners=1)
        batcher.start()
        good = [np.full((2, 3), i + 1, np.float32) for i in range(8)]
        other = [np.ones((1, 4), np.float32) for _ in range(4)]  # another shape: not joined
        bad = np.full((1, 3), -1, np.float32)
        tasks = [batcher.infer({"x": x}) for x in [*good, bad, *other]]
        answers = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.stop()
        return good, other, answers

    good, other, answers = run(main())
    for x, answer in zip(good, answers[:8], strict=True):
        np.testing.assert_array_equal(answer["y"], 2 * x + x.sum(axis=1, keepdims=True))
    assert isinstance(answers[8], ValueError) and "negative" in str(answers[8])
    for x, answer in zip(other, answers[9:], strict=True):
        np.testing.assert_array_equal(answer["y"], 2 * x + 4)


def test_a_lone_request_does_not_wait_and_the_delay_gathers_more():
    model = Model()

    async def lone(delay_ms: float) -> float:
        batcher = Batcher(model, to_thread, max_rows=32, max_delay_s=delay_ms / 1000)
        batcher.start()
        await batcher.infer({"x": np.ones((1, 3), np.float32)})  # warm the thread pool
        started = time.perf_counter()
        await batcher.infer({"x": np.ones((1, 3), np.float32)})
        took = time.perf_counter() - started
        await batcher.stop()
        return took

    assert run(lone(0)) < 0.02
    assert run(lone(50)) >= 0.05  # a delay is what a lone request pays, and no more

    async def staggered():
        batcher = Batcher(model, to_thread, max_rows=32, max_delay_s=0.05)
        batcher.start()

        async def later(i: int):
            await asyncio.sleep(0.005 * i)
            return await batcher.infer({"x": np.full((1, 3), i + 1, np.float32)})

        await asyncio.gather(*(later(i) for i in range(5)))
        await batcher.stop()

    model.calls.clear()
    run(staggered())
    assert model.calls == [5]  # arriving within the delay, they ran as one


@pytest.mark.parametrize("rows", [0, 3])
def test_requests_without_a_common_first_dimension_run_as_they_are(rows):
    model = Model()

    async def main():
        batcher = Batcher(model, to_thread, max_rows=32)
        batcher.start()
        feeds = {"x": np.ones((2, 3), np.float32), "z": np.ones((rows, 3), np.float32)}
        try:
            return await batcher.infer(feeds)
        finally:
            await batcher.stop()

    assert run(main())["y"].shape == (2, 3)
