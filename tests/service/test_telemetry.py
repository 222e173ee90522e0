"""The exporting side of tracing: a failing collector is tried again only after a back-off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from service.settings import Settings
from service.telemetry import LazyExporter, ReportingExporter, build_tracer_provider


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


def test_the_zipkin_exporter_is_imported_at_the_first_export_not_at_start_up() -> None:
    """Start-up is on the path of a scale from zero; the exporter and requests load later."""
    code = (
        "import sys\n"
        "from service.settings import Settings\n"
        "from service.telemetry import build_tracer_provider\n"
        "settings = Settings.from_env({'OTEL_EXPORTER_ZIPKIN_ENDPOINT':"
        " 'http://127.0.0.1:9/api/v2/spans'})\n"
        "provider = build_tracer_provider(settings)\n"
        "print(sorted(m for m in ('opentelemetry.exporter.zipkin.json', 'requests')"
        " if m in sys.modules))\n"
        "with provider.get_tracer('t').start_as_current_span('s'):\n"
        "    pass\n"
        "provider.force_flush()\n"
        "print('opentelemetry.exporter.zipkin.json' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.splitlines() == ["[]", "True"]


def test_an_exporter_that_cannot_be_made_fails_exports_without_raising() -> None:
    def broken() -> SpanExporter:
        raise ImportError("No module named 'opentelemetry.exporter.zipkin'")

    inner = LazyExporter(broken)
    exporter = Counting(inner)
    _end_spans(exporter, 10)
    assert exporter.calls == 1
    assert exporter.backing_off
    inner.shutdown()  # nothing was made: nothing to shut down
    assert inner.force_flush()


def test_a_lazy_exporter_is_made_once() -> None:
    made: list[Refusing] = []

    def make() -> SpanExporter:
        made.append(Refusing())
        return made[-1]

    exporter = Counting(LazyExporter(make))
    exporter.BACKOFF_FIRST = 0.0
    _end_spans(exporter, 600)
    assert len(made) == 1
    assert sum(made[0].batches) == 601
