"""The Pulumi program through the real engine on the local control plane: preview with the policy
pack enforced, up until Knative reports Ready, stack outputs that feed curl and faas, an update
that makes a new revision, a traffic split, config errors, a dead cluster, and destroy.

The engine, the Kubernetes provider and the state are Pulumi's own (build/bin, build/pulumi-home,
a file backend per test session). The program is served by e2e/language_host.py, the stand-in for
the Python language host, which the Go module proxy does not serve. The image is the project's
Dockerfile pushed to the cluster's registry by digest (imageBuild false): the docker-build
provider does not run here, see the README.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest
import yaml

from e2e.cluster import free_port
from e2e.language_host import command
from infra.config import ConfigError, parse
from tests.e2e.kube import ROOT, Kube, Stack, eventually

NAME, NAMESPACE = "myfirstserverlessapp", "pulumi-e2e"
HOST = f"{NAME}.{NAMESPACE}.example.com"
LINES = (
    "Method A calculated the highest prime below 10000 as 9973",
    "Method B napped for 3 seconds",
    "Method C calculated pi as 3.161199 using 50 processes",
)
KSVC_TYPE = "kubernetes:serving.knative.dev/v1:Service"


def stack_config(image: str, **overrides: Any) -> dict[str, Any]:
    return {
        "namespace": NAMESPACE,
        "imageBuild": False,
        "imageRef": image,
        "autoscalingTarget": "1",
        "maxScale": 10,
        **overrides,
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["up", "--yes"], "up"),
        (["-s", "local", "preview", "--policy-pack", "policy"], "preview"),
        (["--stack=local", "--cwd", "up", "destroy"], "destroy"),
        (["config", "set", "colour", "up"], "config"),
        (["--non-interactive", "-v", "9", "refresh"], "refresh"),
        (["--", "up"], None),
        ([], None),
    ],
)
def test_the_stand_in_serves_the_program_only_to_the_commands_that_run_it(
    args: list[str], expected: str | None
) -> None:
    assert command(args) == expected


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The distinct error lines of a command that failed without a traceback."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = output.splitlines()
    return "\n".join(sorted({line[line.index("error:") :] for line in lines if "error:" in line}))


@pytest.fixture(scope="module")
def stack(kube: Kube, app_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("pulumi")
    (work / "state").mkdir()
    made = Stack("e2e", kube, work / "state", work / "Pulumi.e2e.yaml")
    made.pulumi("stack", "init")
    made.configure(stack_config(app_image))
    yield made
    if made.pulumi("stack", "ls", "--json").stdout.count('"e2e"'):
        made.pulumi("destroy", "--yes", check=False, timeout=600)
        made.pulumi("stack", "rm", "--yes", "--force", check=False)


def test_preview_plans_the_namespace_and_the_service_with_the_policies_enforced(
    stack: Stack, app_image: str
) -> None:
    checked = stack.pulumi("preview", "--policy-pack", "policy").stdout
    assert "✅ myfirstserverlessapp-policy@" in checked, checked
    plan = json.loads(stack.pulumi("preview", "--json").stdout)
    steps = {step["newState"]["type"]: step for step in plan["steps"] if "newState" in step}
    assert {"kubernetes:core/v1:Namespace", KSVC_TYPE} <= set(steps)
    assert all(steps[t]["op"] == "create" for t in ("kubernetes:core/v1:Namespace", KSVC_TYPE))
    service = steps[KSVC_TYPE]["newState"]["inputs"]
    template = service["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == app_image
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/max-scale"] == "10"


def test_a_policy_violation_fails_the_preview_and_names_the_policy(stack: Stack) -> None:
    stack.pulumi("config", "set", "maxScale", "0")
    try:
        result = stack.pulumi("preview", "--policy-pack", "policy", check=False)
    finally:
        stack.pulumi("config", "set", "maxScale", "10")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "knative-max-scale" in output
    assert "mandatory" in output


@pytest.mark.parametrize(
    ("key", "value", "values"),
    [
        ("maxScale", "-1", {"maxScale": -1}),
        ("imageBuild", "true", {"imageBuild": True}),
    ],
    ids=["negative-maxScale", "build-without-repository"],
)
def test_a_config_error_fails_the_preview_with_the_programs_one_line(
    stack: Stack, app_image: str, key: str, value: str, values: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError) as expected:
        parse({**stack_config(app_image), **values})
    stack.pulumi("config", "set", key, "--", value)
    try:
        result = stack.pulumi("preview", check=False)
    finally:
        stack.configure(stack_config(app_image))
    # The message once (the progress line and the diagnostics repeat it), and the engine's code
    # for a program that failed.
    assert one_error_line(result) == f"error: {expected.value}"
    assert result.returncode == 1


def test_a_kubeconfig_at_a_closed_port_fails_the_preview_with_one_error(
    stack: Stack, tmp_path: Path
) -> None:
    config = yaml.safe_load(Path(stack.kube.env["KUBECONFIG"]).read_text())
    port = free_port()
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    closed = tmp_path / "kubeconfig"
    closed.write_text(yaml.safe_dump(config))
    result = stack.pulumi("preview", check=False, KUBECONFIG=str(closed))
    # The Kubernetes provider's own words: an error that the cluster is unreachable, after a
    # warning that names the address and the cause.
    assert "unreachable cluster" in one_error_line(result)
    warning = f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert warning in result.stdout + result.stderr


def test_up_returns_when_knative_reports_the_service_ready(stack: Stack, app_image: str) -> None:
    stack.pulumi("up", "--yes", "--policy-pack", "policy", timeout=600)
    # No waiting here: pulumi.com/waitFor made `up` wait for Knative's own Ready condition.
    service = stack.kube.get("ksvc", NAME, "-n", NAMESPACE)
    conditions = {c["type"]: c["status"] for c in service["status"]["conditions"]}
    assert conditions["Ready"] == "True", service["status"]
    assert service["spec"]["template"]["spec"]["containers"][0]["image"] == app_image
    namespace = stack.kube.get("namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"


def test_outputs_name_the_gateway_the_route_and_the_pushed_digest(
    stack: Stack, app_image: str
) -> None:
    outputs = stack.outputs()
    service = stack.kube.get("ksvc", NAME, "-n", NAMESPACE)
    route = stack.kube.get("route", NAME, "-n", NAMESPACE)
    assert outputs["ingressHost"] == "127.0.0.1"
    assert outputs["routeDomain"] == urlsplit(route["status"]["url"]).hostname == HOST
    assert outputs["url"] == service["status"]["url"] == f"http://{HOST}"
    assert outputs["imageRef"] == app_image
    repository, digest = app_image.split("@")
    manifest = httpx.head(
        f"http://{repository.replace('/', '/v2/', 1)}/manifests/e2e",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert manifest.headers["Docker-Content-Digest"] == digest


def test_the_curl_output_answers_the_original_lines(stack: Stack) -> None:
    curl = stack.pulumi("stack", "output", "curl").stdout.strip()
    # The gateway stand-in listens on a port of its own: the only change to the command.
    gateway = f"http://{stack.kube.gateway}/"
    words = [word.replace("http://127.0.0.1/", gateway) for word in shlex.split(curl)]
    assert words[0] == "curl"
    assert words != shlex.split(curl)
    answer = subprocess.run([*words, "--silent", "--max-time", "60"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    assert answer.rstrip().splitlines()[-3:] == list(LINES)


def test_faas_call_reads_the_route_from_the_stack(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "call", "--stack", stack.name,
         "--host", stack.kube.gateway, "--in", "10000", "--nap", "3", "--processes", "50"],
        cwd=ROOT, env=stack.env(PATH=f"{ROOT / 'build' / 'bin'}:{stack.env()['PATH']}"),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [line for line in LINES if line in result.stdout] == list(LINES), result.stdout


def revision_served(kube: Kube) -> str:
    response = kube.call(HOST)
    assert response.status_code == 200, response.text
    return response.headers["k-revision"]


def test_a_config_change_makes_a_new_revision_and_a_split_serves_both(stack: Stack) -> None:
    first = revision_served(stack.kube)
    stack.pulumi("config", "set", "colour", "red")
    stack.pulumi("up", "--yes", timeout=600)
    second = revision_served(stack.kube)
    assert first == f"{NAME}-00001"
    assert second == f"{NAME}-00002"
    page = httpx.get(f"http://{stack.kube.gateway}/?format=html", headers={"Host": HOST})
    assert '<pre style="color: red">' in page.text

    # examples/canary.yaml's entries, at 50/50 so both show in a bounded number of requests.
    stack.pulumi("config", "set", "--path", "traffic[0]", f"{first}:50:stable")
    stack.pulumi("config", "set", "--path", "traffic[1]", "latest:50:canary")
    stack.pulumi("up", "--yes", timeout=600)
    served = Counter(revision_served(stack.kube) for _ in range(200))
    # Binomial(200, 0.5): 100 +- 7 per standard deviation; 60..140 is more than 5 of them.
    assert set(served) == {first, second}
    assert all(60 <= count <= 140 for count in served.values()), served
    traffic = stack.kube.get("ksvc", NAME, "-n", NAMESPACE)["status"]["traffic"]
    assert {target.get("tag") for target in traffic} == {"stable", "canary"}


def test_destroy_removes_the_namespace_and_the_revisions_containers(stack: Stack) -> None:
    pods = stack.kube.get("pods", "-n", NAMESPACE)["items"]
    uids = {pod["metadata"]["uid"] for pod in pods}
    assert uids
    assert uids <= set(stack.kube.pod_containers())
    stack.pulumi("destroy", "--yes", timeout=600)
    assert stack.kube.kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0
    eventually(lambda: not uids & set(stack.kube.pod_containers()), 180, "containers removed")
    stack.pulumi("stack", "rm", "--yes")
    assert '"e2e"' not in stack.pulumi("stack", "ls", "--json").stdout


def test_an_existing_namespace_keeps_living_without_the_label(
    kube: Kube, app_image: str, tmp_path: Path
) -> None:
    namespace = "pulumi-existing"
    kube.kubectl("create", "namespace", namespace)
    try:
        (tmp_path / "state").mkdir()
        other = Stack("existing", kube, tmp_path / "state", tmp_path / "Pulumi.existing.yaml")
        other.pulumi("stack", "init")
        other.configure(stack_config(app_image, namespace=namespace, createNamespace=False))
        other.pulumi("up", "--yes", timeout=600)
        labels = kube.get("namespace", namespace)["metadata"].get("labels", {})
        assert labels.get("istio-injection") == "enabled"
        other.pulumi("destroy", "--yes", timeout=600)
        left = kube.get("namespace", namespace)["metadata"]
        assert left.get("deletionTimestamp") is None
        assert "istio-injection" not in left.get("labels", {})
        assert kube.get("ksvc", "-n", namespace)["items"] == []
        other.pulumi("stack", "rm", "--yes")
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
