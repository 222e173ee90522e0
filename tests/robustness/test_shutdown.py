"""SIGTERM under load: eleven requests in flight all complete, then the process exits 0."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest

from tests.utils import run_service

IN_FLIGHT = 11


def test_sigterm_with_eleven_requests_in_flight_loses_none() -> None:
    with run_service() as svc, ThreadPoolExecutor(IN_FLIGHT) as pool:
        pending = [
            pool.submit(httpx.get, f"{svc.url}/?in=10000&nap=2&processes=50", timeout=15)
            for _ in range(IN_FLIGHT)
        ]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{svc.url}/metrics").text
            if f"myfirstserverlessapp_requests_in_flight {IN_FLIGHT}.0" in metrics:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the eleven requests never were in flight together")
        svc.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{svc.url}/healthz", timeout=1)
        responses = [future.result() for future in pending]
        code, stderr = svc.stop()
    assert [r.status_code for r in responses] == [200] * IN_FLIGHT
    assert all("Method B napped for 2 seconds" in r.text for r in responses)
    assert code == 0, stderr
