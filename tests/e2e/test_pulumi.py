"""The Pulumi program through the real engine on the local control plane: preview with the policy
pack enforced, up that builds and pushes the image and returns when Knative reports Ready, stack
outputs that feed curl and faas, an update that makes a new revision, a traffic split, config
errors, a dead cluster, a stopped registry, and destroy.

The engine, the Kubernetes and docker-build providers and the state are Pulumi's own (build/bin,
build/pulumi-home, a file backend per test session); the image is built by the cluster's BuildKit
and pushed to its registry. The program is served by e2e/language_host.py, the stand-in for the
Python language host, which the Go module proxy does not serve.
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

from e2e.context import free_port
from e2e.language_host import command
from infra import dashboard
from infra.config import ConfigError, parse
from tests.e2e.kube import ROOT, Kube, Stack, base_image_ref, eventually

pytestmark = pytest.mark.e2e

NAME, NAMESPACE = "myfirstserverlessapp", "pulumi-e2e"
HOST = f"{NAME}.{NAMESPACE}.example.com"
LINES = (
    "Method A calculated the highest prime below 10000 as 9973",
    "Method B napped for 3 seconds",
    "Method C calculated pi as 3.161199 using 50 processes",
)
KSVC_TYPE = "kubernetes:serving.knative.dev/v1:Service"
IMAGE_TYPE = "docker-build:index:Image"
# An image, or an index of images (BuildKit's, with its provenance attestation).
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
# What the engine and the SDK add when a resource fails during an update.
ENGINE_ERRORS = {"error: update failed", "error: Resource monitor has terminated, shutting down"}
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # how the engine shows a value not yet known


def built_config(kube: Kube, **overrides: Any) -> dict[str, Any]:
    """The stack's config: Pulumi.bosun.yaml's settings, building the image into the cluster's
    registry on the CI base image (the default base comes from Docker Hub)."""
    return {
        "namespace": NAMESPACE,
        "imageBuild": True,
        "imageRepository": f"{kube.registry}/{NAMESPACE}/{NAME}",
        "baseImage": base_image_ref(kube),
        "autoscalingTarget": "1",
        "maxScale": 10,
        **overrides,
    }


def prebuilt_config(image: str, **overrides: Any) -> dict[str, Any]:
    """A stack that deploys an image pushed before, by digest (imageBuild false)."""
    return {"namespace": NAMESPACE, "imageBuild": False, "imageRef": image, **overrides}


def unknown_paths(value: Any, path: str = "") -> list[str]:
    """The paths in ``value`` (a resource's inputs in a preview) whose value is not yet known."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in unknown_paths(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in unknown_paths(item, f"{path}.{i}")]
    return [path] if value == UNKNOWN else []


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
def stack(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("pulumi")
    (work / "state").mkdir()
    made = Stack("e2e", kube, work / "state", work / "Pulumi.e2e.yaml")
    made.pulumi("stack", "init")
    made.configure(built_config(kube))
    # The tag an earlier run on this cluster pushed: the run starts from nothing.
    repository = built_config(kube)["imageRepository"]
    if digest := registry_digest(repository, "e2e"):
        url = f"http://{repository.replace('/', '/v2/', 1)}/manifests/{digest}"
        assert httpx.delete(url).status_code == 202
    yield made
    if made.pulumi("stack", "ls", "--json").stdout.count('"e2e"'):
        made.pulumi("destroy", "--yes", check=False, timeout=600)
        made.pulumi("stack", "rm", "--yes", "--force", check=False)


def test_preview_plans_the_image_and_the_service_with_the_policies_enforced(stack: Stack) -> None:
    checked = stack.pulumi("preview", "--policy-pack", "policy")
    output = checked.stdout + checked.stderr
    # Every policy judged the plan except the one about the digest, which the build makes.
    assert "⚠️ myfirstserverlessapp-policy@" in output, output
    advisories = [
        line.split("[advisory]")[1].split()[0]
        for line in output.splitlines()
        if "[advisory]" in line
    ]
    assert advisories == ["knative-image-digest"], output
    assert "string value at .spec.template.spec.containers.0.image can't be known" in output
    assert "warning:" not in output, output
    plan = json.loads(stack.pulumi("preview", "--json").stdout)
    steps = {step["newState"]["type"]: step for step in plan["steps"] if "newState" in step}
    assert {"kubernetes:core/v1:Namespace", IMAGE_TYPE, KSVC_TYPE} <= set(steps)
    assert {steps[t]["op"] for t in ("kubernetes:core/v1:Namespace", IMAGE_TYPE, KSVC_TYPE)} == {
        "create"
    }
    image = steps[IMAGE_TYPE]["newState"]["inputs"]
    assert image["push"] is True
    assert image["tags"] == [f"{stack.kube.registry}/{NAMESPACE}/{NAME}:e2e"]
    # Only the image waits for the build's digest: every other field is known, so the policies
    # judge the Service in the preview instead of skipping it as unknown.
    service = steps[KSVC_TYPE]["newState"]["inputs"]
    assert unknown_paths(service) == [".spec.template.spec.containers.0.image"]
    annotations = service["spec"]["template"]["metadata"]["annotations"]
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
        ("imageRepository", "", {"imageRepository": ""}),
    ],
    ids=["negative-maxScale", "build-without-repository"],
)
def test_a_config_error_fails_the_preview_with_the_programs_one_line(
    stack: Stack, key: str, value: str, values: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError) as expected:
        parse({**built_config(stack.kube), **values})
    stack.pulumi("config", "set", key, "--", value)
    try:
        result = stack.pulumi("preview", check=False)
    finally:
        stack.configure(built_config(stack.kube))
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


def registry_digest(repository: str, tag: str) -> str | None:
    """The digest the registry serves for REPOSITORY:TAG (REPOSITORY names its registry), or
    None if it has no such tag."""
    manifest = httpx.head(
        f"http://{repository.replace('/', '/v2/', 1)}/manifests/{tag}",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    if manifest.status_code == 404:
        return None
    assert manifest.status_code == 200, manifest.text
    return manifest.headers["Docker-Content-Digest"]


def test_up_builds_and_pushes_the_image_and_returns_when_knative_reports_ready(
    stack: Stack,
) -> None:
    repository = f"{stack.kube.registry}/{NAMESPACE}/{NAME}"
    assert registry_digest(repository, "e2e") is None
    stack.pulumi("up", "--yes", "--policy-pack", "policy", timeout=900)
    # The docker-build provider built the Dockerfile with the cluster's BuildKit and pushed it.
    digest = registry_digest(repository, "e2e")
    assert digest is not None
    # No waiting here: pulumi.com/waitFor made `up` wait for Knative's own Ready condition.
    service = stack.kube.get("ksvc", NAME, "-n", NAMESPACE)
    conditions = {c["type"]: c["status"] for c in service["status"]["conditions"]}
    assert conditions["Ready"] == "True", service["status"]
    # Pinned by digest, as Knative's webhook received it.
    assert service["spec"]["template"]["spec"]["containers"][0]["image"] == f"{repository}@{digest}"
    namespace = stack.kube.get("namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"


def test_outputs_name_the_gateway_the_route_and_the_pushed_digest(stack: Stack) -> None:
    outputs = stack.outputs()
    service = stack.kube.get("ksvc", NAME, "-n", NAMESPACE)
    route = stack.kube.get("route", NAME, "-n", NAMESPACE)
    assert outputs["ingressHost"] == "127.0.0.1"
    assert outputs["routeDomain"] == urlsplit(route["status"]["url"]).hostname == HOST
    assert outputs["url"] == service["status"]["url"] == f"http://{HOST}"
    repository, digest = outputs["imageRef"].split("@")
    assert repository == f"{stack.kube.registry}/{NAMESPACE}/{NAME}"
    assert registry_digest(repository, "e2e") == digest
    assert service["spec"]["template"]["spec"]["containers"][0]["image"] == outputs["imageRef"]


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


def image_urn(stack: Stack) -> str:
    exported = json.loads(stack.pulumi("stack", "export").stdout)["deployment"]
    return str(next(r["urn"] for r in exported["resources"] if r["type"] == IMAGE_TYPE))


def test_a_stopped_registry_fails_the_build_with_one_error_and_loses_nothing(
    stack: Stack,
) -> None:
    before = stack.outputs()
    serving = stack.kube.get("ksvc", NAME, "-n", NAMESPACE)["status"]
    urn = image_urn(stack)  # replaced: a build and a push, as a changed Dockerfile would make
    with stack.kube.stopped("registry"):
        result = stack.pulumi("up", "--yes", "--replace", urn, check=False, timeout=900)
        # The build's one error names the registry and the cause; the rest is the engine
        # reporting that the update stopped.
        errors = one_error_line(result).splitlines()
        causes = [e for e in errors if e not in ENGINE_ERRORS]
        assert len(causes) == 1, errors
        assert f"dial tcp {stack.kube.registry}: connect: connection refused" in causes[0]
        assert result.returncode != 0
        # Nothing lost: no half-done operation in the state, the outputs as they were, and the
        # Service still answering with the revisions it had.
        exported = json.loads(stack.pulumi("stack", "export").stdout)["deployment"]
        assert not exported.get("pending_operations")
        assert stack.outputs() == before
        assert stack.kube.get("ksvc", NAME, "-n", NAMESPACE)["status"] == serving
        assert revision_served(stack.kube) in {t["revisionName"] for t in serving["traffic"]}
    stack.pulumi("up", "--yes", "--replace", urn, timeout=900)
    repository, digest = stack.outputs()["imageRef"].split("@")
    assert registry_digest(repository, "e2e") == digest
    stack.pulumi("preview", "--expect-no-changes")
    assert revision_served(stack.kube).startswith(f"{NAME}-")


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
        other.configure(prebuilt_config(app_image, namespace=namespace, createNamespace=False))
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


def test_the_grafana_dashboard_is_a_configmap_that_grafanas_sidecar_loads(
    kube: Kube, app_image: str, tmp_path: Path
) -> None:
    """grafanaDashboard: true, into Grafana's namespace as kube-prometheus-stack makes it."""
    monitoring, namespace = "monitoring", "pulumi-dashboard"
    kube.kubectl("create", "namespace", monitoring)
    try:
        (tmp_path / "state").mkdir()
        other = Stack("dashboard", kube, tmp_path / "state", tmp_path / "Pulumi.dashboard.yaml")
        other.pulumi("stack", "init")
        other.configure(prebuilt_config(app_image, namespace=namespace, grafanaDashboard=True,
                                        grafanaDashboardNamespace=monitoring))  # fmt: skip
        other.pulumi("up", "--yes", timeout=600)
        found = kube.get("configmaps", "-n", monitoring, "-l", "grafana_dashboard=1")["items"]
        assert [c["metadata"]["name"] for c in found] == [f"{NAME}-dashboard"]
        (board,) = (json.loads(text) for text in found[0]["data"].values())
        assert board["uid"] == dashboard.UID
        variables = {v["name"]: v["current"]["value"] for v in board["templating"]["list"][1:]}
        assert variables == {"namespace": namespace, "service": NAME}
        other.pulumi("destroy", "--yes", timeout=600)
        assert kube.get("configmaps", "-n", monitoring, "-l", "grafana_dashboard=1")["items"] == []
        other.pulumi("stack", "rm", "--yes")
    finally:
        kube.kubectl("delete", "namespace", monitoring, namespace, "--wait=false", check=False)
