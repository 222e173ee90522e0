"""Where the chain's CPU work runs: tiny work in place, the rest off the event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable

import pytest
import sympy
from opentelemetry.trace import NoOpTracer

import service.lifting
from service.compute import highest_prime_below, leibniz_blocks
from service.lifting import INLINE_IN, INLINE_TERMS, PROCESS_THRESHOLD, Lifting, Outcome
from service.metrics import Metrics
from service.params import Query
from tests.utils import leibniz_reference


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
    monkeypatch.setattr(service.lifting, "leibniz_blocks", recording("C", leibniz_blocks))
    return seen


def _run(query: Query, workers: int = 2) -> Outcome:
    async def chain() -> Outcome:
        lifting = Lifting(NoOpTracer(), Metrics(), workers=workers)
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
    assert outcome.highest_prime == sympy.prevprime(INLINE_IN) == 2**32 - 5
    assert outcome.pi == leibniz_reference(INLINE_TERMS)
    for names in threads_used.values():
        assert len(names) == 1
        assert next(iter(names)).startswith("lifting")


@pytest.mark.parametrize(
    "processes", [INLINE_TERMS - 1, INLINE_TERMS, PROCESS_THRESHOLD - 1, PROCESS_THRESHOLD, 200_000]
)
def test_method_c_is_the_same_bits_in_every_pool_and_for_any_workers(processes: int) -> None:
    expected = leibniz_reference(processes).hex()
    for workers in (1, 2, 3):
        assert _run(Query(in_=10, nap=0, processes=processes), workers).pi.hex() == expected


def test_a_killed_worker_process_is_replaced_and_the_sum_still_answered() -> None:
    async def scenario() -> tuple[float, float]:
        lifting = Lifting(NoOpTracer(), Metrics(), workers=2)
        try:
            query = Query(in_=10, nap=0, processes=200_000)
            first = await lifting.heavy_lifting(query)
            pool = lifting._processes
            assert pool is not None
            victim = next(iter(pool._processes.values()))  # a worker to kill
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(10)
            second = await lifting.heavy_lifting(query)
            assert lifting._processes is not pool, "the broken pool is replaced"
            return first.pi, second.pi
        finally:
            lifting.close()

    first, second = asyncio.run(scenario())
    assert first == second == leibniz_reference(200_000)
