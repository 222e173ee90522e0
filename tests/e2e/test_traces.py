"""Follow one request: a trace of `faas call --trace`'s own, through the gateway, Knative's
activator and queue-proxy (OTLP, through the OpenTelemetry Collector) and the app's delegation
chain (Zipkin), in Zipkin: read from its API, and seen in its UI in Chromium.

The bosun stack's Service, kept at one pod: its zipkinEndpoint, unchanged,
http://zipkin.istio-system:9411/..., resolves through the cluster's DNS and reaches Zipkin
through kube-proxy's rules. Zipkin lowercases span and service names.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx2 as httpx
import pytest
import yaml

from e2e import traces
from tests.e2e.browser import chromium_page
from tests.e2e.kube import ROOT, Kube, eventually
from tests.e2e.test_serving import manifests

NAME, NAMESPACE = "myfirstserverlessapp", "traces-e2e"
HOST = f"{NAME}.{NAMESPACE}.example.com"
CHAIN = ("heavylifting", "heavyweightmethoda", "heavyweightmethodb", "heavyweightmethodc")
CONTAINER = "app"  # the Knative Service's container (infra/manifest.py)
FAILING = "span export to http://zipkin.istio-system:9411/api/v2/spans failing"
ARTIFACTS = ROOT / "build" / "e2e"


@pytest.fixture(scope="module")
def service(kube: Kube, app_image: str) -> Iterator[str]:
    # One pod throughout (the activator stays in the path: target 1, burst capacity 200), so
    # that its log holds every request's export.
    documents = manifests(app_image, namespace=NAMESPACE, minScale=1, maxScale=1)
    kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    try:
        kube.wait_ready(NAME, NAMESPACE)
        yield HOST
    finally:
        kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")


def faas_trace(kube: Kube, host: str) -> tuple[str, list[str]]:
    """`faas call --nap 2 --trace` through the gateway: the trace id and the printed tree."""
    faas = Path(sys.executable).with_name("faas")
    out = kube.run(str(faas), "call", "--host", kube.gateway, "--domain", host, "--nap", "2",
                   "--trace", timeout=120).stdout  # fmt: skip
    assert "Method B napped for 2 seconds" in out
    header, *tree = out.split("\nTrace ", 1)[1].splitlines()
    return header.split()[0], tree


def _spans(kube: Kube, trace_id: str) -> dict[str, dict[str, Any]]:
    """The trace's spans from Zipkin's API, each with its service and container."""
    response = httpx.get(f"{kube.env['TRACES']}/api/v2/trace/{trace_id}", timeout=10)
    assert response.status_code == 200, response.text
    spans = {}
    for span in response.json():
        tags = span.get("tags") or {}
        spans[span["id"]] = {
            "name": span.get("name", ""),
            "service": (span.get("localEndpoint") or {}).get("serviceName"),
            "container": tags.get("k8s.container.name", tags.get("container.name")),
            "parent": span.get("parentId"),
            "duration": span.get("duration", 0) / 1e6,
        }
    return spans


def test_one_request_is_one_trace_from_the_activator_to_method_c(kube: Kube, service: str) -> None:
    started = time.time()
    trace_id, tree = faas_trace(kube, service)
    spans = _spans(kube, trace_id)

    def one(name: str, **where: object) -> tuple[str, dict[str, Any]]:
        found = [(i, s) for i, s in spans.items() if s["name"] == name
                 and all(s[k] == v for k, v in where.items())]  # fmt: skip
        assert len(found) == 1, (name, where, spans)
        return found[0]

    # The activator's server span is the root: its parent is faas's own span, not stored.
    _, activator = one("get", service="activator")
    assert activator["parent"] not in spans
    # queue-proxy's server span is a child of an activator span; the app's of a queue-proxy's.
    _, queue = one("get", container="queue-proxy")
    assert spans[queue["parent"]]["service"] == "activator"
    one("kn.queueproxy.proxy", container="queue-proxy")
    app_id, app = one("get /", service=NAME, container=None)
    assert spans[app["parent"]]["container"] == "queue-proxy"
    # The app's chain, each under the one before, named for K_SERVICE.
    parent = app_id
    for name in CHAIN:
        span_id, span = one(name, service=NAME)
        assert span["parent"] == parent, (name, spans)
        parent = span_id
    assert one("heavyweightmethodb", service=NAME)[1]["duration"] >= 2.0
    # faas printed the same tree: the activator's span first, method C last and deepest.
    assert tree[0].split()[-1] == "get"
    assert tree[-1].endswith("└─ heavyweightmethodc")
    # One trace for the request: the activator recorded no other in that time.
    now_ms = int(time.time() * 1000)
    search = httpx.get(f"{kube.env['TRACES']}/api/v2/traces", timeout=10, params={
        "serviceName": "activator", "endTs": now_ms,
        "lookback": now_ms - int(started * 1000) + 1000, "limit": 20})  # fmt: skip
    assert [trace[0]["traceId"] for trace in search.json()] == [trace_id]


def test_zipkins_ui_shows_the_trace_and_its_dependencies_link_the_activator_to_the_app(
    kube: Kube, service: str
) -> None:
    """The trace as a user opens it in Zipkin's UI, after one request with a traceparent of
    the test's own; the screenshot is build/e2e/trace.png (docs/trace.png)."""
    trace_id, _ = faas_trace(kube, service)
    url = f"{kube.env['TRACES']}/zipkin/traces/{trace_id}"
    with chromium_page(width=1600, height=900) as page:
        page.goto(url)
        page.get_by_text("heavyweightmethodc").first.wait_for(timeout=60_000)
        text = page.inner_text("body")
        for shown in ("activator", "kn.queueproxy.proxy", NAME, *CHAIN):
            assert shown in text, f"{shown!r} is not on {url}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "trace.png"), full_page=True)
    now_ms = int(time.time() * 1000)
    links = httpx.get(f"{kube.env['TRACES']}/api/v2/dependencies", timeout=10,
                      params={"endTs": now_ms, "lookback": 3_600_000}).json()  # fmt: skip
    assert any(link["parent"] == "activator" and link["child"] == NAME for link in links), links


FAILING_STORE = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Refuse(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(500)
        self.send_header("content-length", "0")
        self.end_headers()
        print("POST", self.headers.get("user-agent", ""), flush=True)

    def log_message(self, *args):
        pass

server = HTTPServer((sys.argv[1], int(sys.argv[2])), Refuse)
print("listening", flush=True)
server.serve_forever()
"""


def test_with_the_trace_store_failing_requests_answer_and_the_app_says_so_once(
    kube: Kube, service: str
) -> None:
    """Zipkin stopped, and a server of the test's own on its address answering 500 to every
    POST: the app's exporter fails, backs off (5 s), then tries again and fails again; the app
    logs the failure once, and every request is answered."""
    with kube.stopped("zipkin"):
        ip = shutil.which("ip") or "ip"
        with subprocess.Popen(
            [ip, "netns", "exec", traces.NETNS, sys.executable, "-c", FAILING_STORE,
             traces.ADDRESS, str(traces.ZIPKIN_PORT)],
            stdout=subprocess.PIPE, text=True,
        ) as store:  # fmt: skip
            try:
                assert store.stdout is not None
                assert store.stdout.readline() == "listening\n"
                posts = _count_lines(store.stdout)
                pods = kube.serving_pods(NAMESPACE, NAME)

                def logged() -> dict[str, int]:
                    return {pod: sum(FAILING in line for line in
                                     kube.logs(NAMESPACE, pod, CONTAINER).splitlines())
                            for pod in pods}  # fmt: skip

                def exported(count: int) -> bool:
                    """A request answered, then: has the app tried COUNT exports? (Its
                    exporter sends with requests; the collector's POSTs come here too.)"""
                    assert kube.call(service).status_code == 200
                    return sum("python-requests" in post for post in posts) >= count

                eventually(lambda: exported(1), 60, "the app's first export")
                eventually(lambda: any(logged().values()) or None, 30, "the failure logged")
                # Requests while the exporter backs off, until it tries (and fails) again.
                eventually(lambda: exported(2), 60, "the app's second export, after its back-off")
                assert set(logged().values()) <= {0, 1}, logged()
            finally:
                store.terminate()


def _count_lines(stream: IO[str]) -> list[str]:
    """The lines STREAM gives from now on, added as they come (by a thread of their own)."""
    lines: list[str] = []

    def read() -> None:
        for line in stream:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines
