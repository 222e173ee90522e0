"""benchmarks/fromzero.py's pure parts: the four Services, a pod's milestones, the tables."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import pytest
from lightkube.resources.core_v1 import Pod

from benchmarks import floor_app
from benchmarks.fromzero import (
    BARE,
    FLOOR,
    HELLOWORLD,
    MARKS,
    NAMESPACE,
    Start,
    pod_marks,
    report,
    services,
)
from tests.e2e.kube import PROJECT
from tests.utils import run_service

APP = "127.0.0.1:5000/myfirstserverlessapp@sha256:" + "a" * 64
HELLO = "127.0.0.1:5000/knative-serving/helloworld@sha256:" + "b" * 64


def _without_name_image_and_command(service: dict[str, Any]) -> dict[str, Any]:
    template = service["spec"]["template"]
    containers = [{k: v for k, v in c.items() if k not in ("image", "command", "readinessProbe")}
                  for c in template["spec"]["containers"]]  # fmt: skip
    labels = {k: v for k, v in template["metadata"]["labels"].items()
              if k != "app.kubernetes.io/name"}  # fmt: skip
    return {"spec": {**template["spec"], "containers": containers},
            "metadata": {**template["metadata"], "labels": labels}}  # fmt: skip


def test_the_services_are_the_bosun_stacks_but_for_the_name_image_and_command() -> None:
    namespace, bosun, helloworld, bare, floor = services(APP, HELLO)
    assert (namespace["kind"], namespace["metadata"]["name"]) == ("Namespace", NAMESPACE)
    named = [s["metadata"]["name"] for s in (bosun, helloworld, bare, floor)]
    assert named == [PROJECT, HELLOWORLD, BARE, FLOOR]
    assert all(
        _without_name_image_and_command(other) == _without_name_image_and_command(bosun)
        for other in (helloworld, bare, floor)
    )
    containers = [s["spec"]["template"]["spec"]["containers"][0] for s in (bosun, bare, floor)]
    assert [c["image"] for c in containers] == [APP, APP, APP]
    assert "command" not in containers[0]  # the image's own
    assert containers[0]["readinessProbe"] == {"httpGet": {"path": "/readyz"}}
    hello = helloworld["spec"]["template"]["spec"]["containers"][0]
    assert hello["readinessProbe"] == containers[0]["readinessProbe"]
    assert "command" not in hello
    assert [c["readinessProbe"] for c in containers[1:]] == [{"httpGet": {"path": "/healthz"}}] * 2
    annotations = bosun["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/window"] == "6s"
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert (
        "periodSeconds" not in bosun["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    )


@pytest.mark.parametrize("service", [BARE, FLOOR])
def test_the_bare_app_and_the_floor_run_from_their_command_and_answer(service: str) -> None:
    """Run as the cluster runs them (`python -c`, not from this checkout's benchmarks): the
    floor imports exactly floor_app's libraries first, the bare app none of them."""
    spec = next(s for s in services(APP, HELLO)[1:] if s["metadata"]["name"] == service)
    python, flag, program = spec["spec"]["template"]["spec"]["containers"][0]["command"]
    assert (python, flag) == ("python", "-c")
    names = {n for group in floor_app.LIBRARIES.values() for n in group}
    imported = {line.split()[1] for line in program.splitlines() if line.startswith("import ")}
    assert imported - {"os", "uvicorn"} == (names if service == FLOOR else set())
    with run_service(command=("-c", program)) as running:
        answer = httpx.get(f"{running.url}/", timeout=10)
    assert (answer.status_code, answer.text) == (200, "hello\n")


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
    measured += [start(BARE, s) for s in (1.05, 1.04, 1.06)]
    measured += [start(FLOOR, s) for s in (1.15, 1.16, 1.14)]
    report(measured)
    out = capsys.readouterr().out
    assert "| bosun Service | 1.200 | 1.20 | <= 1.1x: NOT met |" in out
    assert "| floor: bare + libraries | 1.150 | 1.15 |  |" in out
    assert "| bare Starlette app | 1.050 | 1.05 |  |" in out
    assert "| helloworld | 1.000 | 1.00 |  |" in out
    # each the median of the starts that saw it
    assert "| ready | 1.150 | 0.900 | 0.950 | 1.050 |" in out
    assert "| sandbox | - | - | - | - |" in out
    assert all(f"| {mark} |" in out for mark in MARKS)


def test_the_goal_is_met_at_1_1x_helloworld(capsys: pytest.CaptureFixture[str]) -> None:
    measured = [Start(s, t, {}) for s, t in ((PROJECT, 1.1), (HELLOWORLD, 1.0), (BARE, 1.0),
                                             (FLOOR, 1.0))]  # fmt: skip
    report(measured)
    assert "| bosun Service | 1.100 | 1.10 | <= 1.1x: met |" in capsys.readouterr().out
