"""`make cluster-up` on bad input: one clear line naming the problem, a non-zero exit, and
nothing left running. These start clusters of their own, so they run before the session's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e import netns, node, proxy, tools
from e2e.cluster import Cluster, another_cluster
from e2e.context import LOGS, RUN, STATE, State
from e2e.images import binary_image
from e2e.process import mounts_below
from tests.e2e.kube import ROOT, Kube

# Set by .ci/e2e: these must run there, so a running cluster fails them instead of skipping.
REQUIRED = "E2E_FAULTS_REQUIRED"


@pytest.fixture(autouse=True, scope="module")
def _the_machine_to_themselves() -> None:
    """These start clusters of their own: with a cluster running they are skipped (the
    summary says why), unless REQUIRED is set, when that is a failure."""
    if Cluster.running() or another_cluster(State.load() or State()) is not None:
        reason = "a local cluster is running; these need the machine to themselves"
        if os.environ.get(REQUIRED):
            pytest.fail(f"{reason}, and {REQUIRED} is set: stop it (make cluster-down)")
        pytest.skip(reason)


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
        if any(m in cmdline for m in (*markers, str(tools.BIN), str(RUN), str(STATE),
                                      "e2e.gateway", "docker-registry")):  # fmt: skip
            found.append(cmdline)
    return found


def blackholed() -> bool:
    return str(netns.SERVICE_NETWORK) in netns.ip("route", "show", "type", "blackhole").stdout


# The host's settings before any cluster of these tests ran (on a fresh machine: no blackhole
# route and no KUBE- chain): each must be found so again.
SYSCTLS = {key: netns.sysctl(key) for key in netns.SYSCTLS}
BLACKHOLE = blackholed()
CHAINS = proxy.chains()


def assert_nothing_left(*markers: str) -> None:
    assert leftovers(*markers) == []
    assert not STATE.exists()
    assert mounts_below(RUN) == []
    assert not RUN.exists()
    assert netns.owned() == []
    assert netns.ip("link", "show", netns.BRIDGE, check=False).returncode != 0
    # The Services' blackhole route, kube-proxy's rules and the sysctls: as the host had them.
    assert blackholed() == BLACKHOLE
    assert proxy.chains() == CHAINS
    assert {key: netns.sysctl(key) for key in netns.SYSCTLS} == SYSCTLS
    # The node's: the CRI's network namespaces and the kubelet's cgroups.
    assert [n for n in netns.ip("netns", "list").stdout.split() if n.startswith("cni-")] == []
    assert [path for path in node._cgroups() if path.exists()] == []


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


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        # A process of the cluster's: its exit and its last words.
        ("coredns", "cluster: coredns exited with code 3 while starting: coredns: cannot start"),
        # One of Knative's Deployments, whose image is made from the tool: a pod that cannot
        # run it (the image has no shell for this script) is named as soon as it fails.
        ("knative-controller", "cluster: knative-controller "),
    ],
)
def test_component_that_dies_while_starting_is_named_and_everything_stops(
    tmp_path: Path, tool: str, message: str
) -> None:
    for name in tools.CLUSTER_TOOLS:
        (tmp_path / name).symlink_to(tools.path(name))
    broken = tmp_path / tool
    broken.unlink()
    broken.write_text(
        f"#!/bin/sh\necho '{tool.removeprefix('knative-')}: cannot start' >&2\nexit 3\n"
    )
    broken.chmod(0o755)
    started = time.monotonic()
    result = up(TOOLS_BIN=str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message), lines[0]
    assert time.monotonic() - started < 300  # it failed at once, not after a time-out
    # The components before it were up (their logs stay): every one is stopped again.
    assert (LOGS / "kube-apiserver.log").stat().st_size > 0
    assert (LOGS / "kubelet.log").exists()
    assert_nothing_left(str(tmp_path))


def test_down_after_a_host_network_container_leaves_nothing_mounted() -> None:
    # A blackhole route for the Services' range that the host had (a cluster of another
    # checkout left it) is the host's: down keeps it.
    if not BLACKHOLE:
        netns.ip("route", "add", "blackhole", str(netns.SERVICE_NETWORK))
    started = up()
    assert started.returncode == 0, started.stderr
    try:
        kube = Kube(Cluster.env())
        run = ["run", "--detach", "--network", "host", binary_image(kube.registry, "pause")]
        container = kube.docker(*run, timeout=60).stdout.strip()
        kube.docker("rm", "--force", container, timeout=60)
        # What a container on the host's network leaves: dockerd's mount of that namespace.
        assert mounts_below(RUN / "exec") != []
    finally:
        down = cluster("down")
    assert down.returncode == 0, down.stderr
    assert blackholed()
    if not BLACKHOLE:
        netns.remove_blackhole(str(netns.SERVICE_NETWORK))
    assert_nothing_left()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["start", "registry"], 1, "cluster: no local cluster is running: run make cluster-up"),
        (["stop"], 2, "stop and start take a component; up, down and status take none"),
        (["up", "registry"], 2, "stop and start take a component; up, down and status take none"),
        (
            ["stop", "etcd"],
            2,
            "invalid choice: 'etcd' (choose from 'registry', 'kube-proxy', 'zipkin')",
        ),
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
