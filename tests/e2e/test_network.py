"""Cluster DNS and Service routing as in a cluster, and the safety rule: a packet to a cluster
IP that no rule rewrites is dropped on this machine.

A pod of the app's image (a plain Deployment) asks the cluster's DNS for Services by the names a
pod uses, reaches them at their cluster IPs through kube-proxy's rules, and, while kube-proxy is
stopped, fails to reach a Service made meanwhile, whose cluster IP no rule rewrites: the host's
blackhole route drops the packet, and routes that range nowhere else.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e import netns, traces
from tests.e2e.kube import Kube, eventually

NAMESPACE = "network-e2e"
PYTHON = "/opt/venv/bin/python"


def _connect(host: str, port: int) -> str:
    """A Python one-liner that prints 'open' or the error of a TCP connection within 3 s."""
    return (
        "import socket\ntry:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout=3).close(); print('open')\n"
        "except OSError as e:\n    print(type(e).__name__)"
    )


@pytest.fixture(scope="module")
def pod(kube: Kube, app_image: str) -> Iterator[str]:
    """A running pod of the app's image, by name."""
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "probe", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {
                "metadata": {"labels": {"app": "probe"}},
                "spec": {"containers": [{"name": "app", "image": app_image}]},
            },
        },
    }  # fmt: skip
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([namespace, deployment]))
    try:
        kube.kubectl("rollout", "status", "deployment/probe", "-n", NAMESPACE, "--timeout=120s",
                     timeout=150)  # fmt: skip
        pods = kube.get("pods", "-n", NAMESPACE, "-l", "app=probe")["items"]
        yield pods[0]["metadata"]["name"]
    finally:
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _in_pod(kube: Kube, pod: str, *command: str) -> str:
    return kube.exec(NAMESPACE, pod, "app", *command).strip()


def test_a_pods_resolv_conf_names_the_cluster_dns_as_the_kubelet_writes_it(
    kube: Kube, pod: str
) -> None:
    # The image has no shell and no cat: its Python reads the file.
    read = "print(open('/etc/resolv.conf').read(), end='')"
    assert _in_pod(kube, pod, PYTHON, "-c", read).splitlines() == (
        netns.resolv_conf(NAMESPACE).strip().splitlines()
    )


@pytest.mark.parametrize(
    ("name", "service", "namespace"),
    [
        ("kubernetes.default", "kubernetes", "default"),
        ("zipkin.istio-system", "zipkin", "istio-system"),
        ("autoscaler.knative-serving.svc.cluster.local", "autoscaler", "knative-serving"),
    ],
)
def test_pods_resolve_services_by_the_names_a_pod_uses(
    kube: Kube, pod: str, name: str, service: str, namespace: str
) -> None:
    cluster_ip = kube.get("service", service, "-n", namespace)["spec"]["clusterIP"]
    script = f"import socket; print(socket.gethostbyname({name!r}))"
    assert _in_pod(kube, pod, PYTHON, "-c", script) == cluster_ip


def test_pods_reach_services_at_their_cluster_ips(kube: Kube, pod: str) -> None:
    tracing = kube.get("service", "tracing", "-n", "istio-system")["spec"]["clusterIP"]
    assert _in_pod(kube, pod, PYTHON, "-c", _connect(tracing, 80)) == "open"  # Zipkin's UI


def test_a_cluster_ip_no_rule_rewrites_is_dropped_here_and_routed_nowhere_else(
    kube: Kube, pod: str
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "unrouted", "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": traces.ZIPKIN_PORT}]},
    }
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "unrouted", "namespace": NAMESPACE},
        "subsets": [{"addresses": [{"ip": traces.ADDRESS}],
                     "ports": [{"name": "http", "port": traces.ZIPKIN_PORT}]}],
    }  # fmt: skip
    with kube.stopped("kube-proxy"):
        made = kube.apply([service, endpoints])
        cluster_ip = next(i for i in made["items"] if i["kind"] == "Service")["spec"]["clusterIP"]
        assert ipaddress.ip_address(cluster_ip) in netns.SERVICE_NETWORK
        # No rule rewrites it: from a pod, the packet reaches the node and is dropped there.
        assert _in_pod(kube, pod, PYTHON, "-c", _connect(cluster_ip, 80)) == "TimeoutError"
        # The host routes the whole range to the blackhole, never out through eth0.
        assert f"blackhole {netns.SERVICE_NETWORK}" in netns.ip("route", "show", "type",
                                                                "blackhole").stdout  # fmt: skip
        assert not netns.leaves_the_machine(cluster_ip)
        # From the host itself the route lookup fails: nothing is sent at all.
        with pytest.raises(OSError, match="Invalid argument") as refused:
            socket.create_connection((cluster_ip, 80), timeout=3)
        assert refused.value.errno == errno.EINVAL
    # kube-proxy, started again, writes the Service's rules: the same connection goes through.
    eventually(
        lambda: _in_pod(kube, pod, PYTHON, "-c", _connect(cluster_ip, 80)) == "open",
        60, "the new Service routed once kube-proxy runs",
    )  # fmt: skip
