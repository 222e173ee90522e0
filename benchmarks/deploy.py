"""Deploy times on the local control plane: `pulumi preview` and `pulumi up` from nothing to a
Ready Knative Service, each as a ratio to `kubectl apply` of the same manifests (`make
manifests`) until Ready, measured in the same run.

Runs only with a local cluster up (`make cluster-up`; build/cluster/env) and the Pulumi tools
built (`make tools`); otherwise it says which is missing. The preview and the first `up` deploy
the project's image pushed to the cluster's registry once (imageBuild false): their time is the
engine's and Knative's. A second `up` builds the image with the docker-build provider on the
cluster's BuildKit and pushes it (imageBuild true, as Pulumi.bosun.yaml has it), with BuildKit's
cache warm after the first run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.on_cluster import cluster_or_skip
from benchmarks.output import table
from infra.config import stack_values
from infra.render import render
from tests.e2e.kube import PROJECT, Kube, Stack, app_image_ref, base_image_ref


def _seconds(step: Callable[[], object]) -> float:
    started = time.monotonic()
    step()
    return time.monotonic() - started


def _kubectl_to_ready(kube: Kube, image: str, namespace: str) -> float:
    manifests = render({**stack_values("bosun"), "namespace": namespace}, image)
    started = time.monotonic()
    kube.kubectl("apply", "-f", "-", stdin=manifests)
    kube.kubectl("wait", f"ksvc/{PROJECT}", "-n", namespace, "--for=condition=Ready",
                 "--timeout=300s", timeout=330)  # fmt: skip
    return time.monotonic() - started


def _pulumi(
    kube: Kube, config: dict[str, object], work: Path, *, preview: bool
) -> tuple[float, float]:
    """(preview seconds or 0, up seconds) of a new stack with CONFIG, destroyed after."""
    (work / "state").mkdir()
    stack = Stack("bench", kube, work / "state", work / "Pulumi.bench.yaml")
    stack.configure({**stack_values("bosun"), **config})
    stack.pulumi("stack", "init")
    try:
        planned = (
            _seconds(lambda: stack.pulumi("preview", "--policy-pack", "policy")) if preview else 0.0
        )
        up = _seconds(lambda: stack.pulumi("up", "--yes", "--policy-pack", "policy", timeout=900))
    finally:
        stack.pulumi("destroy", "--yes", timeout=600)
        stack.pulumi("stack", "rm", "--yes")
    return planned, up


def deploy_times(runs: int = 3) -> None:
    header = "| deploy, from nothing (s) | median | kubectl apply to Ready | ratio |"
    if (kube := cluster_or_skip("deploy times", "pulumi")) is None:
        return
    image = app_image_ref(kube)
    build = {"imageBuild": True, "imageRepository": f"{kube.registry}/bench/{PROJECT}",
             "baseImage": base_image_ref(kube)}  # fmt: skip
    baseline, previews, ups, builds = [], [], [], []
    for run in range(runs):
        namespace = f"bench-kubectl-{run}"
        baseline.append(_kubectl_to_ready(kube, image, namespace))
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        prebuilt = {"namespace": f"bench-pulumi-{run}", "imageBuild": False, "imageRef": image}
        with tempfile.TemporaryDirectory() as work:
            preview, up = _pulumi(kube, prebuilt, Path(work), preview=True)
        with tempfile.TemporaryDirectory() as work:
            _, built = _pulumi(kube, {**build, "namespace": f"bench-build-{run}"}, Path(work),
                               preview=False)  # fmt: skip
        previews.append(preview)
        ups.append(up)
        builds.append(built)
    base = statistics.median(baseline)
    rows = []
    measured = (
        ("pulumi preview --policy-pack policy", previews),
        ("pulumi up --yes --policy-pack policy, to Ready", ups),
        ("the same, building and pushing the image (cache warm)", builds),
    )
    for label, values in measured:
        median = statistics.median(values)
        rows.append([label, f"{median:.2f}", f"{base:.2f}", f"{median / base:.1f}"])
    table(header, rows)
