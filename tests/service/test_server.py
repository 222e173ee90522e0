"""The service as a real process: uvicorn on a loopback port, signals, real Zipkin export."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest

from service.settings import DEFAULT_MAX_IN, DEFAULT_MAX_PROCESSES
from tests.utils import (
    ROOT,
    ZipkinReceiver,
    health_during,
    refused_within,
    run_service,
    service_env,
    wait_in_flight,
)

CAP_REQUEST = f"/?in={DEFAULT_MAX_IN}&nap=0&processes={DEFAULT_MAX_PROCESSES}"
CHAIN = ["heavyLifting", "heavyweightMethodA", "heavyweightMethodB", "heavyweightMethodC"]


def test_health_is_answered_while_a_request_at_the_caps_runs() -> None:
    """The capped request's CPU work is off the event loop: health probes keep being answered
    while it runs (how fast they are is measured by make soak)."""
    with run_service() as svc:
        status, latencies = health_during(svc.url, CAP_REQUEST)
    assert status == 200
    assert len(latencies) >= 10, "the capped request finished before health was probed"


def test_naps_do_not_block_each_other() -> None:
    with run_service() as svc:
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            statuses = list(
                pool.map(
                    lambda _: httpx.get(f"{svc.url}/?in=100&nap=1&processes=5", timeout=10),
                    range(4),
                )
            )
        elapsed = time.perf_counter() - started
    assert [r.status_code for r in statuses] == [200] * 4
    # In turn they would take 4 s; together about 1 s, and well under 3.5 s on a loaded machine.
    assert elapsed < 3.5, f"four 1 s naps took {elapsed:.2f} s"


def test_spans_reach_a_zipkin_collector_continuing_the_b3_trace() -> None:
    trace_id, parent_id = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
    with (
        ZipkinReceiver().running() as zipkin,
        run_service(
            OTEL_EXPORTER_ZIPKIN_ENDPOINT=zipkin.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
            K_SERVICE="faas",
            K_REVISION="faas-00007",
        ) as svc,
    ):
        headers = {"X-B3-TraceId": trace_id, "X-B3-SpanId": parent_id, "X-B3-Sampled": "1"}
        response = httpx.get(f"{svc.url}/?in=10000&nap=0&processes=50", headers=headers)
        assert response.status_code == 200
        spans = zipkin.wait_for(5)
    by_name = {span["name"]: span for span in spans}
    assert set(by_name) == {"GET /", *CHAIN}
    assert by_name["GET /"]["parentId"] == parent_id
    parent = by_name["GET /"]
    for name in CHAIN:
        span = by_name[name]
        assert span["parentId"] == parent["id"], name
        parent = span
    for span in spans:
        assert span["traceId"] == trace_id
        assert span["localEndpoint"]["serviceName"] == "faas"
    assert by_name["heavyweightMethodA"]["tags"]["app.highest_prime"] == "9973"
    assert by_name["heavyLifting"]["tags"]["knative.revision"] == "faas-00007"


def test_sigterm_drains_in_flight_requests_flushes_spans_and_exits_0() -> None:
    with ZipkinReceiver().running() as zipkin:
        with run_service(
            OTEL_EXPORTER_ZIPKIN_ENDPOINT=zipkin.endpoint, OTEL_BSP_SCHEDULE_DELAY="60000"
        ) as svc:
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(
                    httpx.get, f"{svc.url}/?in=10000&nap=2&processes=50", timeout=10
                )
                wait_in_flight(svc.url, 1)
                signalled = time.perf_counter()
                svc.terminate()
                assert refused_within(f"{svc.url}/healthz", seconds=10)
                response = pending.result()
            code, stderr = svc.stop()
            drained = time.perf_counter() - signalled
        spans = zipkin.wait_for(5, timeout=2)
    assert response.status_code == 200
    assert "Method B napped for 2 seconds" in response.text
    assert code == 0, stderr
    assert drained < 30  # a 2 s nap to finish, then the flush: generous on a loaded machine
    assert {span["name"] for span in spans} >= set(CHAIN)
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("env", "name"),
    [({"PORT": "eighty"}, "PORT"), ({"MAX_IN": "1"}, "MAX_IN"), ({"COLOUR": "<b>"}, "COLOUR")],
)
def test_bad_settings_print_one_line_and_exit_non_zero(env: dict[str, str], name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=service_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"myfirstserverlessapp: bad setting: {name}=")


def test_a_port_in_use_prints_one_line_and_exits_2_before_saying_it_serves() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "service"],
            cwd=ROOT,
            env=service_env(PORT=str(port), LOG_LEVEL="info"),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"myfirstserverlessapp: bad setting: PORT {port} on HOST 127.0.0.1: address already in use"
    ]


def test_every_response_names_the_revision() -> None:
    with run_service(K_REVISION="faas-00042") as svc:
        for path in ("/", "/healthz", "/metrics", "/nowhere", "/?in=x"):
            assert httpx.get(svc.url + path).headers["k-revision"] == "faas-00042", path


def test_the_listening_socket_is_tcp_so_asyncio_sets_nodelay_on_connections() -> None:
    """asyncio sets TCP_NODELAY on an accepted connection only when its socket's protocol is
    IPPROTO_TCP; with 0, each response waits for a delayed ACK (40 ms, seen in make bench)."""
    # In a process of its own: importing service.__main__ turns the garbage collector off.
    script = (
        "import socket; from service.__main__ import _listen; "
        "from service.settings import Settings; "
        "sock = _listen(Settings(host='127.0.0.1', port=0)); "
        "print(sock.proto == socket.IPPROTO_TCP, "
        "sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1)"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout.split() == ["True", "True"]
