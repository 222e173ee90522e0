"""A Knative Service on the local control plane, as a user deploys it: kubectl apply of
`make manifests`, Ready from Knative's controller, requests through the gateway by Host header,
a traffic split between two revisions, and deletion."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from infra.config import stack_values
from infra.render import render
from tests.e2e.kube import Kube, eventually, serving

NAME, NAMESPACE = "myfirstserverlessapp", "hackathon-pi-knative"
HOST = f"{NAME}.{NAMESPACE}.example.com"
LINES = (
    "Method A calculated the highest prime below 10000 as 9973",
    "Method B napped for 0 seconds",
    "Method C calculated pi as 3.161199 using 50 processes",
)


def manifests(image: str, **overrides: Any) -> list[dict[str, Any]]:
    """`make manifests` of the bosun stack with ``overrides``, the image pinned by digest."""
    return list(yaml.safe_load_all(render({**stack_values("bosun"), **overrides}, image)))


@pytest.fixture(scope="module")
def bosun(kube: Kube, app_image: str) -> Iterator[dict[str, Any]]:
    kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests(app_image)))
    yield kube.wait_ready(NAME, NAMESPACE)
    kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")


def test_applied_service_becomes_ready_with_its_route_host(bosun: dict[str, Any]) -> None:
    assert bosun["status"]["url"] == f"http://{HOST}"
    assert bosun["status"]["latestReadyRevisionName"] == f"{NAME}-00001"


def test_request_through_the_gateway_answers_the_original_lines(
    kube: Kube, bosun: dict[str, Any]
) -> None:
    response = kube.call(HOST)
    assert response.status_code == 200, response.text
    assert response.text.rstrip().splitlines()[-3:] == list(LINES)
    assert response.headers["k-revision"] == f"{NAME}-00001"


def test_unknown_host_is_not_routed(kube: Kube, bosun: dict[str, Any]) -> None:
    assert kube.call(f"nothing.{NAMESPACE}.example.com").status_code == 404


def test_pods_reach_the_service_by_its_cluster_local_name(
    kube: Kube, bosun: dict[str, Any]
) -> None:
    """NAME.NAMESPACE.svc.cluster.local, as Knative publishes it (an ExternalName of the local
    gateway), from a pod: the local gateway serves the KIngress's cluster-local rule."""
    url = f"http://{NAME}.{NAMESPACE}.svc.cluster.local/?in=10000&nap=0&processes=50"
    script = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=30).read().decode())"
    )
    assert kube.call(HOST).status_code == 200  # a pod up, kept for the stable window
    out = kube.exec_serving(NAMESPACE, NAME, "app", "/opt/venv/bin/python", "-c", script)
    assert out.rstrip().splitlines()[-3:] == list(LINES)


def test_a_deleted_activator_pod_is_replaced_and_requests_answer_again(
    kube: Kube, bosun: dict[str, Any]
) -> None:
    """Knative's activator as its Deployment runs it: a deleted pod is replaced, its Service's
    Endpoints follow the new pod's readiness, and the service answers again, without a 503
    once it does (the bosun stack's target of 1 keeps the activator in the path)."""
    assert kube.call(HOST).status_code == 200

    def activators() -> list[dict[str, Any]]:
        pods = kube.get("pods", "-n", "knative-serving", "-l", "app=activator")["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    (old,) = [p["metadata"]["name"] for p in activators()]
    kube.kubectl("delete", "pod", old, "-n", "knative-serving", "--wait=false")

    def replaced() -> bool:
        return any(p["metadata"]["name"] != old and serving(p) for p in activators())

    eventually(replaced, 120, "a new activator pod Ready")
    eventually(lambda: kube.call(HOST).status_code == 200, 60, "an answer through the new pod")
    codes = Counter(kube.call(HOST).status_code for _ in range(20))
    assert codes == {200: 20}


def test_traffic_split_reaches_both_revisions_in_proportion(
    kube: Kube, app_image: str, bosun: dict[str, Any]
) -> None:
    first = bosun["status"]["latestReadyRevisionName"]
    split = manifests(app_image, colour="red", traffic=[f"{first}:50", "latest:50"])
    kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(split))
    service = kube.wait_ready(NAME, NAMESPACE)
    second = service["status"]["latestReadyRevisionName"]
    assert second != first
    assert {(t["revisionName"], t["percent"]) for t in service["status"]["traffic"]} == {
        (first, 50),
        (second, 50),
    }
    requests = 200
    served = Counter(kube.call(HOST).headers["k-revision"] for _ in range(requests))
    # Binomial(200, 0.5): 100 +- 7 per standard deviation; 60..140 is more than 5 of them.
    assert set(served) == {first, second}
    assert all(60 <= count <= 140 for count in served.values()), served


def test_scales_to_zero_when_idle_and_back_through_the_activator(
    kube: Kube, app_image: str
) -> None:
    namespace = "scale-to-zero"
    documents = manifests(app_image, namespace=namespace, window="6s")
    kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    try:
        kube.wait_ready(NAME, namespace)
        selector = f"serving.knative.dev/service={NAME}"

        def pods() -> list[Any]:
            return list(kube.get("pods", "-n", namespace, "-l", selector)["items"])

        # A 6 s window, then the cluster's 30 s scale-to-zero grace period, then termination.
        eventually(lambda: not pods(), 180, "no pod left once idle")
        response = kube.call(f"{NAME}.{namespace}.example.com")
        assert response.status_code == 200, response.text
        assert response.text.rstrip().splitlines()[-3:] == list(LINES)
        assert pods(), "the request was answered without a pod"
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false")


def test_deleting_the_service_removes_its_revisions_containers(
    kube: Kube, bosun: dict[str, Any]
) -> None:
    pods = kube.get("pods", "-n", NAMESPACE, "-l", f"serving.knative.dev/service={NAME}")
    uids = {pod["metadata"]["uid"] for pod in pods["items"]}
    assert uids, "the service runs no pod"
    assert uids <= set(kube.pod_containers())
    kube.kubectl("delete", "ksvc", NAME, "-n", NAMESPACE, "--wait=true", timeout=180)
    eventually(
        lambda: not uids & set(kube.pod_containers()), 180, "the revisions' containers removed"
    )
    remaining = kube.get("revisions", "-n", NAMESPACE)["items"]
    assert remaining == []


def _mode(kube: Kube, namespace: str, revision: str) -> str:
    sks = kube.get("serverlessservice", revision, "-n", namespace)
    return str(sks.get("spec", {}).get("mode", ""))


def _endpoint_ips(kube: Kube, namespace: str, name: str) -> set[str]:
    endpoints = kube.get("endpoints", name, "-n", namespace)
    return {a["ip"] for s in endpoints.get("subsets") or [] for a in s.get("addresses") or []}


def test_serve_mode_with_spare_capacity_and_back_to_proxy_before_zero(
    kube: Kube, app_image: str
) -> None:
    """Knative's stock behaviour, which cluster DNS and Service routing make possible here: a
    revision with spare capacity is served by its pods directly (Serve mode: the gateway's
    endpoints are the pods), and before it scales to zero the activator is put back in the path
    (Proxy mode), which the autoscaler checks through the revision's Service by its DNS name,
    within the scale-to-zero grace period."""
    namespace = "serve-mode"
    documents = manifests(app_image, namespace=namespace, window="6s")
    annotations = documents[-1]["spec"]["template"]["metadata"]["annotations"]
    annotations["autoscaling.knative.dev/target-burst-capacity"] = "0"
    kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    try:
        revision = kube.wait_ready(NAME, namespace)["status"]["latestReadyRevisionName"]
        selector = f"serving.knative.dev/revision={revision}"

        def pod_ips() -> set[str]:
            pods = kube.get("pods", "-n", namespace, "-l", selector)["items"]
            return {p["status"].get("podIP") for p in pods if p["status"].get("podIP")}

        # The first pod is up: with a burst capacity of 0 it has spare capacity.
        eventually(lambda: _mode(kube, namespace, revision) == "Serve", 60, "Serve mode")
        ips = pod_ips()
        assert ips
        assert _endpoint_ips(kube, namespace, revision) == ips  # the gateway's: the pods'
        response = kube.call(f"{NAME}.{namespace}.example.com")
        assert response.status_code == 200, response.text
        # Idle: the activator goes back in the path while a pod still runs, then zero pods.
        seen: list[tuple[str, int]] = []

        def back_at_zero() -> bool:
            seen.append((_mode(kube, namespace, revision), len(pod_ips())))
            return seen[-1][1] == 0

        eventually(back_at_zero, 240, "no pod left once idle")
        assert ("Proxy", 1) in seen, seen
        activator = _endpoint_ips(kube, "knative-serving", "activator-service")
        assert _endpoint_ips(kube, namespace, revision) == activator
        # A request at zero goes through the activator, which brings a pod back.
        response = kube.call(f"{NAME}.{namespace}.example.com")
        assert response.status_code == 200, response.text
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false")
