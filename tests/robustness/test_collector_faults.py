"""A collector that refuses, hangs or answers 500 never fails a request and is logged once."""

from __future__ import annotations

import httpx2 as httpx
import pytest

from e2e.context import free_port
from tests.utils import ZipkinReceiver, run_service

# 5 spans a request: enough for full batches of 512 spans at the SDK's defaults.
REQUESTS = 300
QUERY = "/?in=10000&nap=0&processes=50"


@pytest.mark.parametrize("mode", ["refuse", "hang", "fail"])
def test_a_broken_collector_fails_no_request_and_is_logged_once(mode: str) -> None:
    with ZipkinReceiver(mode=mode, hang=60).running() as zipkin:
        endpoint = (
            f"http://127.0.0.1:{free_port()}/api/v2/spans" if mode == "refuse" else zipkin.endpoint
        )
        with (
            run_service(
                OTEL_EXPORTER_ZIPKIN_ENDPOINT=endpoint, OTEL_BSP_SCHEDULE_DELAY="100"
            ) as faulty,
            httpx.Client(timeout=10) as client,
        ):
            statuses = {client.get(faulty.url + QUERY).status_code for _ in range(REQUESTS)}
            if mode != "refuse":
                zipkin.wait_for_posts(1, timeout=20)
            code, stderr = faulty.stop(timeout=20)
    assert statuses == {200}
    assert code == 0, stderr
    problems = [line for line in stderr.splitlines() if "span export to" in line]
    assert len(problems) == 1, stderr
    assert "failing" in problems[0]
    assert "Traceback" not in stderr
    assert "Traces cannot be uploaded" not in stderr
