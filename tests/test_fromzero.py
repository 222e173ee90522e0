"""benchmarks/fromzero.py's pure parts: the two Services, a pod's milestones, the tables."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube.resources.core_v1 import Pod

from benchmarks.fromzero import HELLOWORLD, MARKS, NAMESPACE, Start, pod_marks, report, services
from tests.e2e.kube import PROJECT

APP = "127.0.0.1:5000/myfirstserverlessapp@sha256:" + "a" * 64
HELLO = "127.0.0.1:5000/knative-serving/helloworld@sha256:" + "b" * 64


def test_both_services_are_the_bosun_stacks_but_for_the_name_and_image() -> None:
    namespace, bosun, helloworld = services(APP, HELLO)
    assert (namespace["kind"], namespace["metadata"]["name"]) == ("Namespace", NAMESPACE)
    assert [bosun["metadata"]["name"], helloworld["metadata"]["name"]] == [PROJECT, HELLOWORLD]

    def without_name_and_image(service: dict[str, Any]) -> dict[str, Any]:
        template = service["spec"]["template"]
        containers = [{k: v for k, v in c.items() if k != "image"}
                      for c in template["spec"]["containers"]]  # fmt: skip
        labels = {k: v for k, v in template["metadata"]["labels"].items()
                  if k != "app.kubernetes.io/name"}  # fmt: skip
        return {"spec": {**template["spec"], "containers": containers},
                "metadata": {**template["metadata"], "labels": labels}}  # fmt: skip

    assert without_name_and_image(bosun) == without_name_and_image(helloworld)
    annotations = bosun["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/window"] == "6s"
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert (
        "periodSeconds" not in bosun["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    )


def _pod(conditions: dict[str, str], running: list[bool]) -> Pod:
    return Pod.from_dict({  # type: ignore[return-value]  # from_dict is typed as the mixin
        "metadata": {"name": "p"},
        "status": {
            "conditions": [{"type": t, "status": s} for t, s in conditions.items()],
            "containerStatuses": [
                {"name": f"c{i}", "image": "i", "imageID": "", "ready": False, "restartCount": 0,
                 "state": {"running": {}} if up else {"waiting": {"reason": "ContainerCreating"}}}
                for i, up in enumerate(running)
            ],
        },
    })  # fmt: skip


@pytest.mark.parametrize(
    ("conditions", "running", "marks"),
    [
        ({}, [], {"created"}),
        ({"PodScheduled": "True"}, [False, False], {"created", "scheduled"}),
        ({"PodScheduled": "True", "PodReadyToStartContainers": "True"}, [True, False],
         {"created", "scheduled", "sandbox"}),
        ({"PodScheduled": "True", "PodReadyToStartContainers": "True", "Ready": "False"},
         [True, True], {"created", "scheduled", "sandbox", "containers started"}),
        ({"PodScheduled": "True", "PodReadyToStartContainers": "True", "Ready": "True"},
         [True, True], {"created", "scheduled", "sandbox", "containers started", "ready"}),
    ],
)  # fmt: skip
def test_a_pods_milestones_are_read_from_its_conditions_and_containers(
    conditions: dict[str, str], running: list[bool], marks: set[str]
) -> None:
    assert pod_marks(_pod(conditions, running)) == marks


def test_the_report_gives_the_medians_their_ratio_and_each_milestones_median(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def start(service: str, seconds: float) -> Start:
        marks = {"created": 0.01, "answer": seconds}
        if seconds != 1.1:  # one start whose pod was not seen Ready
            marks["ready"] = seconds - 0.1
        return Start(service, seconds, marks)

    measured = [start(PROJECT, s) for s in (1.3, 1.1, 1.2)]
    measured += [start(HELLOWORLD, s) for s in (1.0, 0.9, 2.0)]
    report(measured)
    out = capsys.readouterr().out
    assert "| GET through the gateway, no pod at the start | 1.200 | 1.000 | 1.20 | " in out
    assert "<= 1.1x: NOT met |" in out
    assert "| ready | 1.150 | 0.900 |" in out  # the median of the starts that saw it
    assert "| sandbox | - | - |" in out
    assert all(f"| {mark} |" in out for mark in MARKS)
