"""The load generator's engine, after hey's requester: a plain Work, workers, one Result each.

Every run is bounded: by a request count (``n``) or a duration (``duration``), whichever is set,
and by ``stop`` (Ctrl-C), after which the requests in flight finish and the run ends. A request
in flight is cancelled (and reported so) by ``abort`` (a second Ctrl-C), and, when requests
have no timeout, at the end of a duration.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Work:
    """What to send, how often, how hard. As in hey, ``qps`` is per worker, ``timeout`` 0 none."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    host: str | None = None
    n: int = 200
    concurrency: int = 50
    qps: float = 0.0
    duration: float = 0.0
    timeout: float = 20.0


@dataclass(frozen=True)
class Result:
    """One request: when it started (seconds from the run's start), how long it took."""

    start: float
    duration: float
    status: int | None = None
    error: str | None = None
    size: int = 0


@dataclass
class Run:
    """The results so far; the progress line and Ctrl-C read it while workers add to it."""

    work: Work
    results: list[Result] = field(default_factory=list)
    started: float = 0.0
    elapsed: float = 0.0
    issued: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # no new request
    aborted: asyncio.Event = field(default_factory=asyncio.Event)  # none in flight either
    abort_reason: str = ""

    def abort(self, reason: str) -> None:
        """Cancel the requests in flight, each reported with REASON; no new one is sent."""
        if not self.aborted.is_set():
            self.abort_reason = reason
        self.stop.set()
        self.aborted.set()

    def next_ticket(self, deadline: float | None) -> bool:
        """May a worker send one more request? Exact for ``n``, bounded by the deadline."""
        if self.stop.is_set():
            return False
        if deadline is not None:
            return time.perf_counter() < deadline
        if self.issued >= self.work.n:
            return False
        self.issued += 1
        return True


def why_unanswered(error: BaseException, timeout: float) -> str:
    """Why a request got no answer, in a few words."""
    if isinstance(error, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        cause = error.certificate_error
        return f"TLS: certificate verify failed: {getattr(cause, 'verify_message', '') or cause}"
    if isinstance(error, aiohttp.ClientSSLError):
        return f"TLS: {getattr(error.os_error, 'reason', '') or error.os_error}"
    if isinstance(error, aiohttp.ClientConnectorError):
        code = error.os_error.errno
        return os.strerror(code).lower() if code else str(error.os_error)
    return f"{type(error).__name__}: {error}".rstrip(": ")


async def _worker(run: Run, session: aiohttp.ClientSession, deadline: float | None) -> None:
    work = run.work
    interval = 1.0 / work.qps if work.qps > 0 else 0.0
    headers = dict(work.headers)
    if work.host:
        headers["Host"] = work.host
    sent = 0
    while run.next_ticket(deadline):
        if interval:
            wait = run.started + sent * interval - time.perf_counter()
            if wait > 0:
                try:
                    await asyncio.wait_for(run.stop.wait(), wait)
                    return
                except TimeoutError:
                    pass
            if deadline is not None and time.perf_counter() >= deadline:
                return
        sent += 1
        begin = time.perf_counter()
        try:
            async with session.request(work.method, work.url, headers=headers) as response:
                body = await response.read()
            result = Result(
                begin - run.started, time.perf_counter() - begin, response.status, None, len(body)
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            why = f'{work.method} "{work.url}": {why_unanswered(error, work.timeout)}'
            result = Result(begin - run.started, time.perf_counter() - begin, None, why)
        except asyncio.CancelledError:
            why = f'{work.method} "{work.url}": {run.abort_reason or "cancelled"}'
            run.results.append(Result(begin - run.started, time.perf_counter() - begin, None, why))
            raise
        run.results.append(result)


async def execute(run: Run, on_tick: Callable[[Run], None] | None = None) -> Run:
    """Send the run's requests with ``concurrency`` workers over one keep-alive pool."""
    work = run.work
    timeout = aiohttp.ClientTimeout(total=work.timeout or None)
    connector = aiohttp.TCPConnector(limit=work.concurrency, ttl_dns_cache=300)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    ) as session:
        run.started = time.perf_counter()
        deadline = run.started + work.duration if work.duration > 0 else None
        workers = [
            asyncio.create_task(_worker(run, session, deadline)) for _ in range(work.concurrency)
        ]
        ticker = asyncio.create_task(_tick(run, on_tick)) if on_tick else None
        if deadline is not None and not work.timeout:
            # Nothing else would end a request to a server that never answers.
            timer = asyncio.get_running_loop().call_at(
                asyncio.get_running_loop().time() + work.duration,
                run.abort, "cancelled at the end of the run (-t 0: no timeout)",
            )  # fmt: skip
        all_done = asyncio.gather(*workers)
        aborted = asyncio.create_task(run.aborted.wait())
        ends: set[asyncio.Future[Any]] = {all_done, aborted}
        await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        aborted.cancel()
        if deadline is not None and not work.timeout:
            timer.cancel()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(all_done, aborted, return_exceptions=True)
        run.elapsed = time.perf_counter() - run.started
        if ticker:
            ticker.cancel()
    return run


async def _tick(run: Run, on_tick: Callable[[Run], None]) -> None:
    while True:
        await asyncio.sleep(0.25)
        run.elapsed = time.perf_counter() - run.started
        on_tick(run)
