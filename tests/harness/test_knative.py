"""Knative's install as the local cluster runs it: its own config maps, with only the settings
docs/local-cluster.md lists changed."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from e2e import knative, netns, traces
from e2e.context import ClusterError

ENDPOINT = traces.OTLP_HTTP


def _configured() -> dict[str, dict[str, str]]:
    docs = list(knative.documents(knative.files("configmaps")))
    knative.configure(docs, queue_image="q@sha256:0", registry="127.0.0.1:5000",
                      tracing_endpoint=ENDPOINT)  # fmt: skip
    return {d["metadata"]["name"]: {k: v for k, v in d.get("data", {}).items() if k != "_example"}
            for d in docs if d["kind"] == "ConfigMap"}  # fmt: skip


@pytest.fixture(scope="module")
def config() -> dict[str, dict[str, str]]:
    """The config maps of the pinned knative.dev/serving (from the Go module cache, which the
    go command fills from the module proxy), as the cluster installs them."""
    return _configured()


def test_the_autoscaler_runs_with_knatives_defaults(config: dict[str, dict[str, str]]) -> None:
    assert config["config-autoscaler"] == {}


def test_metrics_and_every_requests_spans_go_to_the_stores(
    config: dict[str, dict[str, str]],
) -> None:
    assert config["config-observability"] == {
        "metrics-protocol": "prometheus",
        "request-metrics-protocol": "prometheus",
        "tracing-protocol": "http/protobuf",
        "tracing-endpoint": ENDPOINT,
        "tracing-sampling-rate": "1",
    }


def test_only_the_listed_settings_differ_from_a_stock_install(
    config: dict[str, dict[str, str]],
) -> None:
    changed = {name for name, data in config.items() if data}
    assert changed == {"config-deployment", "config-domain", "config-observability"}
    assert config["config-domain"] == {knative.DOMAIN: ""}
    deployment: dict[str, Any] = config["config-deployment"]
    assert deployment["queue-sidecar-image"] == "q@sha256:0"
    assert deployment["registries-skipping-tag-resolving"].endswith(",127.0.0.1:5000")


def test_knatives_spans_go_to_a_service_the_trace_store_publishes_on_its_otlp_http_port(
    config: dict[str, dict[str, str]],
) -> None:
    """The endpoint Knative is given resolves, in the cluster's DNS, to one of the Services
    published for the trace store, on a port of it that takes OTLP over HTTP."""
    observability = config["config-observability"]
    endpoint = urlsplit(observability["tracing-endpoint"])
    assert endpoint.hostname is not None
    name, namespace, *domain = endpoint.hostname.split(".")
    assert ".".join(domain) == f"svc.{netns.CLUSTER_DOMAIN}"
    published = {(s["metadata"]["name"], s["metadata"]["namespace"]): s for s in traces.SERVICES}
    assert (name, namespace) in published, f"{name}.{namespace} is not published"
    ports = {p["port"]: p["name"] for p in published[name, namespace]["spec"]["ports"]}
    assert ports.get(endpoint.port) == "http-otlp"
    assert (observability["tracing-protocol"], endpoint.path) == ("http/protobuf", "/v1/traces")


def test_knatives_images_are_the_ones_built_here() -> None:
    docs = list(knative.documents(knative.files("deployments")))
    images = {name: f"127.0.0.1:5000/knative-serving/{name}@sha256:0" for name in
              knative.COMPONENTS}  # fmt: skip
    rewritten = knative.rewrite_images(docs, images)
    containers = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
                  for d in rewritten if d["kind"] == "Deployment"}  # fmt: skip
    assert containers == images
    assert "ko://" not in str(rewritten)
    assert "ko://" in str(docs)  # the module's own files are untouched


def test_an_image_not_built_here_is_an_error() -> None:
    docs = [{"kind": "Deployment", "spec": {"image": f"{knative.KO}unknown"}}]
    with pytest.raises(ClusterError, match=r"^no image built for ko://knative\.dev/.+/unknown$"):
        knative.rewrite_images(docs, {})
