"""Follow one request: a trace of `faas call --trace`'s own, through the gateway, Knative's
activator and queue-proxy (OTLP) and the app's delegation chain (Zipkin), in the trace store.

The bosun stack's Service, kept at one pod: its zipkinEndpoint, unchanged,
http://zipkin.istio-system:9411/..., resolves through the cluster's DNS and reaches Jaeger
through kube-proxy's rules.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml

from tests.e2e.kube import Kube, eventually
from tests.e2e.test_serving import manifests

NAME, NAMESPACE = "myfirstserverlessapp", "traces-e2e"
HOST = f"{NAME}.{NAMESPACE}.example.com"
CHAIN = ("heavyLifting", "heavyweightMethodA", "heavyweightMethodB", "heavyweightMethodC")
CONTAINER = "app"  # the Knative Service's container (infra/manifest.py)
FAILING = "span export to http://zipkin.istio-system:9411/api/v2/spans failing"


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
    """The trace's spans from the store's query API, each with its service and container."""
    response = httpx.get(f"{kube.env['TRACES']}/api/traces/{trace_id}", timeout=10)
    assert response.status_code == 200, response.text
    (trace,) = response.json()["data"]
    spans = {}
    for span in trace["spans"]:
        process = trace["processes"][span["processID"]]
        tags = {tag["key"]: tag["value"] for tag in process.get("tags", [])}
        parents = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
        spans[span["spanID"]] = {
            "name": span["operationName"],
            "service": process["serviceName"],
            "container": tags.get("container.name", tags.get("k8s.container.name")),
            "parent": parents[0] if parents else None,
            "duration": span["duration"] / 1e6,
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
    _, activator = one("GET", service="activator")
    assert activator["parent"] not in spans
    # queue-proxy's server span is a child of an activator span; the app's of a queue-proxy's.
    _, queue = one("GET", container="queue-proxy")
    assert spans[queue["parent"]]["service"] == "activator"
    one("kn.queueproxy.proxy", container="queue-proxy")
    app_id, app = one("GET /", service=NAME, container=None)
    assert spans[app["parent"]]["container"] == "queue-proxy"
    # The app's chain, each under the one before, named for K_SERVICE.
    parent = app_id
    for name in CHAIN:
        span_id, span = one(name, service=NAME)
        assert span["parent"] == parent, (name, spans)
        parent = span_id
    assert one("heavyweightMethodB", service=NAME)[1]["duration"] >= 2.0
    # faas printed the same tree: the activator's span first, method C last and deepest.
    assert tree[0].split()[-1] == "GET"
    assert tree[-1].endswith("└─ heavyweightMethodC")
    # One trace for the request: the activator recorded no other in that time.
    search = httpx.get(f"{kube.env['TRACES']}/api/traces", timeout=10, params={
        "service": "activator", "start": int(started * 1e6), "end": int(time.time() * 1e6),
        "limit": 20})  # fmt: skip
    assert [t["traceID"] for t in search.json()["data"]] == [trace_id]


def test_with_the_trace_store_stopped_requests_answer_and_the_app_says_so_once(
    kube: Kube, service: str
) -> None:
    with kube.stopped("jaeger"):
        for _ in range(3):
            response = kube.call(service)
            assert response.status_code == 200, response.text
        selector = f"serving.knative.dev/service={NAME}"
        pods = [p["metadata"]["name"] for p in kube.get(
            "pods", "-n", NAMESPACE, "-l", selector)["items"] if _serving(p)]  # fmt: skip

        def logged() -> dict[str, int] | None:
            """Each pod's lines about the failing export, once any pod has one."""
            counts = {pod: sum(FAILING in line for line in
                               kube.logs(NAMESPACE, pod, CONTAINER).splitlines())
                      for pod in pods}  # fmt: skip
            return counts if any(counts.values()) else None

        # The app's exporter sends its batch within 5 s (the SDK's schedule delay).
        eventually(logged, 30, "the app logs that its span export fails")
        for _ in range(3):
            assert kube.call(service).status_code == 200
        time.sleep(6)  # past the next batch: a failure logged again would show now
        counts = logged()
        assert counts is not None
        assert set(counts.values()) <= {0, 1}, counts


def _serving(pod: dict[str, Any]) -> bool:
    """Ready and not being deleted: a pod that answers requests."""
    conditions = pod.get("status", {}).get("conditions", [])
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready and not pod["metadata"].get("deletionTimestamp")
