"""OpenTelemetry set-up: the tracer provider, its Zipkin exporter and the propagators.

Configured once at start-up by ``python -m service``; the rest of the service only asks the
provider it is given for a tracer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.settings import Settings

# Bounded: under a collector that is down, spans beyond this are dropped, never queued forever.
MAX_QUEUE_SIZE = 2048
EXPORT_TIMEOUT_SECONDS = 5

log = logging.getLogger(__name__)


class ReportingExporter(SpanExporter):
    """Wraps an exporter so a failing collector costs nothing and is logged once.

    A failure (an exception or an error answer) is logged in one line when it starts and again
    when export recovers. While the collector fails, batches are dropped without being encoded
    for a back-off period (BACKOFF_FIRST seconds, doubling up to BACKOFF_MAX): encoding a batch
    holds the GIL for milliseconds, which requests in flight would feel. Nothing here raises.
    """

    BACKOFF_FIRST = 5.0
    BACKOFF_MAX = 60.0

    def __init__(self, inner: SpanExporter, target: str) -> None:
        self._inner = inner
        self._target = target
        self._failing = False
        self._backoff = 0.0
        self._retry_at = 0.0

    @property
    def backing_off(self) -> bool:
        """True while the collector is known to fail and the back-off period has not passed."""
        return self._failing and time.monotonic() < self._retry_at

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.backing_off:
            return SpanExportResult.FAILURE
        try:
            result = self._inner.export(spans)
            problem = (
                None if result is SpanExportResult.SUCCESS else "the collector answered an error"
            )
        except Exception as error:  # any exporter failure is reported, never raised
            result, problem = SpanExportResult.FAILURE, f"{type(error).__name__}: {error}"
        if problem and not self._failing:
            log.warning(
                "span export to %s failing (%s); spans are dropped and further failures are "
                "not logged until it recovers",
                self._target,
                " ".join(problem.split()),
            )
        elif not problem and self._failing:
            log.warning("span export to %s recovered", self._target)
        self._failing = problem is not None
        if problem:
            self._backoff = min(self.BACKOFF_MAX, self._backoff * 2 or self.BACKOFF_FIRST)
            self._retry_at = time.monotonic() + self._backoff
        else:
            self._backoff = 0.0
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class LazyExporter(SpanExporter):
    """An exporter made at its first export, in the exporting thread, not at start-up.

    The Zipkin exporter pulls in requests and urllib3 (about a quarter of the service's import
    time): made lazily, they load after the first answer, not before it. If making it fails,
    that export raises, which ReportingExporter reports once.
    """

    def __init__(self, make: Callable[[], SpanExporter]) -> None:
        self._make = make
        self._inner: SpanExporter | None = None
        self._lock = threading.Lock()

    def _exporter(self) -> SpanExporter:
        with self._lock:
            if self._inner is None:
                self._inner = self._make()
            return self._inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter().export(spans)

    def shutdown(self) -> None:
        if self._inner is not None:
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner is None or self._inner.force_flush(timeout_millis)


def _zipkin(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.zipkin.json import ZipkinExporter  # noqa: PLC0415 (lazily)

    return ZipkinExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_SECONDS)


class DropWhileBackingOff(BatchSpanProcessor):
    """A batch processor that drops ended spans at once while its exporter backs off.

    Those spans would be dropped by the exporter anyway; dropping them before the queue also
    spares the exporting thread its wake-up every batch, whose GIL hand-over the request in
    flight at that moment would feel (about one request in a hundred: the p99).
    """

    def __init__(self, exporter: ReportingExporter) -> None:
        super().__init__(
            exporter,
            max_queue_size=MAX_QUEUE_SIZE,
            export_timeout_millis=EXPORT_TIMEOUT_SECONDS * 1000,
        )
        self._reporting = exporter

    def on_end(self, span: ReadableSpan) -> None:
        if not self._reporting.backing_off:
            super().on_end(span)


class _FirstWarningOnly(logging.Filter):
    """Lets a logger's first warning through, then raises the logger to ERROR.

    The SDK's batch processor warns for every span dropped from a full queue (its only warning);
    once the level is raised, later ones are not even formatted, which a filter alone would not
    spare: a log record per span is a cost every request feels while the collector hangs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING:
            logging.getLogger(record.name).setLevel(logging.ERROR)
        return True


class _OncePerProblem(logging.Filter):
    """Lets each distinct problem (message template) through once, its arguments cut short.

    The baggage propagator warns about a malformed ``baggage`` header with the header in the
    message: any client could otherwise write tens of kilobytes to the log on every request.
    """

    LIMIT = 100

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        problem = str(record.msg)
        if problem in self._seen:
            return False
        self._seen.add(problem)
        if isinstance(record.args, tuple):
            record.args = tuple(_cut(arg, self.LIMIT) for arg in record.args)
        record.msg = f"{problem} (logged once)"
        return True


def _cut(value: object, limit: int) -> object:
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value)} characters)"
    return value


def _quiet_sdk_loggers() -> None:
    # The Zipkin exporter logs every failed batch; ReportingExporter reports the problem once.
    logging.getLogger("opentelemetry.exporter.zipkin.json").setLevel(logging.CRITICAL)
    sdk = logging.getLogger("opentelemetry.sdk._shared_internal")
    if not any(isinstance(f, _FirstWarningOnly) for f in sdk.filters):
        sdk.addFilter(_FirstWarningOnly())


def configure_propagation() -> None:
    """Accept and emit W3C tracecontext + baggage and B3 (single and multi header).

    Knative's proxies pass W3C traceparent, Istio's Envoy uses B3. OTEL_PROPAGATORS, when set,
    wins: the SDK has already applied it. A malformed baggage header is logged once per kind of
    problem, cut short.
    """
    baggage = logging.getLogger("opentelemetry.baggage.propagation")
    if not any(isinstance(f, _OncePerProblem) for f in baggage.filters):
        baggage.addFilter(_OncePerProblem())
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
    settings: Settings, exporter: ReportingExporter | None = None
) -> TracerProvider:
    """A provider exporting in batches to ``exporter``, else to the Zipkin endpoint if set.

    With no exporter and no endpoint, spans are still made (for propagation) but go nowhere and
    nothing touches the network.
    """
    provider = TracerProvider(resource=resource_for(settings))
    if exporter is None and settings.zipkin_endpoint:
        endpoint = settings.zipkin_endpoint
        exporter = ReportingExporter(LazyExporter(lambda: _zipkin(endpoint)), endpoint)
        _quiet_sdk_loggers()
        log.info("exporting spans to %s", settings.zipkin_endpoint)
    if exporter is not None:
        provider.add_span_processor(DropWhileBackingOff(exporter))
    return provider
