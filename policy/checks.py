"""The policy pack's rules: validate functions over the resources the program registers.

Each ``validate_*`` takes Pulumi's ResourceValidationArgs and a ``report_violation`` callback, so
the pack (``policy/__main__.py``) and the tests call exactly the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from infra.rules import is_pinned_image

KNATIVE_SERVICE = "kubernetes:serving.knative.dev/v1:Service"
NAMESPACES = ("kubernetes:core/v1:Namespace", "kubernetes:core/v1:NamespacePatch")
MAX_SCALE_LIMIT = 100
Report = Callable[[str, str | None], None]


class Args(Protocol):
    @property
    def resource_type(self) -> str: ...

    @property
    def props(self) -> Mapping[str, Any]: ...


def _containers(args: Args) -> Iterator[tuple[int, Mapping[str, Any]]]:
    if args.resource_type != KNATIVE_SERVICE:
        return
    template = (args.props.get("spec") or {}).get("template") or {}
    for index, container in enumerate((template.get("spec") or {}).get("containers") or []):
        yield index, container or {}


def validate_non_root(args: Args, report_violation: Report) -> None:
    """Containers run as non-root and cannot gain privileges."""
    for index, container in _containers(args):
        security = container.get("securityContext") or {}
        if security.get("runAsNonRoot") is not True:
            report_violation(
                f"containers[{index}]: securityContext.runAsNonRoot must be true", None
            )
        if security.get("allowPrivilegeEscalation") is not False:
            report_violation(
                f"containers[{index}]: securityContext.allowPrivilegeEscalation must be false",
                None,
            )


def validate_resources(args: Args, report_violation: Report) -> None:
    """Containers set CPU and memory requests and limits."""
    for index, container in _containers(args):
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not (resources.get(kind) or {}).get(resource):
                    report_violation(
                        f"containers[{index}]: resources.{kind}.{resource} is not set", None
                    )


def validate_pinned_image(args: Args, report_violation: Report) -> None:
    """Images are pinned by digest, so a revision always runs what was built and checked."""
    for index, container in _containers(args):
        image = str(container.get("image") or "")
        if not is_pinned_image(image):
            report_violation(
                f"containers[{index}]: image {image!r} is not pinned by digest (repo@sha256:...)",
                None,
            )


def validate_max_scale(args: Args, report_violation: Report) -> None:
    """The autoscaler has an upper bound: max-scale from 1 to MAX_SCALE_LIMIT."""
    if args.resource_type != KNATIVE_SERVICE:
        return
    template = (args.props.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get("autoscaling.knative.dev/max-scale")
    if raw is None or not str(raw).isdigit() or not 1 <= int(raw) <= MAX_SCALE_LIMIT:
        report_violation(
            f"autoscaling.knative.dev/max-scale is {raw!r}; it must be set on "
            f"spec.template.metadata.annotations, from 1 to {MAX_SCALE_LIMIT}",
            None,
        )


def validate_readiness_from_zero(args: Args, report_violation: Report) -> None:
    """The serving container has a readiness probe without a period: Knative's queue-proxy
    probes aggressively (every 50 ms until ready) only then, so a pod started from zero takes
    its first request as soon as it can answer."""
    for index, container in _containers(args):
        if not (container.get("ports") or index == 0):
            continue
        probe = container.get("readinessProbe")
        if not probe:
            report_violation(f"containers[{index}]: no readinessProbe", None)
        elif probe.get("periodSeconds"):
            report_violation(
                f"containers[{index}]: readinessProbe.periodSeconds is {probe['periodSeconds']}; "
                "leave it unset so that queue-proxy probes every 50 ms until the pod is ready",
                None,
            )


def validate_istio_injection(args: Args, report_violation: Report) -> None:
    """Namespaces the stack creates or labels have Istio sidecar injection enabled."""
    if args.resource_type not in NAMESPACES:
        return
    labels = (args.props.get("metadata") or {}).get("labels") or {}
    if labels.get("istio-injection") != "enabled":
        report_violation("namespace is not labelled istio-injection=enabled", None)


RULES: dict[str, tuple[str, Callable[[Any, Report], None]]] = {
    "knative-non-root": ("Containers run as non-root, no privilege escalation.", validate_non_root),
    "knative-resources": ("Containers set CPU and memory requests and limits.", validate_resources),
    "knative-image-digest": ("Images are pinned by digest.", validate_pinned_image),
    "knative-max-scale": ("max-scale is set and bounded.", validate_max_scale),
    "knative-readiness-from-zero": (
        "The readiness probe has no period: queue-proxy probes aggressively from zero.",
        validate_readiness_from_zero,
    ),
    "namespace-istio-injection": ("Namespaces are Istio-injected.", validate_istio_injection),
}  # fmt: skip
