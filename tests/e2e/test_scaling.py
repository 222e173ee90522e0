"""Watch it scale: the original's load test on the local cluster, 0 -> 10 replicas -> 0.

The bosun stack's Service (target 1, max-scale 10), from zero pods, loaded as the original did
(`hey -z 120s -c 11` with `?in=100000&nap=9&processes=500`, shortened to 60 s) by `faas load`
with `--watch` and the metrics store; then Knative's own view from the store, each dashboard
panel's data, and the vmui dashboard in a real browser.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml
from lightkube import Client
from lightkube.generic_resource import create_namespaced_resource

from infra import dashboard
from infra.rules import duration_seconds
from tests.e2e.browser import chromium_page
from tests.e2e.kube import ROOT, Kube, eventually
from tests.e2e.test_serving import manifests

pytestmark = pytest.mark.scale

NAME, NAMESPACE = "myfirstserverlessapp", "hackathon-pi-knative"  # the bosun stack's
HOST = f"{NAME}.{NAMESPACE}.example.com"
LOAD = ("-z", "60s", "-c", "11")  # the original's -z 120s, shortened for CI
QUERY = "in=100000&nap=9&processes=500"
MAX_SCALE = 10
# queue-proxy's quiet period after SIGTERM, before it exits (knative.dev/serving
# pkg/queue/sharedmain: drainSleepDuration), and what a pod's removal takes beyond it here.
DRAIN_SECONDS, SLACK_SECONDS = 30, 30
ARTIFACTS = ROOT / "build" / "e2e"
PodAutoscaler = create_namespaced_resource(
    "autoscaling.internal.knative.dev", "v1alpha1", "PodAutoscaler", "podautoscalers"
)
# Knative's defaults for the keys the bound reads, where config-autoscaler leaves them unset.
AUTOSCALER_DEFAULTS = {
    "stable-window": "60s",
    "scale-to-zero-grace-period": "30s",
    "scale-to-zero-pod-retention-period": "0s",
}


def scale_down_bound(kube: Kube, window: str | None) -> float:
    """Seconds from the load's end to no pod at all, from the cluster's config-autoscaler: the
    revision's stable window (its annotation, else stable-window), after which the desired scale
    is 0; then the later of the scale-to-zero grace period and the pod retention period, before
    the last pod is removed; then queue-proxy's drain; plus slack for the pods' removal."""
    data = kube.get("configmap", "config-autoscaler", "-n", "knative-serving").get("data", {})
    config = {**AUTOSCALER_DEFAULTS, **{k: v for k, v in data.items() if k != "_example"}}
    if window:
        config["stable-window"] = window
    seconds = {key: duration_seconds(config[key]) for key in AUTOSCALER_DEFAULTS}
    stable, grace, retention = (s or 0.0 for s in seconds.values())
    assert None not in seconds.values(), config
    return stable + max(grace, retention) + DRAIN_SECONDS + SLACK_SECONDS


class AutoscalerStatus(threading.Thread):
    """The revision's PodAutoscaler status as it changes, until ``stop()``: (Unix time,
    desiredScale, actualScale) at each event. A broken watch is an error for ``stop()``."""

    def __init__(self, client: Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.changes: list[tuple[float, int, int]] = []
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for _, autoscaler in self.client.watch(PodAutoscaler, namespace=NAMESPACE):
                if self.stopped.is_set():
                    return
                status = autoscaler.to_dict().get("status") or {}  # type: ignore[no-untyped-call]
                self.changes.append((time.time(), int(status.get("desiredScale") or 0),
                                     int(status.get("actualScale") or 0)))  # fmt: skip
        except BaseException as error:  # carried to stop(): a thread's raise fails no test
            # The watch waits for events until its connection ends, which after stop() is
            # when the session's cluster stops; before stop(), a broken watch is an error.
            if not self.stopped.is_set():
                self.error = error

    def stop(self) -> list[tuple[float, int, int]]:
        """The changes so far; the watch ends at its next event or when its connection does."""
        self.stopped.set()
        if self.error is not None:
            raise AssertionError(f"the PodAutoscaler watch failed: {self.error!r}") from self.error
        return list(self.changes)


@dataclass
class LoadTest:
    report: dict[str, Any]
    summary: dict[str, Any]
    timeline: list[dict[str, Any]]
    autoscaler: list[tuple[float, int, int]]  # the PodAutoscaler's (time, desired, actual)
    bound: float
    metrics: str
    started: float  # the load's start, as a Unix time

    def per_pod_peak(self, metric: str) -> dict[str, float]:
        """Each pod's highest value of METRIC (a counter) since the load started."""
        since = math.ceil(time.time() - self.started)
        response = httpx.get(
            f"{self.metrics}/api/v1/query",
            params={"query": f"max_over_time({metric}[{since}s])"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        result = response.json()["data"]["result"]
        return {s["metric"]["pod"]: float(s["value"][1]) for s in result}

    def query(self, expr: str) -> list[dict[str, Any]]:
        """A range query of the metrics store, from the load's start to now."""
        response = httpx.get(
            f"{self.metrics}/api/v1/query_range",
            params={"query": expr, "start": f"{self.started:.3f}", "step": "2s"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result


def _pods(kube: Kube) -> list[Any]:
    selector = f"serving.knative.dev/service={NAME}"
    return list(kube.get("pods", "-n", NAMESPACE, "-l", selector)["items"])


@pytest.fixture(scope="module")
def load_test(kube: Kube, app_image: str) -> Iterator[LoadTest]:
    documents = manifests(app_image)
    kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    try:
        kube.wait_ready(NAME, NAMESPACE)
        template = documents[-1]["spec"]["template"]["metadata"]["annotations"]
        bound = scale_down_bound(kube, template.get("autoscaling.knative.dev/window"))
        # From zero pods: the first revision starts with one (initial scale), then goes idle.
        eventually(lambda: not _pods(kube), bound + 60, "zero pods before the load")
        status = AutoscalerStatus(kube.client)
        status.start()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        faas = Path(sys.executable).with_name("faas")
        started = time.time()
        result = kube.run(
            str(faas), "load", *LOAD, "-host", HOST, "--watch", NAME, "--namespace", NAMESPACE,
            "--watch-after", str(bound), "--json", "--plot", str(ARTIFACTS / "scaling.png"),
            f"http://{kube.gateway}/?{QUERY}", timeout=60 + bound + 120,
        )  # fmt: skip
        document = json.loads(result.stdout)
        (ARTIFACTS / "load.json").write_text(json.dumps(document, indent=2))
        yield LoadTest(
            report=document["report"],
            summary=document["replicas"]["summary"],
            timeline=document["replicas"]["timeline"],
            autoscaler=status.stop(),
            bound=bound,
            metrics=kube.env["METRICS"],
            started=started,
        )
    finally:
        # test_serving deploys into the same namespace next: it must be gone (with no pod
        # left it goes in seconds).
        kube.kubectl("delete", "namespace", NAMESPACE, "--timeout=300s", timeout=330)


def test_every_request_is_answered_200_and_none_is_lost(load_test: LoadTest) -> None:
    report = load_test.report
    # 11 workers napping 9 s for 60 s: at least 6 rounds each.
    assert report["requests"] >= 11 * 6
    assert report["status_codes"] == {"200": report["requests"]}
    assert report["errors"] == {}
    # Every request the report counts reached the app once: the pods' own counters agree.
    per_pod = load_test.per_pod_peak(
        f'myfirstserverlessapp_calls_total{{method="heavyLifting", namespace="{NAMESPACE}", '
        f'service="{NAME}"}}'
    )
    assert sum(per_pod.values()) == report["requests"], per_pod


def test_knative_wants_ten_pods_gets_ten_ready_and_never_more(load_test: LoadTest) -> None:
    assert max(desired for _, desired, _ in load_test.autoscaler) == MAX_SCALE
    # The autoscaler's own wish is unbounded (11 in flight / 0.7 per pod = 16); what it asks
    # Kubernetes for is bounded by max-scale.
    assert load_test.summary["peak_desired"] >= MAX_SCALE
    assert load_test.summary["peak_requested"] == MAX_SCALE
    assert load_test.summary["peak_ready"] == MAX_SCALE
    assert max(s["pods"] for s in load_test.timeline) <= MAX_SCALE


def test_the_load_is_spread_over_at_least_eight_pods(load_test: LoadTest) -> None:
    served = load_test.per_pod_peak(
        f'kn_serving_invocation_duration_seconds_count{{namespace="{NAMESPACE}", '
        f'service="{NAME}", http_response_status_code="200"}}'
    )
    pods = {pod for pod, count in served.items() if count > 0}
    assert len(pods) >= 8, (served, load_test.summary)


def test_back_to_zero_pods_within_the_bound_from_config_autoscaler(load_test: LoadTest) -> None:
    load_end = load_test.report["total_seconds"]
    gone = load_test.summary["all_gone_seconds"]
    assert gone is not None, "pods were still there when the watch ended"
    assert gone - load_end <= load_test.bound
    # The last pod drains (queue-proxy's quiet period) after it stops being live.
    assert gone - load_test.summary["back_to_zero_seconds"] >= DRAIN_SECONDS - 5


# The load's peaks on the Revision pods panel: desired is the autoscaler's unbounded wish,
# requested and actual are bounded by max-scale.
PEAKS = {
    "desired": lambda peak: peak >= MAX_SCALE,
    "requested": lambda peak: peak == MAX_SCALE,
    "actual": lambda peak: peak == MAX_SCALE,
}


@pytest.mark.parametrize("panel", dashboard.panels(), ids=lambda p: p.title)
def test_every_dashboard_panel_shows_the_load_test(
    load_test: LoadTest, panel: dashboard.Panel
) -> None:
    for query in panel.queries:
        expr = dashboard.expand(
            query.expr, namespace=NAMESPACE, service=NAME, window=dashboard.VMUI_WINDOW
        )
        series = load_test.query(expr)
        assert series, f"{panel.title}: no data for {expr}"
        if panel.title == "Revision pods" and query.legend in PEAKS:
            peak = max(float(v) for s in series for _, v in s["values"])
            assert PEAKS[query.legend](peak), f"{panel.title}: {query.legend} peaked at {peak}"


def test_the_boards_requested_and_actual_pods_are_what_the_podautoscaler_said(
    load_test: LoadTest,
) -> None:
    """The Revision pods panel's requested and actual series, as the store has them every 2 s
    over the run, peak where the PodAutoscaler's own status (desiredScale, actualScale) did:
    the board cannot show less than what happened."""
    panel = next(p for p in dashboard.panels() if p.title == "Revision pods")
    status = {"requested": 1, "actual": 2}  # their places in an autoscaler change
    for query in panel.queries:
        if query.legend not in status:
            continue
        expr = dashboard.expand(
            query.expr, namespace=NAMESPACE, service=NAME, window=dashboard.VMUI_WINDOW
        )
        shown = max(float(v) for s in load_test.query(expr) for _, v in s["values"])
        said = max(change[status[query.legend]] for change in load_test.autoscaler)
        assert shown == said, f"{query.legend}: the board peaked at {shown}, the PA at {said}"


def test_the_vmui_dashboard_renders_every_panel_in_chromium(load_test: LoadTest) -> None:
    """vmui's Dashboards tab, as a user opens it after the load test: one chart per panel,
    each with its series in the legend, no error; the screenshot is build/e2e/dashboard.png."""
    panels_ = dashboard.panels()
    titles = [panel.title for panel in panels_]
    with chromium_page() as page:
        page.goto(f"{load_test.metrics}/vmui/#/dashboards?g0.range_input=10m")
        for row in dashboard.ROWS:  # vmui opens the first row; a click opens the others
            named = page.locator(".vm-predefined-dashboard-header", has_text=row.title)
            header = page.locator("header.vm-accordion-header", has=named)
            header.wait_for(timeout=30_000)
            if "header_open" not in (header.get_attribute("class") or ""):
                # The click event alone: vmui re-renders the header between a pointer's
                # mousedown and mouseup, which then makes no click.
                header.dispatch_event("click")
        panels = page.locator(".vm-predefined-panel")
        panels.nth(len(titles) - 1).wait_for(timeout=30_000)
        assert panels.count() == len(titles)
        for index, title in enumerate(titles):
            panel = panels.nth(index)
            panel.scroll_into_view_if_needed()  # vmui queries a panel once it is in view
            header = panel.locator(".vm-predefined-panel-header__title")
            assert header.inner_text() == title
            panel.locator("canvas").first.wait_for(timeout=30_000)
            if panels_[index].legend:  # every query's series, named in the legend, is drawn
                for query in panels_[index].queries:
                    # An alias with {{label}} is named by its series' label values instead.
                    text = None if "{{" in query.legend else query.legend
                    named = panel.locator(".vm-legend-item", has_text=text).first
                    named.wait_for(timeout=30_000)
            assert panel.locator(".vm-alert_error").count() == 0, title
        page.set_viewport_size({"width": 1600, "height": 3600})
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
