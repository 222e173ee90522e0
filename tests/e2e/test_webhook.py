"""Knative's own admission webhook against what the project renders and what it refuses.

The manifests of the bosun stack and of every example are accepted by server-side apply through
Knative's webhook; and the config checks of infra/config.py agree with the webhook, case by case:
a configuration our checks refuse is refused by Knative when rendered without our checks, and a
configuration they accept is accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import manifest
from infra.config import ConfigError, file_values, parse, stack_values
from infra.render import render
from tests.e2e.kube import ROOT, Kube

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SOURCES = [("stack bosun", None), *((f"examples/{p.name}", p) for p in EXAMPLES)]


def _values(source: Path | None) -> dict[str, Any]:
    return stack_values("bosun") if source is None else file_values(source)


@pytest.fixture(scope="module")
def namespaces(kube: Kube) -> Iterator[None]:
    """The namespaces the manifests name, made for real (a dry run cannot create them)."""
    names = {parse(_values(source)).namespace for _, source in SOURCES}
    for name in names:
        kube.kubectl("create", "namespace", name, check=False)
    yield
    # Nothing runs in them: they go at once, before the next module needs their names.
    kube.kubectl("delete", "namespace", *names, "--timeout=60s", timeout=90)


@pytest.mark.parametrize(("name", "source"), SOURCES, ids=[name for name, _ in SOURCES])
def test_manifests_are_accepted_by_knatives_webhook(
    kube: Kube, app_image: str, namespaces: None, name: str, source: Path | None
) -> None:
    documents = list(yaml.safe_load_all(render(_values(source), app_image)))
    service = next(d for d in documents if d["kind"] == "Service")
    accepted = kube.apply([service], dry_run=True)
    assert accepted["metadata"]["name"] == service["metadata"]["name"], name


def test_webhook_fills_in_knatives_defaults(kube: Kube, app_image: str, namespaces: None) -> None:
    service = next(
        d for d in yaml.safe_load_all(render(stack_values("bosun"), app_image))
        if d["kind"] == "Service"
    )  # fmt: skip
    defaulted = kube.apply([service], dry_run=True)
    template = defaulted["spec"]["template"]
    container = template["spec"]["containers"][0]
    # What the rendered manifest leaves out and Knative's defaulting webhook adds.
    assert defaulted["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    assert template["spec"]["enableServiceLinks"] is False
    assert container["readinessProbe"]["successThreshold"] == 1
    assert container["readinessProbe"]["httpGet"]["port"] == 0
    # No period is defaulted in: queue-proxy probes every 50 ms until ready (from zero).
    assert container["readinessProbe"].get("periodSeconds", 0) == 0
    assert container["livenessProbe"]["httpGet"]["port"] == 0
    annotations = defaulted["metadata"]["annotations"]
    assert (
        annotations["serving.knative.dev/creator"]
        == annotations["serving.knative.dev/lastModifier"]
    )
    # and what it keeps as we wrote it
    assert template["spec"]["containerConcurrency"] == 0
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "10"


# -- our rules side by side with Knative's -------------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


def annotation(key: str, value: str) -> Edit:
    return lambda m: m["spec"]["template"]["metadata"]["annotations"].__setitem__(
        f"autoscaling.knative.dev/{key}", value
    )


def annotate(**values: str) -> Edit:
    def edit(m: dict[str, Any]) -> None:
        for key, value in values.items():
            annotation(key.replace("_", "-"), value)(m)

    return edit


def revision(key: str, value: Any) -> Edit:
    return lambda m: m["spec"]["template"]["spec"].__setitem__(key, value)


def container(edit: Callable[[dict[str, Any]], None]) -> Edit:
    return lambda m: edit(m["spec"]["template"]["spec"]["containers"][0])


def metadata_name(value: str) -> Edit:
    return lambda m: m["metadata"].__setitem__("name", value)


def traffic(*entries: dict[str, Any]) -> Edit:
    return lambda m: m["spec"].__setitem__("traffic", list(entries))


@dataclass(frozen=True)
class Case:
    rule: str
    config: dict[str, Any]  # over the bosun stack: what infra/config.py is given
    edit: Edit  # the same change, made to a manifest rendered from a valid config


LATEST = {"latestRevision": True}
CASES = [
    Case("reserved port 8012", {"containerPort": 8012},
         container(lambda c: c["ports"][0].__setitem__("containerPort", 8012))),
    Case("reserved port 9091", {"containerPort": 9091},
         container(lambda c: c["ports"][0].__setitem__("containerPort", 9091))),
    Case("containerConcurrency 5000", {"containerConcurrency": 5000},
         revision("containerConcurrency", 5000)),
    Case("containerConcurrency -1", {"containerConcurrency": -1},
         revision("containerConcurrency", -1)),
    Case("timeoutSeconds 601", {"timeoutSeconds": 601}, revision("timeoutSeconds", 601)),
    Case("timeoutSeconds 600", {"timeoutSeconds": 600}, revision("timeoutSeconds", 600)),
    Case("min-scale 5 above max-scale 2", {"minScale": 5, "maxScale": 2},
         annotate(min_scale="5", max_scale="2")),
    Case("window 5s", {"window": "5s"}, annotation("window", "5s")),
    Case("window 6.5s", {"window": "6.5s"}, annotation("window", "6.5s")),
    Case("window 6s", {"window": "6s"}, annotation("window", "6s")),
    Case("window 2h", {"window": "2h"}, annotation("window", "2h")),
    Case("target 0", {"autoscalingTarget": "0"}, annotation("target", "0")),
    Case("target abc", {"autoscalingTarget": "abc"}, annotation("target", "abc")),
    Case("target 0.001", {"autoscalingTarget": "0.001"}, annotation("target", "0.001")),
    Case("panic-threshold 105", {"panicThresholdPercentage": 105},
         annotation("panic-threshold-percentage", "105")),
    Case("panic-threshold 1001", {"panicThresholdPercentage": 1001},
         annotation("panic-threshold-percentage", "1001")),
    Case("panic-window 0", {"panicWindowPercentage": 0},
         annotation("panic-window-percentage", "0")),
    Case("scale-down-delay 1.5s", {"scaleDownDelay": "1.5s"},
         annotation("scale-down-delay", "1.5s")),
    Case("scale-down-delay 2h", {"scaleDownDelay": "2h"}, annotation("scale-down-delay", "2h")),
    Case("target-utilization 0", {"targetUtilizationPercentage": 0},
         annotation("target-utilization-percentage", "0")),
    Case("target-utilization 101", {"targetUtilizationPercentage": 101},
         annotation("target-utilization-percentage", "101")),
    Case("initial-scale 0", {"initialScale": 0}, annotation("initial-scale", "0")),
    Case("scale-to-zero retention 1.5s", {"scaleToZeroRetention": "1.5s"},
         annotation("scale-to-zero-pod-retention-period", "1.5s")),
    Case("scale-to-zero retention 2h", {"scaleToZeroRetention": "2h"},
         annotation("scale-to-zero-pod-retention-period", "2h")),
    Case("hpa class with min-scale 0",
         {"autoscalingClass": "hpa.autoscaling.knative.dev", "autoscalingMetric": "cpu",
          "minScale": 0},
         annotate(**{"class": "hpa.autoscaling.knative.dev", "metric": "cpu",
                        "min_scale": "0"})),
    Case("hpa class with metric concurrency",
         {"autoscalingClass": "hpa.autoscaling.knative.dev", "autoscalingMetric": "concurrency",
          "minScale": 1},
         annotate(**{"class": "hpa.autoscaling.knative.dev", "metric": "concurrency",
                        "min_scale": "1"})),
    Case("reserved env var K_SERVICE", {"env": ["K_SERVICE=x"]},
         container(lambda c: c["env"].append({"name": "K_SERVICE", "value": "x"}))),
    Case("reserved env var PORT", {"env": ["PORT=1"]},
         container(lambda c: c["env"].append({"name": "PORT", "value": "1"}))),
    Case("bad quantity 12x", {"cpuLimit": "12x"},
         container(lambda c: c["resources"]["limits"].__setitem__("cpu", "12x"))),
    Case("quantity 1e3 (exponent form)", {"memoryRequest": "1e3"},
         container(lambda c: c["resources"]["requests"].__setitem__("memory", "1e3"))),
    Case("cpu request 2 above limit 1", {"cpuRequest": "2", "cpuLimit": "1"},
         container(lambda c: c["resources"].update(requests={"cpu": "2", "memory": "128Mi"},
                                                   limits={"cpu": "1", "memory": "512Mi"}))),
    Case("cpu request 0", {"cpuRequest": "0"},
         container(lambda c: c["resources"]["requests"].__setitem__("cpu", "0"))),
    Case("memory limit -1", {"memoryLimit": "-1"},
         container(lambda c: c["resources"]["limits"].__setitem__("memory", "-1"))),
    Case("bad name My_App", {"serviceName": "My_App"}, metadata_name("My_App")),
    Case("name of 64 characters", {"serviceName": "a" * 64}, metadata_name("a" * 64)),
    Case("traffic percents sum to 90", {"traffic": ["latest:60", "latest:30"]},
         traffic({**LATEST, "percent": 60}, {**LATEST, "percent": 30})),
    Case("traffic tag twice",
         {"traffic": ["latest:50:a", "latest:50:a"]},
         traffic({**LATEST, "percent": 50, "tag": "a"}, {**LATEST, "percent": 50, "tag": "a"})),
]  # fmt: skip


def _ours(case: Case) -> str | None:
    """Our verdict: the ConfigError message, or None when infra/config.py accepts."""
    try:
        parse({**stack_values("bosun"), **case.config})
    except ConfigError as error:
        return str(error)
    return None


def _knatives(kube: Kube, case: Case, image: str) -> str | None:
    """Knative's verdict on the valid manifest with the case's change, without our checks."""
    service = manifest.service(parse(stack_values("bosun")), image)
    case.edit(service)
    result = kube.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-",
        stdin=yaml.safe_dump(service), check=False,
    )  # fmt: skip
    return result.stderr.strip().splitlines()[-1] if result.returncode else None


def test_our_config_rules_agree_with_knatives_webhook(
    kube: Kube, app_image: str, namespaces: None
) -> None:
    rows = [(case, _ours(case), _knatives(kube, case, app_image)) for case in CASES]
    table = "\n".join(
        f"{case.rule:<34} ours: {'refuse' if ours else 'accept':<7} "
        f"Knative: {'refuse' if theirs else 'accept':<7} {theirs or ours or ''}"
        for case, ours, theirs in rows
    )
    disagree = [case.rule for case, ours, theirs in rows if (ours is None) != (theirs is None)]
    assert not disagree, f"our checks and Knative's webhook disagree on {disagree}:\n{table}"
    assert sum(theirs is not None for _, _, theirs in rows) >= 20, table
