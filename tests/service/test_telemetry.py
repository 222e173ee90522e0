"""The exporting side of tracing: a failing collector is tried again only after a back-off."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from service.settings import Settings
from service.telemetry import ReportingExporter, build_tracer_provider


class Refusing(SpanExporter):
    """An exporter whose collector is down: every batch raises, as a refused connection does."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append(len(spans))
        raise ConnectionRefusedError("connection refused")


class Counting(ReportingExporter):
    def __init__(self, inner: SpanExporter) -> None:
        super().__init__(inner, "http://collector.invalid/api/v2/spans")
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        return super().export(spans)


def _end_spans(exporter: ReportingExporter, later: int) -> None:
    """One span, flushed (the first export attempt), then ``later`` spans, flushed."""
    provider = build_tracer_provider(Settings.from_env({}), exporter=exporter)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("first"):
        pass
    provider.force_flush()
    for _ in range(later):
        with tracer.start_as_current_span("later"):
            pass
    provider.force_flush()
    provider.shutdown()


def test_spans_ended_while_the_collector_backs_off_never_reach_the_exporter() -> None:
    inner = Refusing()
    exporter = Counting(inner)
    _end_spans(exporter, 1500)
    # The first attempt failed; every span after it was dropped before the queue, so neither
    # the exporting thread nor the exporter saw another batch.
    assert inner.batches == [1]
    assert exporter.calls == 1
    assert exporter.backing_off


def test_the_collector_is_tried_again_once_the_back_off_has_passed() -> None:
    inner = Refusing()
    exporter = Counting(inner)
    exporter.BACKOFF_FIRST = 0.0  # the back-off has passed by the next span
    _end_spans(exporter, 600)
    assert inner.batches[0] == 1
    assert sum(inner.batches) == 601
