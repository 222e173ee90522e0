"""`make e2e`'s order: the harness's fault tests, which need the machine to themselves, run
first, and in CI they may not be skipped."""

from __future__ import annotations

import re

from tests.e2e.conftest import ORDER
from tests.utils import ROOT


def test_the_fault_tests_run_before_anything_starts_the_sessions_cluster() -> None:
    assert ORDER[0] == "test_harness_faults"
    # Every other e2e module is ordered after it, none left to the end by accident.
    modules = {path.stem for path in (ROOT / "tests" / "e2e").glob("test_*.py")}
    assert {name.removesuffix(".py") for name in ORDER} == modules


def test_ci_runs_the_end_to_end_tests_with_the_fault_tests_required() -> None:
    script = (ROOT / ".ci" / "e2e").read_text()
    lines = [line.strip() for line in script.splitlines() if not line.lstrip().startswith("#")]
    commands = [line for line in lines if re.search(r"\bmake e2e\b", line)]
    assert commands, "no make e2e in .ci/e2e"
    assert all(line.startswith("E2E_FAULTS_REQUIRED=1 make e2e") for line in commands)
    source = (ROOT / "tests" / "e2e" / "test_harness_faults.py").read_text()
    assert 'REQUIRED = "E2E_FAULTS_REQUIRED"' in source
