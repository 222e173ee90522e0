"""Knative Serving: its own install files, read from the knative.dev/serving module at run time,
applied to the cluster; its webhook, controller, autoscaler and activator as the Deployments of
its release manifests, with the images of the commands built here (what `ko` does).

The CRDs, config maps, roles, webhook registrations and Deployments come from config/core of the
module that tools/knative pins (the same one the binaries are built from); nothing of Knative's
is copied into this repository. Module zips leave out symbolic links, and some of config/core's
files are links into its vendored knative.dev/networking and knative.dev/caching: those are read
from the same versions of those modules, which tools/knative's go.sum pins too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod

from e2e import tools, traces
from e2e.context import START_TIMEOUT, ClusterError, Context
from e2e.poll import until

SERVING = "knative.dev/serving"
NETWORKING = "knative.dev/networking"
CACHING = "knative.dev/caching"
NAMESPACE = "knative-serving"

# config/core files that are links in knative/serving's tree: (module, path in that module).
_LINKS = {
    "300-imagecache.yaml": (CACHING, "config/image.yaml"),
    "300-resources/certificate.yaml": (NETWORKING, "config/certificate.yaml"),
    "300-resources/domain-claim.yaml": (NETWORKING, "config/domain-claim.yaml"),
    "300-resources/ingress.yaml": (NETWORKING, "config/ingress.yaml"),
    "300-resources/serverlessservice.yaml": (NETWORKING, "config/serverlessservice.yaml"),
    "configmaps/network.yaml": (NETWORKING, "config/config-network.yaml"),
}


@cache
def _module(path: str) -> Path:
    return tools.module_dir("knative", path)


def core() -> Path:
    """config/core of the pinned knative.dev/serving."""
    return _module(SERVING) / "config" / "core"


def version() -> str:
    return tools.module_info("knative", SERVING)["Version"]


def _resolved(relative: str) -> Path:
    if relative in _LINKS:
        module, path = _LINKS[relative]
        return _module(module) / path
    return core() / relative


def files(part: str) -> list[Path]:
    """The YAML files of config/core/PART (a directory or a file), links resolved."""
    base = core() / part
    if base.is_file() or part in _LINKS:
        return [_resolved(part)]
    present = {p.relative_to(core()).as_posix() for p in base.glob("*.yaml")}
    linked = {name for name in _LINKS if name.startswith(f"{part}/")}
    return [_resolved(name) for name in sorted(present | linked)]


def documents(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield document


def crd_files() -> list[Path]:
    return [*files("300-resources"), *files("300-imagecache.yaml")]


DOMAIN = "example.com"  # config-domain: routes are NAME.NAMESPACE.example.com
# Knative's components: config/core/deployments, each the image of its command, in the order
# they are waited for (the webhook first: it completes its own registrations).
COMPONENTS = ("webhook", "controller", "autoscaler", "activator")
KO = "ko://knative.dev/serving/cmd/"  # how Knative's manifests name the image of a command


def configure(
    docs: list[dict[str, Any]], *, queue_image: str, registry: str, tracing_endpoint: str
) -> None:
    """Knative's config maps as the local cluster runs them: see docs/local-cluster.md's list
    of what differs from a stock install, and why."""
    for doc in docs:
        if doc["kind"] != "ConfigMap":
            continue
        data = doc.setdefault("data", {})
        name = doc["metadata"]["name"]
        if name == "config-deployment":
            data["queue-sidecar-image"] = queue_image
            # The registry is on the node's loopback, which Knative's controller (in its own
            # namespace) cannot reach: as with kind's local registry, tags there are not
            # resolved to digests. The project deploys by digest anyway.
            data["registries-skipping-tag-resolving"] = f"kind.local,ko.local,dev.local,{registry}"
        elif name == "config-domain":
            data[DOMAIN] = ""
        elif name == "config-observability":
            # Prometheus metrics from every component (:9090) and queue-proxy's request
            # metrics (:9091), which the metrics store scrapes, and every request's spans to
            # the trace store over OTLP: all off in a stock install.
            data["metrics-protocol"] = "prometheus"
            data["request-metrics-protocol"] = "prometheus"
            data["tracing-protocol"] = "http/protobuf"
            data["tracing-endpoint"] = tracing_endpoint
            data["tracing-sampling-rate"] = "1"


def install(ctx: Context) -> None:
    """Knative Serving's core install: namespace, roles, CRDs, config maps, Services."""
    started = time.monotonic()
    docs = list(
        documents(
            [
                *files("100-namespace.yaml"),
                *files("200-serviceaccount.yaml"),
                *files("200-roles"),
                *crd_files(),
                *files("configmaps"),
                *files("webhooks/secret.yaml"),
            ]
        )
    )
    registry = f"127.0.0.1:{ctx.state.ports['registry']}"
    configure(docs, queue_image=ctx.state.images["queue"], registry=registry,
              tracing_endpoint=traces.OTLP_HTTP)  # fmt: skip
    docs.insert(0, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    ctx.kubectl_apply(docs)
    ctx.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    ctx.out(f"{'knative install':<26}{time.monotonic() - started:>8.2f} s  (CRDs, config, images)")


def rewrite_images(docs: list[dict[str, Any]], images: dict[str, str]) -> list[dict[str, Any]]:
    """Knative's manifests with each `ko://knative.dev/serving/cmd/NAME` image replaced by
    IMAGES[NAME], as `ko resolve` does for Knative's developers; an image with no replacement
    is an error (it could not be pulled)."""

    def replace(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v) for v in value]
        if isinstance(value, str) and value.startswith(KO):
            name = value.removeprefix(KO)
            if name not in images:
                raise ClusterError(f"no image built for {value}")
            return images[name]
        return value

    return [replace(doc) for doc in docs]


def deploy(ctx: Context) -> None:
    """Knative's Deployments and their Services, as its release applies them, with the images
    built here: the webhook first (then its registrations), then the others, each ready when
    its Deployment is available."""
    images = {name: ctx.state.images[name] for name in COMPONENTS}
    docs = rewrite_images(list(documents(files("deployments"))), images)
    ctx.kubectl_apply(docs)
    for name in COMPONENTS:
        started = time.monotonic()
        _wait_available(ctx, name, started + START_TIMEOUT)
        ctx.out(f"{'knative-' + name + ' (pod)':<26}{time.monotonic() - started:>8.2f} s")
        if name == "webhook":
            register_webhooks(ctx)


# A container that waits for one of these will not start by waiting longer.
_STUCK = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
          "CreateContainerError", "RunContainerError"}  # fmt: skip


def _wait_available(ctx: Context, name: str, deadline: float) -> None:
    """Until Deployment NAME has an available pod; a ClusterError naming it, with its pod's
    last words, as soon as the pod cannot start (it exited, or cannot be created)."""

    def available() -> bool:
        deployment = ctx.client.get(Deployment, name, namespace=NAMESPACE)
        if deployment.status is not None and (deployment.status.availableReplicas or 0) >= 1:
            return True
        selector = deployment.spec.selector.matchLabels if deployment.spec else None
        for pod in ctx.client.list(Pod, namespace=NAMESPACE, labels=selector or {"app": name}):
            for status in (pod.status.containerStatuses if pod.status else None) or []:
                ended = status.lastState.terminated if status.lastState else None
                waiting = status.state.waiting if status.state else None
                pod_name = (pod.metadata.name if pod.metadata else None) or name
                if ended is not None and ended.exitCode != 0:
                    said = _last_line(ctx, pod_name)
                    raise ClusterError(
                        f"knative-{name} exited with code {ended.exitCode} while starting: {said} "
                        f"(kubectl logs -n {NAMESPACE} {pod_name} --previous)"
                    )
                if waiting is not None and waiting.reason in _STUCK:
                    raise ClusterError(f"knative-{name}: {waiting.reason}: {waiting.message}")
        return False

    try:
        until(available, timeout=max(0.0, deadline - time.monotonic()),
              what=f"knative-{name} available", initial=0.05, cap=0.2)  # fmt: skip
    except TimeoutError:
        raise ClusterError(
            f"knative-{name} was not available within {START_TIMEOUT:.0f} s "
            f"(kubectl describe pods -n {NAMESPACE})"
        ) from None


def _last_line(ctx: Context, pod: str) -> str:
    try:
        logs = ctx.kubectl("logs", "-n", NAMESPACE, pod, "--previous", "--tail=5")
    except ClusterError:
        return "no log"
    lines = [line for line in logs.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def register_webhooks(ctx: Context) -> None:
    """Knative's webhook registrations, which its webhook then completes (rules, CA)."""
    started = time.monotonic()
    docs = list(documents(files("webhooks")))
    ctx.kubectl_apply([d for d in docs if d["kind"] != "Secret"])

    def reconciled() -> bool:
        hook = ctx.client.get(MutatingWebhookConfiguration, "webhook.serving.knative.dev")
        return bool(hook.webhooks and hook.webhooks[0].clientConfig.caBundle)

    try:
        until(reconciled, timeout=60, what="knative-webhook's registrations", initial=0.05,
              cap=0.2)  # fmt: skip
    except TimeoutError:
        raise ClusterError("knative-webhook did not register its webhooks within 60 s") from None
    ctx.out(f"{'webhook registrations':<26}{time.monotonic() - started:>8.2f} s")
