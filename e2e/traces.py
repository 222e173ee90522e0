"""The trace store: Zipkin, with an OpenTelemetry Collector in front of it for Knative's OTLP
spans, both in a network namespace of their own (Zipkin binds every interface).

They are published as Istio's tracing addon publishes Zipkin, so that a stack's settings work
unchanged: ``istio-system/zipkin`` (9411: the Zipkin v2 API, where the app sends its spans,
and Zipkin's UI at /zipkin/), ``istio-system/tracing`` (80: the UI, as the addon names it) and
``istio-system/otel-collector`` (OTLP on 4317 and 4318, where Knative's activator and
queue-proxy send theirs; the collector hands them to Zipkin). The host reaches Zipkin at its
address on the bridge: build/cluster/env's TRACES.

Zipkin is a JVM that takes seconds to start, so it is spawned right after the network is up
(``spawn_zipkin``) and waited for later (``start``), while the other components start.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any

import yaml

from e2e import netns, tools
from e2e.context import STATE, Context, get_ok, require

NAMESPACE = "istio-system"
NETNS = f"{netns.PREFIX}traces"
ADDRESS = str(netns.NETWORK[7])
ZIPKIN_PORT, OTLP_GRPC, OTLP_HTTP_PORT = 9411, 4317, 4318
URL = f"http://{ADDRESS}:{ZIPKIN_PORT}"  # Zipkin's API and UI, from the host
SPANS = f"{URL}/api/v2/spans"  # where the collector sends what it receives
OTLP_HTTP = f"http://otel-collector.{NAMESPACE}.svc.{netns.CLUSTER_DOMAIN}:4318/v1/traces"
CONFIG = STATE / "otelcol.yaml"
# A capped heap, and a quick start: the client compiler only (the store serves a test's few
# thousand spans), the serial collector (one heap, few threads).
JAVA_OPTIONS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
ZIPKIN_ENV = {"QUERY_PORT": str(ZIPKIN_PORT), "STORAGE_TYPE": "mem"}


def collector_configuration(address: str, spans: str) -> dict[str, Any]:
    """The collector's configuration: OTLP on ADDRESS (gRPC and HTTP), batched, to Zipkin's
    SPANS endpoint; its own telemetry quiet."""
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{address}:{OTLP_GRPC}"},
                    "http": {"endpoint": f"{address}:{OTLP_HTTP_PORT}"},
                }
            }
        },
        "processors": {"batch": {"timeout": "1s"}},
        "exporters": {"zipkin": {"endpoint": spans, "format": "json"}},
        "service": {
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["zipkin"]}
            },
            "telemetry": {"logs": {"level": "warn"}, "metrics": {"level": "none"}},
        },
    }


def zipkin_command(java: str, jar: str) -> list[str]:
    return [java, *JAVA_OPTIONS, "-jar", jar]


def _service(name: str, ports: list[tuple[str, int, int]], app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app}},
        "spec": {"ports": [{"name": port_name, "port": port, "targetPort": target}
                           for port_name, port, target in ports]},
    }  # fmt: skip


SERVICES = (
    _service("zipkin", [("http-query", ZIPKIN_PORT, ZIPKIN_PORT)], "zipkin"),
    _service("tracing", [("http-query", 80, ZIPKIN_PORT)], "zipkin"),
    _service("otel-collector", [("grpc-otlp", OTLP_GRPC, OTLP_GRPC),
                                ("http-otlp", OTLP_HTTP_PORT, OTLP_HTTP_PORT)], "otel-collector"),
)  # fmt: skip


def _answers(url: str) -> bool:
    """An HTTP server answers at URL, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own http URL)
            return True
    except urllib.error.HTTPError:
        return True


def _spawn_zipkin(ctx: Context) -> None:
    java = require("java", "openjdk-17-jre-headless")
    ctx.spawn("zipkin", zipkin_command(java, str(tools.path("zipkin-server.jar"))),
              env={**os.environ, **ZIPKIN_ENV}, namespace=NETNS)  # fmt: skip


def _zipkin_ready() -> bool:
    return get_ok(f"{URL}/health")


def spawn_zipkin(ctx: Context) -> None:
    """The namespace, and Zipkin started in it (``start`` waits for it)."""
    netns.create(NETNS, ADDRESS)
    _spawn_zipkin(ctx)


def run_zipkin(ctx: Context) -> None:
    """Zipkin again after a fault stopped it (its memory storage starts empty)."""
    _spawn_zipkin(ctx)
    ctx.wait_ready("zipkin", _zipkin_ready, timeout=120)


def start(ctx: Context) -> None:
    """Zipkin ready, the collector in front of it, and their Services."""
    ctx.wait_ready("zipkin", _zipkin_ready, timeout=120)
    CONFIG.write_text(yaml.safe_dump(collector_configuration(ADDRESS, SPANS), sort_keys=False))
    ctx.start(
        "otelcol",
        [str(tools.path("otelcol")), f"--config={CONFIG}"],
        lambda: _answers(f"http://{ADDRESS}:{OTLP_HTTP_PORT}/v1/traces"),
        namespace=NETNS,
    )
    ctx.kubectl_apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    for service in SERVICES:
        ctx.publish(service, ADDRESS)
