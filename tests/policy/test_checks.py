"""Each policy's validate function on passing and failing resources."""

from __future__ import annotations

import copy
import runpy
from typing import Any

import pulumi_policy
import pytest
from pulumi_policy import ResourceValidationArgs

from infra import manifest
from infra.config import parse, stack_values
from policy.checks import KNATIVE_SERVICE, RULES

PINNED = "docker.io/me/app@sha256:" + "ab" * 32
GOOD_SERVICE = manifest.service(parse(stack_values("bosun")), PINNED)
GOOD_NAMESPACE = manifest.namespace(parse(stack_values("bosun")))


def _args(resource_type: str, props: dict[str, Any]) -> ResourceValidationArgs:
    return ResourceValidationArgs(
        resource_type=resource_type,
        props=props,
        urn=f"urn:pulumi:bosun::myfirstserverlessapp::{resource_type}::x",
        name="x",
        opts=None,  # type: ignore[arg-type]  # not read by these rules
        provider=None,
    )


def _violations(rule: str, resource_type: str, props: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    RULES[rule][1](_args(resource_type, props), report)
    return found


def _service(change: Any) -> dict[str, Any]:
    service = copy.deepcopy(GOOD_SERVICE)
    change(service)
    return service


def _container(service: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = service["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_bosun_stack_passes_every_rule(rule: str) -> None:
    assert _violations(rule, KNATIVE_SERVICE, GOOD_SERVICE) == []
    assert _violations(rule, "kubernetes:core/v1:Namespace", GOOD_NAMESPACE) == []


@pytest.mark.parametrize(
    ("rule", "change", "message"),
    [
        (
            "knative-non-root",
            lambda s: _container(s)["securityContext"].pop("runAsNonRoot"),
            "containers[0]: securityContext.runAsNonRoot must be true",
        ),
        (
            "knative-non-root",
            lambda s: _container(s)["securityContext"].update(allowPrivilegeEscalation=True),
            "containers[0]: securityContext.allowPrivilegeEscalation must be false",
        ),
        (
            "knative-resources",
            lambda s: _container(s)["resources"]["limits"].pop("memory"),
            "containers[0]: resources.limits.memory is not set",
        ),
        (
            "knative-image-digest",
            lambda s: _container(s).update(image="docker.io/me/app:latest"),
            "containers[0]: image 'docker.io/me/app:latest' is not pinned by digest",
        ),
        (
            "knative-max-scale",
            lambda s: s["spec"]["template"]["metadata"]["annotations"].update(
                {"autoscaling.knative.dev/max-scale": "0"}
            ),
            "autoscaling.knative.dev/max-scale is '0'; it must be set",
        ),
        (
            "knative-max-scale",
            lambda s: s["spec"]["template"]["metadata"]["annotations"].clear(),
            "autoscaling.knative.dev/max-scale is None",
        ),
        (
            "knative-readiness-from-zero",
            lambda s: _container(s)["readinessProbe"].update(periodSeconds=2),
            "containers[0]: readinessProbe.periodSeconds is 2; leave it unset",
        ),
        (
            "knative-readiness-from-zero",
            lambda s: _container(s).pop("readinessProbe"),
            "containers[0]: no readinessProbe",
        ),
    ],
)
def test_a_failing_service_is_reported(rule: str, change: Any, message: str) -> None:
    found = _violations(rule, KNATIVE_SERVICE, _service(change))
    assert len(found) == 1
    assert found[0].startswith(message)


@pytest.mark.parametrize(
    "resource_type", ["kubernetes:core/v1:Namespace", "kubernetes:core/v1:NamespacePatch"]
)
def test_a_namespace_without_istio_injection_is_reported(resource_type: str) -> None:
    props = {"metadata": {"name": "plain", "labels": {"team": "x"}}}
    assert _violations("namespace-istio-injection", resource_type, props) == [
        "namespace is not labelled istio-injection=enabled"
    ]


def test_rules_ignore_other_resource_types() -> None:
    for rule in RULES:
        assert _violations(rule, "kubernetes:core/v1:ConfigMap", {"data": {}}) == []


def test_the_pack_loads_with_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    packs: list[Any] = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: packs.append(kwargs))
    runpy.run_module("policy.__main__", run_name="__main__")
    (pack,) = packs
    assert [p.name for p in pack["policies"]] == list(RULES)
    assert pack["enforcement_level"] == pulumi_policy.EnforcementLevel.MANDATORY
