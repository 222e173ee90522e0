"""Requests at the caps of `in` and `processes`, repeated: memory stays bounded."""

from __future__ import annotations

import httpx2 as httpx

from service.settings import DEFAULT_MAX_IN, DEFAULT_MAX_PROCESSES
from tests.soak.procfs import rss_bytes, tree_rss_bytes
from tests.utils import run_service

# The server process, and the server with its PI_WORKERS=4 worker processes.
SERVER_BOUND = 80 * 2**20
TREE_BOUND = 250 * 2**20
REPEATS = 8


def test_requests_at_the_caps_keep_memory_bounded() -> None:
    cap = f"/?in={DEFAULT_MAX_IN}&nap=0&processes={DEFAULT_MAX_PROCESSES}"
    with run_service(PI_WORKERS="4") as svc, httpx.Client(timeout=60) as client:
        peaks = []
        for _ in range(REPEATS):
            response = client.get(svc.url + cap)
            assert response.status_code == 200
            peaks.append((rss_bytes(svc.process.pid), tree_rss_bytes(svc.process.pid)))
    server = max(p[0] for p in peaks)
    tree = max(p[1] for p in peaks)
    assert server < SERVER_BOUND, f"server RSS {server / 2**20:.0f} MiB"
    assert tree < TREE_BOUND, f"server and workers RSS {tree / 2**20:.0f} MiB"
    # No growth from one capped request to the next once the workers exist.
    assert peaks[-1][1] <= peaks[1][1] * 1.10, [p[1] // 2**20 for p in peaks]
