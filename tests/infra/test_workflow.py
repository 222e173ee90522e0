"""The pull-request preview (.github/workflows/preview.yml) runs what the end-to-end tests run
on the local control plane: `pulumi preview --policy-pack policy` of a stack of this project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def pulumi_steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "preview.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    return [s for s in steps if str(s.get("uses", "")).startswith("pulumi/actions@")]


def test_the_workflow_previews_with_the_policy_pack_enforced() -> None:
    (step,) = pulumi_steps()
    assert step["with"]["command"] == "preview"
    assert step["with"]["policyPacks"] == "policy"
    assert (ROOT / step["with"]["policyPacks"] / "PulumiPolicy.yaml").exists()


def test_the_workflow_runs_in_the_project_root_with_the_locked_environment() -> None:
    (step,) = pulumi_steps()
    assert "work-dir" not in step["with"] or step["with"]["work-dir"] in {".", "./"}
    workflow = (ROOT / ".github" / "workflows" / "preview.yml").read_text()
    assert "make env" in workflow
