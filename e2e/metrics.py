"""The local cluster's metrics: kube-state-metrics, and VictoriaMetrics single-node as the store.

The store scrapes every 2 s what a Prometheus of kube-prometheus-stack would on a real cluster,
each discovered from the API server (``kubernetes_sd_configs`` with the cluster's kubeconfig):
Knative's components at their Services' ``http-metrics`` ports (``config-observability``'s
``metrics-protocol: prometheus``), every revision pod's queue-proxy at ``http-usermetric``
(``request-metrics-protocol: prometheus``, :9091) and its app at ``user-port``, each labelled
with its namespace, service, revision and pod; and kube-state-metrics for the Deployments. It
serves the Prometheus query API and vmui on 127.0.0.1, with the scaling dashboard of
infra/dashboard.py for the bosun stack's Service in vmui's Dashboards tab.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from e2e import tools
from e2e.context import KUBECONFIG, STATE, Context, State, free_port, get_ok
from infra import dashboard
from infra.config import parse, stack_values

SCRAPE_INTERVAL = "2s"
DASHBOARDS = STATE / "dashboards"
STORE_DATA = STATE / "metrics"


def url(state: State) -> str:
    return f"http://127.0.0.1:{state.ports['metrics']}"


def _pod_labels() -> list[dict[str, Any]]:
    """A revision pod's namespace, Knative Service, revision and name as labels."""
    labels = {
        "__meta_kubernetes_namespace": "namespace",
        "__meta_kubernetes_pod_label_serving_knative_dev_service": "service",
        "__meta_kubernetes_pod_label_serving_knative_dev_revision": "revision",
        "__meta_kubernetes_pod_name": "pod",
    }
    return [{"source_labels": [source], "target_label": target}
            for source, target in labels.items()]  # fmt: skip


def _pod_port(job: str, port: str, kubeconfig: Path) -> dict[str, Any]:
    """Every running revision pod's container port named PORT."""
    return {
        "job_name": job,
        "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": port,
             "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_label_serving_knative_dev_revision"],
             "regex": ".+", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_ip"], "regex": ".+", "action": "keep"},
            *_pod_labels(),
        ],
    }  # fmt: skip


def scrape_config(kubeconfig: Path, kube_state_metrics: str) -> dict[str, Any]:
    """The store's Prometheus-format scrape configuration."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "knative",
                "kubernetes_sd_configs": [
                    {"role": "endpoints", "kubeconfig_file": str(kubeconfig),
                     "namespaces": {"names": ["knative-serving"]}},
                ],
                "relabel_configs": [
                    {"source_labels": ["__meta_kubernetes_endpoint_port_name"],
                     "regex": "http-metrics", "action": "keep"},
                    {"source_labels": ["__meta_kubernetes_service_name"],
                     "target_label": "component"},
                ],
            },
            _pod_port("queue-proxy", "http-usermetric", kubeconfig),
            _pod_port("app", "user-port", kubeconfig),
            {
                "job_name": "kube-state-metrics",
                # Its series name their own namespace and deployment: keep those.
                "honor_labels": True,
                "static_configs": [{"targets": [kube_state_metrics]}],
            },
        ],
    }  # fmt: skip


def kube_state_metrics(ctx: Context) -> None:
    """kube-state-metrics for Deployments, on 127.0.0.1 (the store scrapes it)."""
    port, telemetry = free_port(), free_port()
    ctx.state.ports.update({"kube-state-metrics": port})
    ctx.start(
        "kube-state-metrics",
        [
            str(tools.path("kube-state-metrics")),
            f"--kubeconfig={KUBECONFIG}",
            "--resources=deployments",
            "--host=127.0.0.1",
            f"--port={port}",
            "--telemetry-host=127.0.0.1",
            f"--telemetry-port={telemetry}",
        ],
        lambda: get_ok(f"http://127.0.0.1:{port}/healthz"),
    )


def bosun_dashboard() -> dict[str, Any]:
    """The vmui dashboard of the bosun stack's Knative Service."""
    config = parse(stack_values("bosun"))
    return dashboard.vmui(config.namespace, config.service_name)


def store(ctx: Context) -> None:
    """VictoriaMetrics single-node on 127.0.0.1, scraping every 2 s."""
    port = ctx.state.ports["metrics"]
    config = STATE / "scrape.yml"
    config.write_text(
        yaml.safe_dump(
            scrape_config(KUBECONFIG, f"127.0.0.1:{ctx.state.ports['kube-state-metrics']}"),
            sort_keys=False,
        )
    )
    DASHBOARDS.mkdir(parents=True, exist_ok=True)
    (DASHBOARDS / "myfirstserverlessapp.json").write_text(json.dumps(bosun_dashboard(), indent=2))
    ctx.start(
        "victoria-metrics",
        [
            str(tools.path("victoria-metrics")),
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={STORE_DATA}",
            f"-promscrape.config={config}",
            # New pods are scraped within 2 s of appearing (30 s by default).
            "-promscrape.kubernetesSDCheckInterval=2s",
            "-retentionPeriod=1d",
            # Instant queries see the last scrape, not data 30 s old (the default offset).
            "-search.latencyOffset=2s",
            f"-vmui.customDashboardsPath={DASHBOARDS}",
            "-loggerLevel=WARN",
        ],
        lambda: get_ok(f"{url(ctx.state)}/health"),
    )
