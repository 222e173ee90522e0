"""Deploy times on the local control plane: `pulumi preview` and `pulumi up` from nothing to a
Ready Knative Service, each as a ratio to `kubectl apply` of the same manifests (`make
manifests`) until Ready, measured in the same run.

Runs only with a local cluster up (`make cluster-up`; build/cluster/env) and the Pulumi tools
built (`make tools`); otherwise it says which is missing. The image is the project's, pushed to
the cluster's registry once (imageBuild false): the time is the engine's and Knative's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.output import table
from e2e import tools
from e2e.cluster import Cluster
from infra.config import stack_values
from infra.render import render
from tests.e2e.kube import Kube, app_image_ref

NAME = "myfirstserverlessapp"


def _timed(command: list[str], env: dict[str, str], stdin: str | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(command, input=stdin, env=env, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}: {(done.stdout + done.stderr)[-2000:]}")
    return time.monotonic() - started


def _kubectl_to_ready(kube: Kube, image: str, namespace: str) -> float:
    manifests = render({**stack_values("bosun"), "namespace": namespace}, image)
    kubectl = str(tools.path("kubectl"))
    env = {**os.environ, **kube.env}
    started = time.monotonic()
    _timed([kubectl, "apply", "-f", "-"], env, manifests)
    _timed([kubectl, "wait", f"ksvc/{NAME}", "-n", namespace, "--for=condition=Ready",
            "--timeout=300s"], env)  # fmt: skip
    return time.monotonic() - started


def _pulumi(kube: Kube, image: str, namespace: str, work: Path) -> tuple[float, float]:
    config = {f"{NAME}:{k}": v for k, v in {**stack_values("bosun"), "namespace": namespace,
              "imageBuild": False, "imageRef": image}.items()}  # fmt: skip
    (work / "Pulumi.bench.yaml").write_text(yaml.safe_dump({"config": config}))
    env = {**os.environ, **kube.env, "PULUMI_BACKEND_URL": (work / "state").as_uri(),
           "PULUMI_CONFIG_PASSPHRASE": ""}  # fmt: skip
    (work / "state").mkdir()
    host = [sys.executable, "-m", "e2e.language_host"]
    stack = ["--stack", "bench", "--non-interactive", f"--config-file={work / 'Pulumi.bench.yaml'}"]
    _timed([*host, "stack", "init", "bench", "--non-interactive"], env)
    try:
        preview = _timed([*host, "preview", "--policy-pack", "policy", *stack], env)
        up = _timed([*host, "up", "--yes", "--policy-pack", "policy", *stack], env)
    finally:
        _timed([*host, "destroy", "--yes", *stack], env)
        _timed([*host, "stack", "rm", "--yes", "--stack", "bench", "--non-interactive"], env)
    return preview, up


def deploy_times(runs: int = 3) -> None:
    header = "| deploy, from nothing (s) | median | kubectl apply to Ready | ratio |"
    if not Cluster.running():
        print("deploy times: no local cluster (make cluster-up); skipped\n")
        return
    try:
        tools.path("pulumi")
    except tools.ToolError as error:
        print(f"deploy times: {error}; skipped\n")
        return
    kube = Kube(Cluster.env())
    image = app_image_ref(kube)
    baseline, previews, ups = [], [], []
    kubectl = str(tools.path("kubectl"))
    for run in range(runs):
        namespace = f"bench-kubectl-{run}"
        baseline.append(_kubectl_to_ready(kube, image, namespace))
        delete = [kubectl, "delete", "namespace", namespace, "--wait=false"]
        subprocess.run(delete, env={**os.environ, **kube.env}, capture_output=True, check=False)
        with tempfile.TemporaryDirectory() as work:
            preview, up = _pulumi(kube, image, f"bench-pulumi-{run}", Path(work))
        previews.append(preview)
        ups.append(up)
    base = sorted(baseline)[len(baseline) // 2]
    rows = []
    for label, values in (("pulumi preview --policy-pack policy", previews),
                          ("pulumi up --yes --policy-pack policy, to Ready", ups)):  # fmt: skip
        median = sorted(values)[len(values) // 2]
        rows.append([label, f"{median:.2f}", f"{base:.2f}", f"{median / base:.1f}"])
    table(header, rows)
