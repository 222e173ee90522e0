"""Where the chain's CPU work runs: tiny work in place, the rest off the event loop."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable

import pytest
from opentelemetry.trace import NoOpTracer

import service.lifting
from service.compute import highest_prime_below, leibniz_chunk
from service.lifting import INLINE_IN, INLINE_TERMS, Lifting, Outcome
from service.metrics import Metrics
from service.params import Query


@pytest.fixture
def threads_used(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """The names of the threads each compute function ran in (the real functions still run)."""
    seen: dict[str, set[str]] = {"A": set(), "C": set()}

    def recording(key: str, fn: Callable[..., object]) -> Callable[..., object]:
        def run(*args: int) -> object:
            seen[key].add(threading.current_thread().name)
            return fn(*args)

        return run

    monkeypatch.setattr(service.lifting, "highest_prime_below", recording("A", highest_prime_below))
    monkeypatch.setattr(service.lifting, "leibniz_chunk", recording("C", leibniz_chunk))
    return seen


def _run(query: Query) -> Outcome:
    async def chain() -> Outcome:
        lifting = Lifting(NoOpTracer(), Metrics(), workers=2)
        try:
            return await lifting.heavy_lifting(query)
        finally:
            lifting.close()

    return asyncio.run(chain())


def test_tiny_work_runs_on_the_event_loop(threads_used: dict[str, set[str]]) -> None:
    outcome = _run(Query(in_=10_000, nap=0, processes=50))
    assert (outcome.highest_prime, round(outcome.pi, 6)) == (9973, 3.161199)
    loop_thread = threading.current_thread().name
    assert threads_used == {"A": {loop_thread}, "C": {loop_thread}}


def test_work_past_the_inline_bounds_runs_in_the_thread_pool(
    threads_used: dict[str, set[str]],
) -> None:
    outcome = _run(Query(in_=INLINE_IN, nap=0, processes=INLINE_TERMS))
    assert outcome.highest_prime == highest_prime_below(INLINE_IN)
    assert math.isclose(
        outcome.pi, math.fsum(4 * (-1) ** k / (2 * k + 1) for k in range(INLINE_TERMS + 1))
    )
    for names in threads_used.values():
        assert len(names) == 1
        assert next(iter(names)).startswith("lifting")
