"""The trace store: Jaeger v2 with memory storage, in a network namespace of its own.

It is published as Istio's tracing addon publishes it, so that a stack's settings work
unchanged: ``istio-system/zipkin`` (Zipkin v2 on 9411, where the app sends its spans),
``istio-system/jaeger-collector`` (OTLP on 4317 and 4318, where Knative's activator and
queue-proxy send theirs) and ``istio-system/tracing`` (the query API and UI). The host reaches
its query API at its address on the bridge: build/cluster/env's TRACES.
"""

from __future__ import annotations

from typing import Any

import yaml

from e2e import netns, tools
from e2e.context import STATE, Context, get_ok

NAMESPACE = "istio-system"
ADDRESS = str(netns.NETWORK[7])
QUERY_PORT, HEALTH_PORT = 16686, 13133
CONFIG = STATE / "jaeger.yaml"
OTLP_HTTP = f"http://jaeger-collector.{NAMESPACE}.svc.{netns.CLUSTER_DOMAIN}:4318/v1/traces"


URL = f"http://{ADDRESS}:{QUERY_PORT}"  # the query API, from the host


def configuration(address: str) -> dict[str, Any]:
    """Jaeger's all-in-one configuration with memory storage, every port on ADDRESS."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp", "zipkin"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {"logs": {"level": "warn"}, "metrics": {"level": "none"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}},
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                "http": {"endpoint": f"{address}:{QUERY_PORT}"},
                "grpc": {"endpoint": f"{address}:16685"},
            },
            "healthcheckv2": {"use_v2": True, "http": {"endpoint": f"{address}:{HEALTH_PORT}"}},
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{address}:4317"},
                    "http": {"endpoint": f"{address}:4318"},
                }
            },
            "zipkin": {"endpoint": f"{address}:9411"},
        },
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


def _service(name: str, ports: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "jaeger"}},
        "spec": {"ports": [{"name": port_name, "port": port, "targetPort": port}
                           for port_name, port in ports]},
    }  # fmt: skip


SERVICES = (
    _service("zipkin", [("http-query", 9411)]),
    _service("jaeger-collector", [("grpc-otlp", 4317), ("http-otlp", 4318)]),
    _service("tracing", [("http-query", QUERY_PORT)]),
)


def start(ctx: Context) -> None:
    CONFIG.write_text(yaml.safe_dump(configuration(ADDRESS), sort_keys=False))
    netns.create(f"{netns.PREFIX}jaeger", ADDRESS)
    run(ctx)
    ctx.kubectl_apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    for service in SERVICES:
        ctx.publish(service, ADDRESS)


def run(ctx: Context) -> None:
    """Jaeger with the configuration `start` wrote; again after a fault stopped it (its memory
    storage starts empty)."""
    ctx.start(
        "jaeger",
        [str(tools.path("jaeger")), f"--config={CONFIG}"],
        lambda: get_ok(f"http://{ADDRESS}:{HEALTH_PORT}/status"),
        namespace=f"{netns.PREFIX}jaeger",
    )
