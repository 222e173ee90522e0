"""One cluster per machine: the node's paths, bridge and Service routes are the machine's, so
`up` and `down` in one checkout refuse to touch a cluster that another checkout started."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import cluster
from e2e.context import State
from e2e.process import Process
from tests.utils import python_named


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The node's run directory, this test's own (a cluster running on the machine is not it)."""
    monkeypatch.setattr(cluster, "RUN", tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def other_kubelet(run: Path) -> Iterator[int]:
    """A process that looks like another checkout's kubelet: named so, naming RUN. Yielded once
    it runs as that program: until the child has exec'd, /proc/PID/cmdline is this process's."""
    with python_named(
        "kubelet", "import time; print('running', flush=True); time.sleep(60)",
        f"--root-dir={run}/kubelet", stdout=subprocess.PIPE,
    ) as child:  # fmt: skip
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "running\n"
            yield child.pid
        finally:
            child.kill()


@pytest.fixture
def nothing_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    """This checkout has no cluster; starting or stopping anything fails the test."""

    def touched(*_: object, **__: object) -> None:
        raise AssertionError("the other cluster was touched")

    monkeypatch.setattr(State, "load", staticmethod(lambda: None))
    monkeypatch.setattr(cluster.Cluster, "stop", touched)
    monkeypatch.setattr(cluster, "_preflight", touched)


def test_another_checkouts_node_program_is_found(other_kubelet: int) -> None:
    assert cluster.another_cluster(State()) == f"kubelet (pid {other_kubelet})"


def test_a_clusters_own_node_programs_are_not_another(other_kubelet: int) -> None:
    assert cluster.another_cluster(State()) is not None  # seen while it is not ours
    ours = State(processes=[Process("kubelet", other_kubelet, "kubelet", "kubelet.log")])
    assert cluster.another_cluster(ours) is None


@pytest.mark.parametrize("command", ["up", "down"])
@pytest.mark.usefixtures("nothing_touched")
def test_up_and_down_refuse_while_another_checkouts_cluster_runs(
    run: Path, other_kubelet: int, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cluster.main([command]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"cluster: another local cluster is running on this machine (kubelet (pid {other_kubelet})"
        f" uses {run}): stop it with make cluster-down in its checkout"
    ]
