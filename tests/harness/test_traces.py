"""The trace store's pure parts: Zipkin's command, the collector's configuration, the Services
that publish them as Istio's tracing addon does."""

from __future__ import annotations

from typing import Any

from e2e import knative, traces


def test_zipkin_runs_with_a_capped_heap_and_memory_storage_on_the_addons_port() -> None:
    command = traces.zipkin_command("/usr/bin/java", "/b/zipkin-server.jar")
    assert command[0] == "/usr/bin/java"
    assert command[-2:] == ["-jar", "/b/zipkin-server.jar"]
    assert "-Xmx256m" in command
    assert traces.ZIPKIN_ENV == {"QUERY_PORT": "9411", "STORAGE_TYPE": "mem"}


def test_the_collector_takes_otlp_on_its_address_and_sends_it_to_zipkin() -> None:
    config = traces.collector_configuration("198.51.100.7", "http://198.51.100.7:9411/api/v2/spans")
    assert config["receivers"]["otlp"]["protocols"] == {
        "grpc": {"endpoint": "198.51.100.7:4317"},
        "http": {"endpoint": "198.51.100.7:4318"},
    }
    assert config["exporters"] == {
        "zipkin": {"endpoint": "http://198.51.100.7:9411/api/v2/spans", "format": "json"}
    }
    assert config["service"]["pipelines"] == {
        "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["zipkin"]}
    }
    # The pipeline names only what is configured: the collector refuses a config that does not.
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) == set(config[kind]), kind


def test_zipkin_and_the_collector_are_published_as_istios_tracing_addon() -> None:
    ports = {
        s["metadata"]["name"]: [(p["port"], p["targetPort"]) for p in s["spec"]["ports"]]
        for s in traces.SERVICES
    }
    assert ports == {
        "zipkin": [(9411, 9411)],  # zipkin.istio-system:9411, the bosun stack's endpoint
        "tracing": [(80, 9411)],  # the addon's UI Service
        "otel-collector": [(4317, 4317), (4318, 4318)],
    }
    assert {s["metadata"]["namespace"] for s in traces.SERVICES} == {"istio-system"}


def test_knatives_spans_go_to_the_collectors_otlp_http_endpoint() -> None:
    assert traces.OTLP_HTTP == (
        "http://otel-collector.istio-system.svc.cluster.local:4318/v1/traces"
    )
    docs: list[dict[str, Any]] = [
        {"kind": "ConfigMap", "metadata": {"name": "config-observability"}, "data": {}},
        {"kind": "ConfigMap", "metadata": {"name": "config-deployment"}, "data": {}},
        {"kind": "ConfigMap", "metadata": {"name": "config-domain"}, "data": {}},
    ]
    knative.configure(docs, queue_image="q@sha256:0", registry="127.0.0.1:5000",
                      tracing_endpoint=traces.OTLP_HTTP)  # fmt: skip
    observability = docs[0]["data"]
    assert observability["tracing-endpoint"] == traces.OTLP_HTTP
    assert observability["tracing-protocol"] == "http/protobuf"
