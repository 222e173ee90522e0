"""The scaling dashboard: one definition, rendered for Grafana and for vmui, the same queries."""

from __future__ import annotations

import json
import re

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as schema
from grafana_foundation_sdk.models import prometheus, timeseries, units

from infra import dashboard
from infra.config import parse, stack_values
from infra.manifest import dashboard_configmap

NAMESPACE, SERVICE = "hackathon-pi-knative", "myfirstserverlessapp"


def _grafana_panels() -> list[dict[str, object]]:
    board = dashboard.grafana(NAMESPACE, SERVICE)
    return [p for p in board["panels"] if p["type"] == "timeseries"]


def test_the_three_views_of_the_original_and_knatives_board_are_there() -> None:
    titles = {row.title: [p.title for p in row.panels] for row in dashboard.ROWS}
    assert list(titles) == ["Deployment", "Scaling Debugging", "HTTP"]
    metrics = " ".join(q.expr for p in dashboard.panels() for q in p.queries)
    for name in (
        "kube_deployment_spec_replicas", "kube_deployment_status_replicas_available",
        "kube_deployment_status_replicas_unavailable", "kn_revision_pods_desired",
        "kn_revision_pods_requested", "kn_revision_pods_count", "kn_revision_pods_pending_count",
        "kn_revision_pods_terminating_count", "kn_revision_concurrency_stable",
        "kn_revision_concurrency_panic", "kn_revision_concurrency_target",
        "kn_revision_panic_mode", "kn_revision_capacity_excess",
        "kn_serving_invocation_duration_seconds_bucket",
    ):  # fmt: skip
        assert re.search(rf"\b{name}\{{", metrics), name


def test_every_query_is_filtered_to_the_namespace_and_service() -> None:
    for panel in dashboard.panels():
        for query in panel.queries:
            assert "{namespace}" in query.expr, panel.title
            assert "{service}" in query.expr, panel.title


def test_vmui_gets_the_values_and_grafana_its_variables_in_the_same_queries() -> None:
    vmui = dashboard.vmui(NAMESPACE, SERVICE)
    vmui_exprs = [e for row in vmui["rows"] for p in row["panels"] for e in p["expr"]]
    grafana_exprs = [t["expr"] for p in _grafana_panels() for t in p["targets"]]  # type: ignore[attr-defined]
    assert len(vmui_exprs) == len(grafana_exprs) == sum(len(p.queries) for p in dashboard.panels())
    for shown, templated in zip(vmui_exprs, grafana_exprs, strict=True):
        assert "{namespace}" not in shown
        assert "$" not in shown.replace("${1}", "")
        assert f'"{NAMESPACE}"' in shown
        back = templated.replace("$namespace", NAMESPACE).replace("$service", SERVICE)
        assert back.replace("$__rate_interval", dashboard.VMUI_WINDOW) == shown


def test_grafana_panels_sit_in_their_rows_without_overlapping() -> None:
    board = dashboard.grafana(NAMESPACE, SERVICE)
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    assert [p["id"] for p in board["panels"]] == list(range(1, len(board["panels"]) + 1))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["namespace"]["current"]["value"] == NAMESPACE
    assert variables["service"]["current"]["value"] == SERVICE
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _grafana_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_configmap_carries_the_grafana_json_with_the_sidecars_label() -> None:
    config = parse({**stack_values("bosun"), "grafanaDashboard": True})
    configmap = dashboard_configmap(config)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == NAMESPACE
    (text,) = configmap["data"].values()
    assert json.loads(text) == dashboard.grafana(NAMESPACE, SERVICE)
    assert json.loads(text)["uid"] == dashboard.UID


def test_every_grafana_panel_queries_prometheus_with_its_panels_queries() -> None:
    grafana = _grafana_panels()
    assert [p["title"] for p in grafana] == [p.title for p in dashboard.panels()]
    for shown, panel in zip(grafana, dashboard.panels(), strict=True):
        targets = shown["targets"]
        assert isinstance(targets, list)
        assert [t["refId"] for t in targets] == [chr(ord("A") + i) for i in range(len(targets))]
        assert [t["legendFormat"] for t in targets] == [q.legend for q in panel.queries]
        for target, query in zip(targets, panel.queries, strict=True):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            expr = dashboard.expand(
                query.expr, namespace="$namespace", service="$service", window="$__rate_interval"
            )
            assert target["expr"] == expr, panel.title
        assert shown["fieldConfig"] == {"defaults": {"unit": panel.unit}, "overrides": []}
        assert shown["options"]["legend"]["showLegend"] is panel.legend  # type: ignore[index]


def test_every_unit_is_one_grafana_knows() -> None:
    known = {v for k, v in vars(units).items() if not k.startswith("_") and isinstance(v, str)}
    for panel in dashboard.panels():
        assert panel.unit in known, panel.title


def test_the_grafana_json_reads_back_into_the_sdks_models_unchanged() -> None:
    """Decoded with the SDK's own schema (the Prometheus queries and the timeseries options as
    their typed models, not as unknown data) and encoded again, the JSON is the same."""
    register_default_plugins()
    text = dashboard.grafana_json(NAMESPACE, SERVICE)
    board = schema.Dashboard.from_json(json.loads(text))
    assert board.panels is not None
    charts = [p for p in board.panels if isinstance(p, schema.Panel)]
    assert len(charts) == len(dashboard.panels())
    for chart in charts:
        assert isinstance(chart.options, timeseries.Options), chart.title
        assert chart.targets, chart.title
        assert all(isinstance(t, prometheus.Dataquery) for t in chart.targets), chart.title
    again = json.loads(json.dumps(board, cls=JSONEncoder))
    for panel in again["panels"]:  # decoding fills in the timeseries' field config, empty here
        if panel["type"] == "timeseries":
            assert panel["fieldConfig"]["defaults"].pop("custom") == {}, panel["title"]
    assert again == json.loads(text)
