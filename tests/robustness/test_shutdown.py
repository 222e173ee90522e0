"""SIGTERM under load: eleven requests in flight all complete, then the process exits 0."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx

from tests.utils import refused_within, run_service, wait_in_flight

IN_FLIGHT = 11


def test_sigterm_with_eleven_requests_in_flight_loses_none() -> None:
    with run_service() as svc, ThreadPoolExecutor(IN_FLIGHT) as pool:
        pending = [
            pool.submit(httpx.get, f"{svc.url}/?in=10000&nap=3&processes=50", timeout=20)
            for _ in range(IN_FLIGHT)
        ]
        wait_in_flight(svc.url, IN_FLIGHT)
        svc.terminate()
        # Readiness fails as soon as shutdown starts: a probe's new connection is refused.
        assert refused_within(f"{svc.url}/readyz", seconds=10)
        responses = [future.result() for future in pending]
        code, stderr = svc.stop()
    assert [r.status_code for r in responses] == [200] * IN_FLIGHT
    assert all("Method B napped for 3 seconds" in r.text for r in responses)
    assert code == 0, stderr
