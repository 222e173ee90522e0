"""The scaling dashboard: its panels defined once, rendered for Grafana and for vmui.

Grafana's rendering is built with Grafana Labs' typed builders (grafana-foundation-sdk), so its
JSON follows Grafana's dashboard schema by construction; vmui's is a small dict of its own.

Three rows, as the original showed its load test: the Deployment's replicas (kube-state-metrics,
the original's "Deployment" board), Knative's "Scaling Debugging" board with the metric names of
Knative 1.19 and later (the autoscaler's ``kn_revision_*`` gauges), and the HTTP view from
queue-proxy's request metrics and the app's own gauge. A query names the namespace and the
Knative Service as ``{namespace}`` and ``{service}``, and a rate's window as ``{window}``:
Grafana gets its variables there (``$namespace``, ``$service``, ``$__rate_interval``), vmui,
which has no variables, the values themselves.

Where the series come from (docs/local-cluster.md, "Watch it scale"): ``kn_revision_*`` carry the
revision's labels as the autoscaler records them (``k8s_namespace_name``, ``kn_service_name``);
queue-proxy's and the app's series get ``namespace``, ``service``, ``revision`` and ``pod`` from
the scrape's pod discovery; kube-state-metrics names each Deployment, which Knative calls
``<revision>-deployment``, the revision ``<service>-<generation>``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as schema

UID = "myfirstserverlessapp-scaling"
TITLE = "myfirstserverlessapp: watch it scale"
# The ConfigMap label kube-prometheus-stack's Grafana sidecar loads dashboards from.
GRAFANA_LABEL = ("grafana_dashboard", "1")


@dataclass(frozen=True)
class Query:
    expr: str  # PromQL (MetricsQL is a superset), with {namespace}, {service} and {window}
    legend: str  # the series' name in the legend


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str  # Grafana's unit id: short, s, reqps, none
    queries: tuple[Query, ...]
    width: int = 6  # of 12 columns
    legend: bool = True  # off where one series a pod would make it longer than the chart


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


_DEPLOYMENT = 'namespace="{namespace}", deployment=~"{service}-[0-9]+-deployment"'
_REVISION = 'k8s_namespace_name="{namespace}", kn_service_name="{service}"'
_POD = 'namespace="{namespace}", service="{service}"'
_REQUESTS = f"kn_serving_invocation_duration_seconds_bucket{{{_POD}}}"


def _sum(metric: str, selector: str, legend: str) -> Query:
    return Query(f"sum({metric}{{{selector}}})", legend)


def _latency(quantile: float) -> Query:
    return Query(
        f"histogram_quantile({quantile}, sum by (le) (rate({_REQUESTS}[{{window}}])))",
        f"p{round(quantile * 100)}",
    )


ROWS = (
    Row(
        "Deployment",
        (
            Panel(
                "Deployment replicas",
                "The revisions' Deployments as kube-state-metrics sees them: the replicas the "
                "autoscaler asked for, those that exist, and the available and unavailable ones.",
                "short",
                (
                    _sum("kube_deployment_spec_replicas", _DEPLOYMENT, "desired"),
                    _sum("kube_deployment_status_replicas", _DEPLOYMENT, "current"),
                    _sum("kube_deployment_status_replicas_available", _DEPLOYMENT, "available"),
                    _sum("kube_deployment_status_replicas_unavailable", _DEPLOYMENT, "unavailable"),
                ),
                width=12,
            ),
        ),
    ),
    Row(
        "Scaling Debugging",
        (
            Panel(
                "Revision pods",
                "Knative's autoscaler: pods it wants (desired), asked Kubernetes for "
                "(requested), that are ready (actual), pending, not ready and terminating.",
                "short",
                (
                    _sum("kn_revision_pods_desired", _REVISION, "desired"),
                    _sum("kn_revision_pods_requested", _REVISION, "requested"),
                    _sum("kn_revision_pods_count", _REVISION, "actual"),
                    _sum("kn_revision_pods_pending_count", _REVISION, "pending"),
                    _sum("kn_revision_pods_not_ready_count", _REVISION, "not ready"),
                    _sum("kn_revision_pods_terminating_count", _REVISION, "terminating"),
                ),
            ),
            Panel(
                "Observed concurrency",
                "Requests in flight per pod, averaged over the stable window and over the "
                "panic window, against the target (target x utilization).",
                "short",
                (
                    _sum("kn_revision_concurrency_stable", _REVISION, "stable"),
                    _sum("kn_revision_concurrency_panic", _REVISION, "panic"),
                    _sum("kn_revision_concurrency_target", _REVISION, "target"),
                ),
            ),
            Panel(
                "Panic mode",
                "1 while the autoscaler is in panic mode (the panic window's concurrency "
                "exceeded the panic threshold), else 0.",
                "none",
                (Query(f"max(kn_revision_panic_mode{{{_REVISION}}})", "panic mode"),),
            ),
            Panel(
                "Excess burst capacity",
                "Spare capacity over the stable window, minus the target burst capacity: "
                "below zero the activator stays in the request path.",
                "short",
                (_sum("kn_revision_capacity_excess", _REVISION, "excess burst capacity"),),
            ),
        ),
    ),
    Row(
        "HTTP",
        (
            Panel(
                "Request volume by response code class",
                "Requests per second answered through queue-proxy, by class of status code.",
                "reqps",
                (
                    Query(
                        "sum by (code_class) (label_replace(rate(kn_serving_invocation_duration_"
                        f'seconds_count{{{_POD}}}[{{window}}]), "code_class", "${{1}}xx", '
                        '"http_response_status_code", "([0-9]).*"))',
                        "{{code_class}}",
                    ),
                ),
            ),
            Panel(
                "Response time",
                "Latency of the requests queue-proxy served, including their time in its queue.",
                "s",
                (_latency(0.5), _latency(0.95), _latency(0.99)),
            ),
            Panel(
                "Requests in flight by pod",
                "The app's own gauge, one series per pod: how the load was spread.",
                "short",
                (
                    Query(
                        f"sum by (pod) (myfirstserverlessapp_requests_in_flight{{{_POD}}})",
                        "{{pod}}",
                    ),
                ),
                width=12,
                legend=False,
            ),
        ),
    ),
)


def panels() -> list[Panel]:
    return [panel for row in ROWS for panel in row.panels]


def expand(expr: str, *, namespace: str, service: str, window: str) -> str:
    """``expr`` with its placeholders filled (literal braces of PromQL are left as they are)."""
    values = {"{namespace}": namespace, "{service}": service, "{window}": window}
    for placeholder, value in values.items():
        expr = expr.replace(placeholder, value)
    return expr


VMUI_WINDOW = "30s"  # 15 scrapes at the local store's 2 s


def vmui(namespace: str, service: str) -> dict[str, Any]:
    """A vmui custom dashboard (``-vmui.customDashboardsPath``) for one Knative Service."""

    def panel(panel: Panel) -> dict[str, Any]:
        return {
            "title": panel.title,
            "description": panel.description,
            "unit": "" if panel.unit in ("short", "none") else panel.unit,
            "width": panel.width,
            "expr": [
                expand(q.expr, namespace=namespace, service=service, window=VMUI_WINDOW)
                for q in panel.queries
            ],
            "alias": [q.legend for q in panel.queries],
            "showLegend": panel.legend,
        }

    return {
        "title": f"{TITLE} ({namespace}/{service})",
        "rows": [{"title": row.title, "panels": [panel(p) for p in row.panels]} for row in ROWS],
    }


GRID_COLUMNS = 24  # Grafana's grid (a Panel's width counts 12)
PANEL_HEIGHT = 8


def grafana_dashboard(namespace: str, service: str) -> schema.Dashboard:
    """The Grafana dashboard as the SDK's model of Grafana's schema, built with its typed builders:
    variables for the data source, the namespace and the service (defaulting to these), and each
    row expanded, its panels after it on the grid."""
    datasource = schema.DataSourceRef(type_val="prometheus", uid="${datasource}")

    def textbox(name: str, label: str, value: str) -> board.TextBoxVariable:
        return (
            board.TextBoxVariable(name)
            .label(label)
            .default_value(value)
            .current(schema.VariableOption(text=value, value=value))
        )

    def target(index: int, query: Query) -> prometheus.Dataquery:
        expr = expand(
            query.expr, namespace="$namespace", service="$service", window="$__rate_interval"
        )
        return (
            prometheus.Dataquery()
            .ref_id(chr(ord("A") + index))
            .datasource(datasource)
            .expr(expr)
            .legend_format(query.legend)
        )

    built = (
        board.Dashboard(TITLE)
        .uid(UID)
        .tags(["knative", "myfirstserverlessapp"])
        .timezone("browser")
        .refresh("5s")
        .time("now-15m", "now")
        .with_variable(
            board.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(textbox("namespace", "Namespace", namespace))
        .with_variable(textbox("service", "Knative Service", service))
    )
    # Positions are given, not left to the builder, which wraps only after a panel has run over
    # the grid's right edge (a full-width panel after a half-width one would).
    ids = itertools.count(1)
    y = 0
    for row in ROWS:
        position = schema.GridPos(h=1, w=GRID_COLUMNS, x=0, y=y)
        built.with_row(board.Row(row.title).id(next(ids)).grid_pos(position))
        y += 1
        x = 0
        for panel in row.panels:
            width = panel.width * GRID_COLUMNS // 12
            if x + width > GRID_COLUMNS:
                x, y = 0, y + PANEL_HEIGHT
            legend = (
                common_builders.VizLegendOptions()
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
                .show_legend(panel.legend)
            )
            built.with_panel(
                timeseries.Panel()
                .id(next(ids))
                .title(panel.title)
                .description(panel.description)
                .datasource(datasource)
                .grid_pos(schema.GridPos(h=PANEL_HEIGHT, w=width, x=x, y=y))
                .unit(panel.unit)
                .legend(legend)
                .targets([target(index, query) for index, query in enumerate(panel.queries)])
            )
            x += width
        y += PANEL_HEIGHT
    return built.build()


def grafana_json(namespace: str, service: str) -> str:
    """Grafana's dashboard JSON, as the SDK's encoder writes its models."""
    return json.dumps(
        grafana_dashboard(namespace, service), cls=JSONEncoder, indent=2, sort_keys=True
    )


def grafana(namespace: str, service: str) -> dict[str, Any]:
    """The Grafana dashboard as plain JSON data, as Grafana (and the ConfigMap) reads it."""
    data: dict[str, Any] = json.loads(grafana_json(namespace, service))
    return data
