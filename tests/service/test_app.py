from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from service.app import create_app
from service.render import BANNER
from service.settings import Settings
from service.telemetry import configure_propagation, resource_for

EXAMPLE = "/?in=10000&nap=0&processes=50"
EXPECTED_LINES = (
    "Method A calculated the highest prime below 10000 as 9973\n"
    "Method B napped for 0 seconds\n"
    "Method C calculated pi as 3.161199 using 50 processes\n"
)
CHAIN = ["heavyLifting", "heavyweightMethodA", "heavyweightMethodB", "heavyweightMethodC"]


@dataclass
class Harness:
    client: TestClient
    spans: InMemorySpanExporter

    def finished(self) -> dict[str, ReadableSpan]:
        return {span.name: span for span in self.spans.get_finished_spans()}


def _attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    span_id: int = span.context.span_id
    return span_id


@pytest.fixture
def harness() -> Iterator[Harness]:
    configure_propagation()
    settings = Settings.from_env(
        {"K_SERVICE": "faas", "K_REVISION": "faas-00001", "COLOUR": "green"}
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource_for(settings))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with TestClient(create_app(settings, provider)) as client:
        yield Harness(client, exporter)
    provider.shutdown()


def test_example_request_answers_the_original_text(harness: Harness) -> None:
    response = harness.client.get(EXAMPLE)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == BANNER + "\n" + EXPECTED_LINES
    assert response.headers["k-revision"] == "faas-00001"


def test_zero_processes_is_one_term_as_in_the_original(harness: Harness) -> None:
    response = harness.client.get("/?in=10000&nap=0&processes=0")
    assert response.status_code == 200
    assert response.text.endswith("Method C calculated pi as 4.000000 using 0 processes\n")
    negative = harness.client.get("/?in=10000&nap=0&processes=-1")
    assert negative.status_code == 400
    assert negative.text.startswith("processes: got '-1', which is too small")


def test_malformed_baggage_is_logged_once_per_problem_and_cut_short(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    entries = ",".join(f"k{i}" for i in range(3000))  # 3,000 members, none of them key=value
    too_long = "x=" + "y" * 9000  # over the 8 KiB a baggage header may have
    for header in (entries, entries, too_long, too_long, "=bad", "=bad"):
        assert harness.client.get(EXAMPLE, headers={"baggage": header}).status_code == 200
    records = [r for r in caplog.records if r.name == "opentelemetry.baggage.propagation"]
    assert 1 <= len(records) <= 3, [r.getMessage()[:80] for r in records]
    assert len({r.msg for r in records}) == len(records), "each problem once"
    assert all(len(r.getMessage()) < 300 for r in records)


def test_browsers_get_html_with_the_banner_in_colour(harness: Harness) -> None:
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = harness.client.get(EXAMPLE, headers={"accept": accept})
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<pre style="color: green">' in response.text
    assert "<p>Method A calculated the highest prime below 10000 as 9973</p>" in response.text


@pytest.mark.parametrize(
    "request_args",
    [
        {"url": EXAMPLE, "headers": {"accept": "application/json"}},
        {"url": EXAMPLE + "&format=json", "headers": {"accept": "text/html"}},
    ],
)
def test_json_when_asked(harness: Harness, request_args: dict[str, object]) -> None:
    response = harness.client.get(**request_args)  # type: ignore[arg-type]
    body = response.json()
    assert response.headers["content-type"] == "application/json"
    assert body["highest_prime"] == 9973
    assert body["napped_seconds"] == 0
    assert f"{body['pi']:.6f}" == "3.161199"
    assert body["revision"] == "faas-00001"
    assert set(body["durations_seconds"]) == set(CHAIN)
    assert all(v >= 0 for v in body["durations_seconds"].values())


def test_plain_curl_gets_text(harness: Harness) -> None:
    assert harness.client.get(EXAMPLE, headers={"accept": "*/*"}).text.endswith(EXPECTED_LINES)


def test_no_parameters_gives_a_usage_page(harness: Harness) -> None:
    response = harness.client.get("/")
    assert response.status_code == 200
    assert "Usage: GET /?in=I&nap=N&processes=P" in response.text
    assert "nap        method B sleeps this many seconds, 0 to 10" in response.text
    json_usage = harness.client.get("/?format=json").json()
    assert json_usage["parameters"]["nap"] == {"min": 0, "max": 10}


@pytest.mark.parametrize(
    ("query", "parameter", "fragment"),
    [
        ("in=abc&nap=0&processes=5", "in", "in: got 'abc', which is not an integer"),
        ("in=100&nap=11&processes=5", "nap", "nap: got '11', which is too large"),
        ("in=100&nap=0", "processes", "processes: missing"),
        ("in=100&in=200&nap=0&processes=5", "in", "in: given 2 times"),
        ("in=100&nap=0&processes=5&format=yaml", "format", "format: got 'yaml'"),
        ("in=%00%ff&nap=0&processes=5", "in", "which is not an integer"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(
    harness: Harness, query: str, parameter: str, fragment: str
) -> None:
    response = harness.client.get(f"/?{query}")
    assert response.status_code == 400
    assert fragment in response.text
    as_json = harness.client.get(f"/?{query}", headers={"accept": "application/json"})
    assert as_json.json()["parameter"] == parameter
    metrics = harness.client.get("/metrics").text
    assert f'myfirstserverlessapp_rejected_requests_total{{parameter="{parameter}"}} 2.0' in metrics


def test_error_html_is_escaped(harness: Harness) -> None:
    html = {"accept": "text/html"}
    response = harness.client.get("/?in=<script>&nap=0&processes=1", headers=html)
    assert response.status_code == 400
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_no_query_string_causes_a_server_error(harness: Harness, raw: str) -> None:
    # '=', '&', '+' and '%' stay raw so malformed escapes and odd pairs reach the app as sent.
    response = harness.client.get("/?" + quote(raw, safe="=&+%"))
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert response.text.split(":")[0] in {"in", "nap", "processes", "format"}


def test_health_and_readiness(harness: Harness) -> None:
    assert harness.client.get("/healthz").text == "ok\n"
    assert harness.client.get("/readyz").text == "ready\n"


def test_metrics_count_calls_durations_and_process(harness: Harness) -> None:
    harness.client.get(EXAMPLE)
    harness.client.get(EXAMPLE)
    text = harness.client.get("/metrics").text
    for method in CHAIN:
        assert f'myfirstserverlessapp_calls_total{{method="{method}"}} 2.0' in text
        assert f'myfirstserverlessapp_duration_seconds_count{{method="{method}"}} 2.0' in text
    assert "myfirstserverlessapp_requests_in_flight 0.0" in text
    assert "process_resident_memory_bytes" in text
    assert "python_gc_objects_collected_total" in text


def test_spans_nest_as_in_the_original_with_parameters_and_results(harness: Harness) -> None:
    harness.client.get("/?in=10000&nap=0&processes=50")
    spans = harness.finished()
    assert spans["GET /"].parent is None
    parent = spans["GET /"]
    for name in CHAIN:
        assert _parent_id(spans[name]) == _span_id(parent), name
        parent = spans[name]
    assert _attributes(spans["heavyLifting"]) == {
        "app.in": 10000,
        "app.nap": 0,
        "app.processes": 50,
    }
    assert _attributes(spans["heavyweightMethodA"])["app.highest_prime"] == 9973
    assert _attributes(spans["heavyweightMethodB"])["app.napped_seconds"] == 0
    assert f"{_attributes(spans['heavyweightMethodC'])['app.pi']:.6f}" == "3.161199"
    assert spans["GET /"].resource.attributes["service.name"] == "faas"
    assert spans["GET /"].resource.attributes["knative.revision"] == "faas-00001"


def test_huge_values_are_recorded_as_text_attributes() -> None:
    configure_propagation()
    settings = Settings.from_env({"MAX_IN": "3317044064679887385961981"})
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with TestClient(create_app(settings, provider)) as client:
        response = client.get("/?in=3317044064679887385961981&nap=0&processes=1")
    assert "as 3317044064679887385961813" in response.text
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert _attributes(spans["heavyweightMethodA"])["app.in"] == "3317044064679887385961981"


def test_health_and_metrics_are_not_traced(harness: Harness) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        harness.client.get(path)
    assert harness.spans.get_finished_spans() == ()


TRACE_ID = "463ac35c9f6413ad48485a3953bb6124"
PARENT_ID = "a2fb4a1d1a96d312"


@pytest.mark.parametrize(
    "headers",
    [
        {"b3": f"{TRACE_ID}-{PARENT_ID}-1"},
        {"x-b3-traceid": TRACE_ID, "x-b3-spanid": PARENT_ID, "x-b3-sampled": "1"},
        {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    ],
    ids=["b3-single", "b3-multi", "w3c"],
)
def test_incoming_trace_is_continued(harness: Harness, headers: dict[str, str]) -> None:
    harness.client.get(EXAMPLE, headers=headers)
    spans = harness.finished()
    server = spans["GET /"]
    assert f"{_parent_id(server):016x}" == PARENT_ID
    for span in spans.values():
        assert span.context is not None
        assert f"{span.context.trace_id:032x}" == TRACE_ID
