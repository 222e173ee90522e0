"""Knative Serving: its own install files, read from the knative.dev/serving module at run time,
applied to the cluster; its webhook, controller, autoscaler and activator run as processes.

The CRDs, config maps, roles, webhook registrations and Deployments come from config/core of the
module that tools/knative pins (the same one the binaries are built from); nothing of Knative's
is copied into this repository. Module zips leave out symbolic links, and some of config/core's
files are links into its vendored knative.dev/networking and knative.dev/caching: those are read
from the same versions of those modules, which tools/knative's go.sum pins too.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration

from e2e import netns, probe, tools, traces
from e2e.context import START_TIMEOUT, ClusterError, Context, token_kubeconfig

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


@dataclass(frozen=True)
class Deployment:
    """One of Knative's Deployments (config/core/deployments), with the Services beside it."""

    name: str
    service_account: str
    container: dict[str, Any]
    services: tuple[dict[str, Any], ...]


def deployment(name: str) -> Deployment:
    """Deployment ``name`` of config/core/deployments/NAME.yaml."""
    found = list(documents(files(f"deployments/{name}.yaml")))
    spec = next(d for d in found if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    return Deployment(
        name=name,
        service_account=spec.get("serviceAccountName", "default"),
        container=spec["containers"][0],
        services=tuple(d for d in found if d["kind"] == "Service"),
    )


def crd_files() -> list[Path]:
    return [*files("300-resources"), *files("300-imagecache.yaml")]


DOMAIN = "example.com"  # config-domain: routes are NAME.NAMESPACE.example.com
NODE_NAME = "node-1"
# Knative's components, each as its Deployment in config/core/deployments describes it, in a
# network namespace of its own at a fixed address on the bridge (the pods' range starts at .32).
COMPONENTS = {"webhook": 5, "controller": 2, "autoscaler": 3, "activator": 4}


def configure(
    docs: list[dict[str, Any]], *, queue_image: str, registry: str, tracing_endpoint: str
) -> None:
    """Knative's config maps as the local cluster runs them: see the README's list of what
    differs from a stock install, and why."""
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
    # Istio's ingress gateway Services, as an Istio install makes them (net-istio routes to
    # them); the gateway stand-in is what answers for them.
    docs += [
        _gateway_service("istio-ingressgateway", "LoadBalancer", 8080),
        _gateway_service("knative-local-gateway", "ClusterIP", 8081),
    ]
    docs.insert(0, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
    ctx.kubectl_apply(docs)
    ctx.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    ctx.out(f"{'knative install':<26}{time.monotonic() - started:>8.2f} s  (CRDs, config, images)")


def _gateway_service(name: str, kind: str, target: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "istio-system", "labels": {"istio": name}},
        "spec": {
            "type": kind,
            "selector": {"istio": name},
            "ports": [{"name": "http2", "port": 80, "targetPort": target}],
        },
    }


def components(ctx: Context) -> None:
    """The webhook (then its registrations), controller, autoscaler and activator."""
    for name, host in COMPONENTS.items():
        component(ctx, name, str(netns.NETWORK[host]))
        if name == "webhook":
            register_webhooks(ctx)


def _probe(spec: dict[str, Any], host: str, ports: dict[str, int]) -> bool:
    async def once() -> bool:
        async with aiohttp.ClientSession() as session:
            return await probe.run(spec, host, ports, session)

    try:
        return asyncio.run(once())
    except aiohttp.ClientError:
        return False


def component(ctx: Context, name: str, address: str) -> None:
    """Run Knative's Deployment ``name`` as a process in a namespace at ``address``."""
    spec = deployment(name)
    container = spec.container
    namespace = f"{netns.PREFIX}{name}"
    netns.create(namespace, address, dns_namespace=NAMESPACE)
    pod_name = f"{name}-{NODE_NAME}"
    fields = {
        "metadata.name": pod_name,
        "metadata.namespace": NAMESPACE,
        "status.podIP": address,
        "spec.nodeName": NODE_NAME,
    }
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
        else:
            env[variable["name"]] = fields[variable["valueFrom"]["fieldRef"]["fieldPath"]]
    # Out of a cluster, a kubeconfig replaces the pod's projected service-account token.
    env["KUBECONFIG"] = str(token_kubeconfig(ctx, spec.service_account, NAMESPACE))
    started = time.monotonic()
    process = ctx.spawn(
        f"knative-{name}", [str(tools.path(f"knative-{name}"))], env=env, namespace=namespace
    )
    ports = {p["name"]: int(p["containerPort"]) for p in container.get("ports", [])}
    readiness = container["readinessProbe"]
    ctx.wait(process, lambda: _probe(readiness, address, ports), started, START_TIMEOUT)
    for service in spec.services:
        ctx.publish(service, address, ports)


def register_webhooks(ctx: Context) -> None:
    """Knative's webhook registrations, which its webhook then completes (rules, CA)."""
    started = time.monotonic()
    docs = list(documents(files("webhooks")))
    ctx.kubectl_apply([d for d in docs if d["kind"] != "Secret"])

    def reconciled() -> bool:
        hook = ctx.client.get(MutatingWebhookConfiguration, "webhook.serving.knative.dev")
        return bool(hook.webhooks and hook.webhooks[0].clientConfig.caBundle)

    deadline = started + 60
    while not reconciled():
        if time.monotonic() > deadline:
            raise ClusterError("knative-webhook did not register its webhooks within 60 s")
        time.sleep(0.1)
    ctx.out(f"{'webhook registrations':<26}{time.monotonic() - started:>8.2f} s")
