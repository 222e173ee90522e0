"""The scaling dashboard: one definition, rendered for Grafana and for vmui, the same queries."""

from __future__ import annotations

import json
import re

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
