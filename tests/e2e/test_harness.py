"""The local control plane's contract with its users: `make cluster-up` once, the env file, the
gateway's address, and `status`."""

from __future__ import annotations

import subprocess
import sys

import httpx2 as httpx

from e2e import tools
from e2e.context import ENV_FILE
from e2e.images import BUILDER
from e2e.knative import COMPONENTS as KNATIVE_COMPONENTS
from e2e.knative import NAMESPACE as KNATIVE
from tests.e2e.kube import ROOT, Kube


def cluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e2e.cluster", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_second_cluster_up_says_so_and_exits_zero(kube: Kube) -> None:
    again = cluster("up")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert kube.kubectl("get", "--raw", "/readyz").stdout == "ok"


def test_env_file_exports_what_clients_need(kube: Kube) -> None:
    text = ENV_FILE.read_text()
    assert text.startswith("export ")
    exported = dict(pair.split("=", 1) for pair in text.split()[1:])
    assert exported == kube.env
    assert set(exported) == {
        "KUBECONFIG", "DOCKER_HOST", "DOCKER_CONFIG", "REGISTRY", "GATEWAY", "METRICS", "TRACES",
    }  # fmt: skip
    assert exported["REGISTRY"].startswith("127.0.0.1:")
    assert exported["GATEWAY"].startswith("127.0.0.1:")
    assert httpx.get(f"http://{exported['REGISTRY']}/v2/", timeout=5).status_code == 200
    assert kube.docker("version").returncode == 0


def test_the_current_buildx_builder_is_buildkits_daemon(kube: Kube) -> None:
    """What the docker-build provider builds with: BuildKit at the pinned version, through the
    remote driver (the provider refuses Docker's own builder)."""
    fields: dict[str, str] = {}  # the builder's, then its node's: the first of each name
    for line in kube.docker("buildx", "inspect").stdout.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    assert fields["Name"] == BUILDER
    assert fields["Driver"] == "remote"
    assert fields["Status"] == "running"
    buildkitd = next(tool for tool in tools.TOOLS_LIST if tool.name == "buildkitd")
    assert fields["BuildKit version"] == tools.pinned(buildkitd)


def test_istio_ingress_gateway_has_the_loopback_load_balancer(kube: Kube) -> None:
    service = kube.get("service", "istio-ingressgateway", "-n", "istio-system")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["status"]["loadBalancer"]["ingress"][0]["ip"] == "127.0.0.1"


def test_status_lists_every_component_running(kube: Kube) -> None:
    status = cluster("status")
    assert status.returncode == 0, status.stdout
    names = {line.split()[0] for line in status.stdout.splitlines()}
    assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "dockerd",
            "registry", "buildkitd", "containerd", "kubelet", "kube-proxy", "coredns", "zipkin",
            "otelcol", "gateway-standin", "kube-state-metrics",
            "victoria-metrics"} <= names  # fmt: skip
    assert "NOT RUNNING" not in status.stdout


def test_knatives_components_run_as_the_pods_of_their_deployments(kube: Kube) -> None:
    """Each of Knative's Deployments is available on the node, its Service's Endpoints at its
    pod, and its webhook registrations are complete."""
    for name in KNATIVE_COMPONENTS:
        deployment = kube.get("deployment", name, "-n", KNATIVE)
        assert deployment["status"].get("availableReplicas") == 1, name
    pods = kube.get("pods", "-n", KNATIVE, "-l", "app=activator")["items"]
    (activator,) = [p["status"]["podIP"] for p in pods]
    endpoints = kube.get("endpoints", "activator-service", "-n", KNATIVE)
    assert [a["ip"] for s in endpoints["subsets"] for a in s["addresses"]] == [activator]
    webhook = kube.get("mutatingwebhookconfiguration", "webhook.serving.knative.dev")
    assert webhook["webhooks"][0]["clientConfig"]["service"]["name"] == "webhook"
    assert webhook["webhooks"][0]["clientConfig"]["caBundle"]


def test_the_stores_answer_at_their_urls(kube: Kube) -> None:
    """The metrics store's and the trace store's query APIs, as build/cluster/env names them;
    `status` names them too."""
    health = httpx.get(f"{kube.env['METRICS']}/api/v1/query", params={"query": "up"}, timeout=5)
    assert health.json()["status"] == "success"
    assert httpx.get(f"{kube.env['TRACES']}/api/v2/services", timeout=5).status_code == 200
    assert httpx.get(f"{kube.env['TRACES']}/zipkin/", timeout=5).status_code == 200  # its UI
    status = cluster("status").stdout
    assert f"metrics store              {kube.env['METRICS']}" in status
    assert f"trace store                {kube.env['TRACES']}" in status
