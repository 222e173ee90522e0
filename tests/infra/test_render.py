"""`make manifests`: the stack's Namespace and Knative Service as YAML for kubectl."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.config import ROOT, file_values, stack_values
from infra.render import image_for, main, render

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
PINNED = "docker.io/me/app@sha256:" + "cd" * 32
AS = "autoscaling.knative.dev/"


def test_bosun_renders_the_original_demo() -> None:
    namespace, service = yaml.safe_load_all(render(stack_values("bosun"), PINNED))
    assert namespace == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "hackathon-pi-knative", "labels": {"istio-injection": "enabled"}},
    }
    assert (service["apiVersion"], service["kind"]) == ("serving.knative.dev/v1", "Service")
    assert service["metadata"]["name"] == "myfirstserverlessapp"
    assert service["metadata"]["namespace"] == "hackathon-pi-knative"
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    expected = {
        "class": "kpa.autoscaling.knative.dev",
        "metric": "concurrency",
        "target": "1",
        "min-scale": "0",
        "max-scale": "10",
    }
    assert {key: annotations[AS + key] for key in expected} == expected
    (container,) = template["spec"]["containers"]
    assert container["image"] == PINNED
    assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == "http://zipkin.istio-system:9411/api/v2/spans"
    # No period: Knative's queue-proxy probes aggressively only then (scale from zero).
    assert container["readinessProbe"] == {"httpGet": {"path": "/readyz"}}


def test_without_an_image_it_is_the_tag_the_program_pushes_and_said_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--stack", "bosun"]) == 0
    out, err = capsys.readouterr()
    service = list(yaml.safe_load_all(out))[-1]
    tag = "docker.io/myfirstserverlessapp/myfirstserverlessapp:bosun"
    assert service["spec"]["template"]["spec"]["containers"][0]["image"] == tag
    assert err == (
        f"render: note: image {tag} is not pinned by digest (the policy pack refuses it); "
        "pass --image REPOSITORY@sha256:... (pulumi stack output imageRef)\n"
    )


def test_a_pinned_image_is_rendered_without_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "bosun", "--image", PINNED]) == 0
    out, err = capsys.readouterr()
    assert (
        list(yaml.safe_load_all(out))[-1]["spec"]["template"]["spec"]["containers"][0]["image"]
        == PINNED
    )
    assert err == ""


def test_a_prebuilt_image_is_its_pinned_reference() -> None:
    values = file_values(ROOT / "examples/prebuilt-image.yaml")
    assert image_for(values, "bosun") == values["imageRef"]


def test_an_existing_namespace_is_not_rendered() -> None:
    values = file_values(ROOT / "examples/existing-namespace.yaml")
    documents = list(yaml.safe_load_all(render(values, PINNED)))
    assert [d["kind"] for d in documents] == ["Service"]
    assert documents[0]["metadata"]["namespace"] == "team-apps"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_renders(example: Path) -> None:
    documents = list(yaml.safe_load_all(render(file_values(example), PINNED)))
    assert documents[-1]["kind"] == "Service"


def test_bad_config_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("config:\n  myfirstserverlessapp:maxScale: -3\n")
    assert main(["--config", str(bad)]) == 1
    assert capsys.readouterr().err == (
        "render: myfirstserverlessapp:maxScale=-3: not allowed; "
        "allowed: an integer from 0 to 2147483647\n"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (":::", "is not a stack's settings: it has no config: key"),
        ("config: [1, 2]", "is not a stack's settings: config: is a list, not a mapping of keys"),
        ("config: 5", "is not a stack's settings: config: is a number, not a mapping of keys"),
        ("- 1\n- 2\n", "is not a stack's settings: a mapping with a config: key, not a list"),
        (
            "config: {a",
            "is not YAML: expected ',' or '}', but got '<stream end>' at line 1, column 11",
        ),
    ],
)
def test_a_file_that_is_not_a_stacks_settings_is_named_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert main(["--config", str(bad)]) == 1
    assert capsys.readouterr().err == f"render: {bad} {problem}\n"


@pytest.mark.parametrize(
    "image",
    [
        "docker.io/<you>/myfirstserverlessapp@sha256:<digest>",
        "repo@sha256:abc",
        "UPPER/app@sha256:" + "ab" * 32,
        "docker.io/me/app:latest",
        "not a ref",
    ],
)
def test_an_image_that_is_not_pinned_by_digest_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], image: str
) -> None:
    assert main(["--stack", "bosun", "--image", image]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"render: --image {image!r}: not allowed; allowed: an image pinned by digest, "
        "e.g. docker.io/you/app@sha256:<64 hex digits>\n"
    )


@pytest.mark.parametrize(
    "image",
    [PINNED, "localhost:5000/app@sha256:" + "ab" * 32, "127.0.0.1:5000/a/b:v1@sha256:" + "ab" * 32],
)
def test_images_pinned_by_digest_are_rendered(image: str) -> None:
    assert main(["--stack", "bosun", "--image", image]) == 0


def test_make_manifests_passes_image_ref_as_one_argument() -> None:
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "manifests", "IMAGE_REF=not a ref"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    [command] = [line for line in dry.stdout.splitlines() if "infra.render" in line]
    words = shlex.split(command)
    assert words[words.index("--image") + 1] == "not a ref"
