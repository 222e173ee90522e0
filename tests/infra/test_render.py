"""`make manifests`: the same builder as the program, rendered as YAML for kubectl."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra import manifest
from infra.config import ROOT, file_values, parse, stack_values
from infra.render import main, render

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_bosun_renders_the_namespace_and_the_service_of_the_program() -> None:
    documents = list(yaml.safe_load_all(render(stack_values("bosun"))))
    config = parse(stack_values("bosun"))
    image = "docker.io/myfirstserverlessapp/myfirstserverlessapp:latest"
    assert documents == [manifest.namespace(config), manifest.service(config, image)]


def test_the_image_can_be_given() -> None:
    ref = "docker.io/me/app@sha256:" + "cd" * 32
    service = list(yaml.safe_load_all(render(stack_values("bosun"), ref)))[-1]
    assert service["spec"]["template"]["spec"]["containers"][0]["image"] == ref


def test_an_existing_namespace_is_not_rendered() -> None:
    documents = list(
        yaml.safe_load_all(render(file_values(ROOT / "examples/existing-namespace.yaml")))
    )
    assert [d["kind"] for d in documents] == ["Service"]
    assert documents[0]["metadata"]["namespace"] == "team-apps"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_renders_and_is_shown_in_the_readme(example: Path) -> None:
    documents = list(yaml.safe_load_all(render(file_values(example))))
    assert documents[-1]["kind"] == "Service"
    assert example.read_text() in (ROOT / "README.md").read_text(), f"{example.name} not in README"


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
