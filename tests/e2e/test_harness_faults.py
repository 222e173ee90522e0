"""`make cluster-up` on bad input: one clear line naming the problem, a non-zero exit, and
nothing left running. These start clusters of their own, so they run before the session's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from e2e import netns, tools
from e2e.cluster import Cluster
from e2e.context import RUN, STATE
from e2e.images import PAUSE_IMAGE
from e2e.process import mounts_below
from tests.e2e.kube import ROOT, Kube

pytestmark = pytest.mark.skipif(
    Cluster.running(), reason="a local cluster is running; these need the machine to themselves"
)


def cluster(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m e2e.cluster ARGS`, as a user runs it, with ENV added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "e2e.cluster", *args],
        cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def up(**env: str) -> subprocess.CompletedProcess[str]:
    return cluster("up", env=env)


def leftovers(*markers: str) -> list[str]:
    """Processes whose command line names the tools, the cluster's state or a stand-in."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(m in cmdline for m in (*markers, str(tools.BIN), str(RUN), "e2e.kubelet",
                                      "e2e.gateway", "docker-registry")):  # fmt: skip
            found.append(cmdline)
    return found


# The host's settings before any cluster of these tests ran: each must be found so again.
SYSCTLS = {key: netns.sysctl(key) for key in netns.SYSCTLS}


def assert_nothing_left(*markers: str) -> None:
    assert leftovers(*markers) == []
    assert not STATE.exists()
    assert mounts_below(RUN) == []
    assert not RUN.exists()
    assert netns.owned() == []
    assert netns.ip("link", "show", netns.BRIDGE, check=False).returncode != 0
    # The Services' blackhole route, kube-proxy's rules and the sysctls: as the host had them.
    assert str(netns.SERVICE_NETWORK) not in netns.ip("route", "show", "type", "blackhole").stdout
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert "KUBE-" not in rules
    assert {key: netns.sysctl(key) for key in netns.SYSCTLS} == SYSCTLS


def test_port_in_use_is_named_and_nothing_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = up(GATEWAY_PORT=str(port))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"cluster: gateway: port 127.0.0.1:{port} is in use"]
    assert_nothing_left()


def test_missing_tool_is_named(tmp_path: Path) -> None:
    result = up(TOOLS_BIN=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["cluster: etcd: not built; run make tools"]
    assert_nothing_left()


def test_component_that_dies_while_starting_is_named_and_everything_stops(
    tmp_path: Path,
) -> None:
    for name in tools.CLUSTER_TOOLS:
        (tmp_path / name).symlink_to(tools.path(name))
    broken = tmp_path / "knative-controller"
    broken.unlink()
    broken.write_text("#!/bin/sh\necho 'controller: cannot start' >&2\nexit 3\n")
    broken.chmod(0o755)
    result = up(TOOLS_BIN=str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "cluster: knative-controller exited with code 3 while starting: controller: cannot start"
    )
    # The components before it were up: every one of them is stopped again.
    assert "knative install" in result.stdout
    assert_nothing_left(str(tmp_path))


def test_down_after_a_host_network_container_leaves_nothing_mounted() -> None:
    started = up()
    assert started.returncode == 0, started.stderr
    try:
        kube = Kube(Cluster.env())
        run = ["run", "--detach", "--network", "host", PAUSE_IMAGE]
        container = kube.docker(*run, timeout=60).stdout.strip()
        kube.docker("rm", "--force", container, timeout=60)
        # What a container on the host's network leaves: dockerd's mount of that namespace.
        assert mounts_below(RUN / "exec") != []
    finally:
        down = cluster("down")
    assert down.returncode == 0, down.stderr
    assert_nothing_left()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["start", "registry"], 1, "cluster: no local cluster is running: run make cluster-up"),
        (["stop"], 2, "stop and start take a component; up, down and status take none"),
        (["up", "registry"], 2, "stop and start take a component; up, down and status take none"),
        (["stop", "etcd"], 2, "invalid choice: 'etcd' (choose from 'registry')"),
    ],
)
def test_stop_and_start_take_a_restartable_component_of_a_running_cluster(
    args: list[str], code: int, message: str
) -> None:
    result = cluster(*args, timeout=60)
    assert result.returncode == code
    assert message in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert_nothing_left()
