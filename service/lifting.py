"""The delegation chain of the original: heavyLifting -> A -> B -> C, traced and measured.

The arithmetic lives in ``compute.py``; here it is run off the event loop, timed, counted and
wrapped in nested spans.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from opentelemetry.trace import Span, Tracer

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

from service.compute import highest_prime_below, leibniz_blocks, leibniz_chunks, leibniz_sum
from service.metrics import Metrics
from service.params import Query

T = TypeVar("T")
log = logging.getLogger(__name__)
_INT64_MAX = 2**63 - 1
# Where each method's CPU work runs. Handing work to a thread costs a request about 0.15 ms, so
# work known to take less than about 0.1 ms runs on the event loop: method A below 2^32 (at most
# about 0.1 ms measured), method C below INLINE_TERMS terms (about 0.09 ms). Up to
# PROCESS_THRESHOLD terms method C takes a few milliseconds and runs in a thread. Above it, a
# thread would hold the GIL long enough to stall the event loop (and /healthz), so the chunks
# go to worker processes.
INLINE_IN = 2**32
INLINE_TERMS = 2_000
PROCESS_THRESHOLD = 100_000


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group; only the server decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _attribute(value: int) -> int | str:
    """Span attributes are 64-bit integers in most exporters: larger values go as text."""
    return value if value <= _INT64_MAX else str(value)


@dataclass
class Outcome:
    """What the three methods computed, and how long each spent on its own work."""

    query: Query
    highest_prime: int = 0
    napped: int = 0
    pi: float = 0.0
    workers: int = 0
    durations: dict[str, float] = field(default_factory=dict)


class Lifting:
    """Runs the chain's CPU work off the event loop unless it is tiny, naps on the loop.

    Tiny work (see INLINE_IN, INLINE_TERMS) runs in place; short CPU work goes to a pool of
    ``workers`` threads; large sums of method C to a pool of ``workers`` processes, started on
    first use from a fork server that has loaded only ``service.compute``.
    """

    def __init__(self, tracer: Tracer, metrics: Metrics, workers: int) -> None:
        self._tracer = tracer
        self._metrics = metrics
        self._workers = workers
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lifting")
        self._processes: ProcessPoolExecutor | None = None
        self._processes_lock = asyncio.Lock()

    def _start_processes(self) -> ProcessPoolExecutor:
        # Imported on first use: start-up (scale from zero) does not pay for multiprocessing.
        import multiprocessing  # noqa: PLC0415
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["service.compute"])
        pool = ProcessPoolExecutor(
            max_workers=self._workers, mp_context=context, initializer=_worker_init
        )
        # Start every worker now, in this thread: starting one blocks on the fork server.
        list(pool.map(abs, range(self._workers)))
        return pool

    async def _process_pool(self) -> ProcessPoolExecutor:
        async with self._processes_lock:
            if self._processes is None:
                self._processes = await asyncio.to_thread(self._start_processes)
        return self._processes

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        if self._processes is not None:
            self._processes.shutdown(wait=True)

    async def _sum_in(self, pool: Executor, chunks: list[range]) -> list[list[float]]:
        return await asyncio.gather(
            *(self._offload(leibniz_blocks, c.start, c.stop, pool=pool) for c in chunks)
        )

    async def _sum_in_processes(self, chunks: list[range]) -> list[list[float]]:
        """The chunks in worker processes. A worker that died (killed, out of memory) breaks the
        whole pool for good: a new pool is started and the sum tried once more."""
        from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

        pool = await self._process_pool()
        try:
            return await self._sum_in(pool, chunks)
        except BrokenProcessPool:
            log.warning("a worker process of method C died; starting new workers")
            await self._replace_processes(pool)
            return await self._sum_in(await self._process_pool(), chunks)

    async def _replace_processes(self, broken: ProcessPoolExecutor) -> None:
        async with self._processes_lock:
            if self._processes is broken:  # not already replaced by a concurrent request
                self._processes = None
                broken.shutdown(wait=False, cancel_futures=True)

    async def _offload(
        self, fn: Callable[..., T], *args: object, pool: Executor | None = None
    ) -> T:
        executor = pool or self._threads
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    @contextmanager
    def _method(self, name: str, **attributes: int) -> Iterator[Span]:
        self._metrics.calls.labels(name).inc()
        with self._tracer.start_as_current_span(
            name, attributes={f"app.{k}": _attribute(v) for k, v in attributes.items()}
        ) as span:
            yield span

    def _timed(self, name: str, outcome: Outcome, started: float) -> None:
        elapsed = time.perf_counter() - started
        outcome.durations[name] = elapsed
        self._metrics.duration.labels(name).observe(elapsed)

    async def heavy_lifting(self, query: Query) -> Outcome:
        """heavyLifting: delegates to method A and returns what the chain computed."""
        outcome = Outcome(query=query)
        started = time.perf_counter()
        with self._method(
            "heavyLifting", **{"in": query.in_}, nap=query.nap, processes=query.processes
        ):
            await self._method_a(outcome)
        self._timed("heavyLifting", outcome, started)
        return outcome

    async def _method_a(self, outcome: Outcome) -> None:
        with self._method("heavyweightMethodA", **{"in": outcome.query.in_}) as span:
            started = time.perf_counter()
            n = outcome.query.in_
            outcome.highest_prime = (
                highest_prime_below(n)
                if n < INLINE_IN
                else await self._offload(highest_prime_below, n)
            )
            self._timed("heavyweightMethodA", outcome, started)
            span.set_attribute("app.highest_prime", _attribute(outcome.highest_prime))
            await self._method_b(outcome)

    async def _method_b(self, outcome: Outcome) -> None:
        with self._method("heavyweightMethodB", nap=outcome.query.nap) as span:
            started = time.perf_counter()
            await asyncio.sleep(outcome.query.nap)
            outcome.napped = outcome.query.nap
            self._timed("heavyweightMethodB", outcome, started)
            span.set_attribute("app.napped_seconds", outcome.napped)
            await self._method_c(outcome)

    async def _method_c(self, outcome: Outcome) -> None:
        processes = outcome.query.processes
        with self._method("heavyweightMethodC", processes=processes) as span:
            started = time.perf_counter()
            chunks = leibniz_chunks(processes, self._workers)
            if processes < INLINE_TERMS:
                outcome.pi = leibniz_sum(processes, leibniz_blocks(0, processes + 1))
            else:
                if processes < PROCESS_THRESHOLD:
                    per_chunk = await self._sum_in(self._threads, chunks)
                else:
                    per_chunk = await self._sum_in_processes(chunks)
                sums = [s for chunk in per_chunk for s in chunk]
                # Usually a few microseconds; a block or two more where a sum needs them.
                outcome.pi = await self._offload(leibniz_sum, processes, sums)
            outcome.workers = len(chunks)
            self._timed("heavyweightMethodC", outcome, started)
            span.set_attribute("app.pi", outcome.pi)
            span.set_attribute("app.workers", outcome.workers)
