"""OpenTelemetry set-up: the tracer provider, its Zipkin exporter and the propagators.

Configured once at start-up by ``python -m service``; the rest of the service only asks the
provider it is given for a tracer.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.settings import Settings

# Bounded: under a collector that is down, spans beyond this are dropped, never queued forever.
MAX_QUEUE_SIZE = 2048
EXPORT_TIMEOUT_SECONDS = 5

log = logging.getLogger(__name__)


def configure_propagation() -> None:
    """Accept and emit W3C tracecontext + baggage and B3 (single and multi header).

    Knative's proxies pass W3C traceparent, Istio's Envoy uses B3. OTEL_PROPAGATORS, when set,
    wins: the SDK has already applied it.
    """
    if os.environ.get("OTEL_PROPAGATORS"):
        return
    propagate.set_global_textmap(
        CompositePropagator(
            [TraceContextTextMapPropagator(), W3CBaggagePropagator(), B3MultiFormat()]
        )
    )


def resource_for(settings: Settings) -> Resource:
    attributes: dict[str, str] = {SERVICE_NAME: settings.service_name}
    for key, value in (
        ("knative.service", settings.k_service),
        ("knative.revision", settings.k_revision),
        ("knative.configuration", settings.k_configuration),
    ):
        if value:
            attributes[key] = value
    return Resource.create(attributes)


def build_tracer_provider(
    settings: Settings, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A provider exporting in batches to ``exporter``, else to the Zipkin endpoint if set.

    With no exporter and no endpoint, spans are still made (for propagation) but go nowhere and
    nothing touches the network.
    """
    provider = TracerProvider(resource=resource_for(settings))
    if exporter is None and settings.zipkin_endpoint:
        # Imported here: the exporter pulls in requests, which the default start-up does not need.
        from opentelemetry.exporter.zipkin.json import ZipkinExporter  # noqa: PLC0415

        exporter = ZipkinExporter(endpoint=settings.zipkin_endpoint, timeout=EXPORT_TIMEOUT_SECONDS)
        log.info("exporting spans to %s", settings.zipkin_endpoint)
    if exporter is not None:
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=MAX_QUEUE_SIZE,
                export_timeout_millis=EXPORT_TIMEOUT_SECONDS * 1000,
            )
        )
    return provider
