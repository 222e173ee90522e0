"""The metrics store's scrape configuration and Knative's observability settings, as generated
for the local cluster (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

from e2e.metrics import bosun_dashboard, scrape_config

KUBECONFIG = Path("/run/cluster/kubeconfig")


def _jobs() -> dict[str, dict[str, object]]:
    config = scrape_config(KUBECONFIG, "127.0.0.1:8080")
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_every_two_seconds_from_knative_queue_proxy_the_app_and_kube_state_metrics() -> None:
    config = scrape_config(KUBECONFIG, "127.0.0.1:8080")
    assert config["global"]["scrape_interval"] == "2s"
    assert list(_jobs()) == ["knative", "queue-proxy", "app", "kube-state-metrics"]


def _kept(job: dict[str, object]) -> dict[str, str]:
    rules = job["relabel_configs"]
    assert isinstance(rules, list)
    return {r["source_labels"][0]: r["regex"] for r in rules if r.get("action") == "keep"}


def test_targets_are_discovered_from_the_api_server_with_the_clusters_kubeconfig() -> None:
    jobs = _jobs()
    knative_sd = jobs["knative"]["kubernetes_sd_configs"]
    assert knative_sd == [{"role": "endpoints", "kubeconfig_file": str(KUBECONFIG),
                           "namespaces": {"names": ["knative-serving"]}}]  # fmt: skip
    assert _kept(jobs["knative"]) == {"__meta_kubernetes_endpoint_port_name": "http-metrics"}
    # queue-proxy's request metrics (:9091) and the app's port, on revision pods only.
    for job, port in (("queue-proxy", "http-usermetric"), ("app", "user-port")):
        assert jobs[job]["kubernetes_sd_configs"] == [
            {"role": "pod", "kubeconfig_file": str(KUBECONFIG)}
        ]
        kept = _kept(jobs[job])
        assert kept["__meta_kubernetes_pod_container_port_name"] == port
        assert kept["__meta_kubernetes_pod_label_serving_knative_dev_revision"] == ".+"


def test_pod_series_are_labelled_with_namespace_service_revision_and_pod() -> None:
    rules = _jobs()["queue-proxy"]["relabel_configs"]
    assert isinstance(rules, list)
    targets = {r["target_label"]: r["source_labels"][0] for r in rules if "target_label" in r}
    assert targets == {
        "namespace": "__meta_kubernetes_namespace",
        "service": "__meta_kubernetes_pod_label_serving_knative_dev_service",
        "revision": "__meta_kubernetes_pod_label_serving_knative_dev_revision",
        "pod": "__meta_kubernetes_pod_name",
    }


def test_kube_state_metrics_keeps_its_own_namespace_and_deployment_labels() -> None:
    job = _jobs()["kube-state-metrics"]
    assert job["honor_labels"] is True
    assert job["static_configs"] == [{"targets": ["127.0.0.1:8080"]}]


def test_the_store_shows_the_bosun_stacks_service_in_vmui() -> None:
    board = bosun_dashboard()
    assert board["title"].endswith("(hackathon-pi-knative/myfirstserverlessapp)")
    assert [row["title"] for row in board["rows"]] == ["Deployment", "Scaling Debugging", "HTTP"]
