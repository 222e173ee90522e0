"""Soak: 60 s of mixed valid and invalid requests at c=11 against real uvicorn."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import aiohttp

from tests.soak.procfs import tree_rss_bytes
from tests.utils import run_service

DURATION = 60.0
WARM_UP = 5.0
CONCURRENCY = 11
PATHS = [
    "/?in=10000&nap=0&processes=50",
    "/?in=100000&nap=0&processes=5000",
    "/?in=9223372036854775807&nap=0&processes=200000",  # worker processes
    "/?in=abc&nap=0&processes=5",
    "/?in=10&nap=11&processes=5",
    "/?in=10&nap=0",
    "/?in=1&in=2&nap=0&processes=1",
    "/?in=" + "9" * 3000 + "&nap=0&processes=1",
    "/?format=json",
    "/healthz",
    "/metrics",
    "/nowhere",
]


async def _soak(url: str, pid: int) -> tuple[Counter[int], Counter[str], int, int]:
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    paths = itertools.cycle(PATHS)
    deadline = time.perf_counter() + DURATION
    rss_after_warm_up = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            try:
                async with session.get(url + next(paths)) as response:
                    await response.read()
                    statuses[response.status] += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                errors[type(error).__name__] += 1

    async def sample_memory() -> None:
        nonlocal rss_after_warm_up
        await asyncio.sleep(WARM_UP)
        rss_after_warm_up = tree_rss_bytes(pid)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(sample_memory(), *(worker(session) for _ in range(CONCURRENCY)))
    return statuses, errors, rss_after_warm_up, tree_rss_bytes(pid)


def test_soak_has_no_5xx_no_connection_errors_and_flat_memory() -> None:
    with run_service() as svc:
        statuses, errors, early, late = asyncio.run(_soak(svc.url, svc.process.pid))
        code, stderr = svc.stop()
    assert sum(statuses.values()) > 1000
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) == {200, 400, 404}, statuses
    assert errors == Counter(), errors
    assert late <= early * 1.10, f"RSS grew from {early / 1e6:.1f} MB to {late / 1e6:.1f} MB"
    assert code == 0, stderr
    assert "Traceback" not in stderr
