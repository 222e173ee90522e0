"""Pure builders: configuration -> Kubernetes manifests (dicts), for Pulumi and for kubectl."""

from __future__ import annotations

from typing import Any

from infra import dashboard
from infra.config import AppConfig, Autoscaling, TrafficTarget
from infra.rules import KPA

KNATIVE_API_VERSION = "serving.knative.dev/v1"
AUTOSCALING = "autoscaling.knative.dev/"
ISTIO_INJECTION = {"istio-injection": "enabled"}
APP_UID = 10001  # the image's user (Dockerfile)


def labels(config: AppConfig) -> dict[str, str]:
    return {"app.kubernetes.io/name": config.service_name, "app.kubernetes.io/part-of": "faas"}


def namespace(config: AppConfig) -> dict[str, Any]:
    """The namespace, labelled for Istio sidecar injection."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": config.namespace, "labels": dict(ISTIO_INJECTION)},
    }


def autoscaling_annotations(scaling: Autoscaling) -> dict[str, str]:
    """Knative's kebab-case autoscaling annotations, for spec.template.metadata.annotations."""
    values: dict[str, str | int] = {
        "class": scaling.klass,
        "metric": scaling.metric,
        "target": scaling.target,
        "target-utilization-percentage": scaling.target_utilization_percentage,
        "min-scale": scaling.min_scale,
        "max-scale": scaling.max_scale,
        "initial-scale": scaling.initial_scale,
        "scale-down-delay": scaling.scale_down_delay,
    }
    if scaling.klass == KPA:  # the KPA's own knobs; the HPA ignores them
        values.update(
            {
                "window": scaling.window,
                "scale-to-zero-pod-retention-period": scaling.scale_to_zero_retention,
                "panic-window-percentage": scaling.panic_window_percentage,
                "panic-threshold-percentage": scaling.panic_threshold_percentage,
            }
        )
    return {f"{AUTOSCALING}{key}": str(value) for key, value in values.items()}


def _traffic(target: TrafficTarget) -> dict[str, Any]:
    entry: dict[str, Any] = (
        {"revisionName": target.revision} if target.revision else {"latestRevision": True}
    )
    entry["percent"] = target.percent
    if target.tag:
        entry["tag"] = target.tag
    return entry


def pushed_tag(config: AppConfig, stack: str) -> str:
    """The tag the program pushes a built image under (it deploys it by digest)."""
    return f"{config.image.repository}:{stack}"


def _container(config: AppConfig, image: object) -> dict[str, Any]:
    env = [
        {"name": "COLOUR", "value": config.colour},
        {"name": "PI_WORKERS", "value": str(config.pi_workers)},
    ]
    if config.zipkin_endpoint:
        env.append({"name": "OTEL_EXPORTER_ZIPKIN_ENDPOINT", "value": config.zipkin_endpoint})
    env.extend({"name": name, "value": value} for name, value in config.env)
    resources = config.resources
    container: dict[str, Any] = {
        "name": "app",
        "image": image,
        "ports": [{"name": "http1", "containerPort": config.container_port}],
        "env": env,
        "resources": {
            "requests": {"cpu": resources.cpu_request, "memory": resources.memory_request},
            "limits": {"cpu": resources.cpu_limit, "memory": resources.memory_limit},
        },
        # No period: queue-proxy then probes the app itself every 50 ms until it is ready (as
        # Knative does only for a probe without one), so a pod started from zero takes its
        # first request as soon as it can answer, not at the kubelet's next probe.
        "readinessProbe": {"httpGet": {"path": "/readyz"}},
        "livenessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 10},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": APP_UID,
            "runAsGroup": APP_UID,
            "readOnlyRootFilesystem": config.read_only_root_filesystem,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if config.read_only_root_filesystem:
        container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    return container


def service_spec(config: AppConfig, image: object) -> dict[str, Any]:
    """The Knative Service's spec: revision template (annotations, container) and traffic.

    ``image`` is the reference, or in the Pulumi program the Output that resolves to it, so
    that only the image field waits for a build: preview, diffs and policies see the rest.
    """
    revision: dict[str, Any] = {
        "containerConcurrency": config.container_concurrency,
        "timeoutSeconds": config.timeout_seconds,
        "containers": [_container(config, image)],
    }
    if config.read_only_root_filesystem:
        revision["volumes"] = [
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
        ]
    spec: dict[str, Any] = {
        "template": {
            "metadata": {
                "labels": labels(config),
                "annotations": autoscaling_annotations(config.autoscaling),
            },
            "spec": revision,
        }
    }
    if config.traffic:
        spec["traffic"] = [_traffic(target) for target in config.traffic]
    return spec


def service_metadata(config: AppConfig) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": config.service_name,
        "namespace": config.namespace,
        "labels": labels(config),
    }
    if config.wait_for_ready:
        # pulumi-kubernetes >= 4.18 then waits for the Ready condition (and so for status.url).
        metadata["annotations"] = {"pulumi.com/waitFor": "condition=Ready"}
    return metadata


def service(config: AppConfig, image: object) -> dict[str, Any]:
    """The whole Knative Service manifest."""
    return {
        "apiVersion": KNATIVE_API_VERSION,
        "kind": "Service",
        "metadata": service_metadata(config),
        "spec": service_spec(config, image),
    }


def dashboard_configmap(config: AppConfig) -> dict[str, Any]:
    """The scaling dashboard as Grafana JSON in a ConfigMap that kube-prometheus-stack's Grafana
    sidecar loads (label grafana_dashboard: "1"); its variables default to this service."""
    key, value = dashboard.GRAFANA_LABEL
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{config.service_name}-dashboard",
            "namespace": config.grafana_dashboard_namespace,
            "labels": {**labels(config), key: value},
        },
        "data": {
            f"{config.service_name}-scaling.json": dashboard.grafana_json(
                config.namespace, config.service_name
            )
        },
    }
