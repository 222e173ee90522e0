"""The node's generated configuration: containerd's, the CNI plugin's and the kubelet's."""

from __future__ import annotations

import ipaddress
import os
import signal
import tomllib
from pathlib import Path

import pytest

from e2e import netns, node, poll, process
from tests.utils import python_named

REGISTRY = "127.0.0.1:5000"
PAUSE = f"{REGISTRY}/mfsa/pause@sha256:" + "ab" * 32


def test_containerd_runs_the_cri_with_this_machines_needs_under_the_run_directory() -> None:
    config = tomllib.loads(node.containerd_config(REGISTRY, PAUSE))
    assert config["version"] == 2
    assert config["root"] == str(node.CONTAINERD)
    assert config["grpc"]["address"] == str(node.CONTAINERD_SOCKET)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == PAUSE
    assert cri["restrict_oom_score_adj"] is True  # lowering oom_score_adj is refused here
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": str(node.CNI_CONF)}
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is False  # cgroupfs, as the kubelet's driver
    assert cri["registry"]["config_path"] == str(node.CONTAINERD / "certs.d")


def test_the_registry_is_pulled_from_over_plain_http() -> None:
    hosts = tomllib.loads(node.registry_hosts(REGISTRY))
    assert hosts["server"] == f"http://{REGISTRY}"
    assert hosts["host"][f"http://{REGISTRY}"]["capabilities"] == ["pull", "resolve"]


def test_pods_get_addresses_on_the_bridge_routes_for_two_ranges_and_no_masquerade() -> None:
    config = node.cni_config()
    (bridge,) = config["plugins"]
    assert (bridge["type"], bridge["bridge"]) == ("bridge", netns.BRIDGE)
    assert bridge["ipMasq"] is False
    assert bridge["hairpinMode"] is True
    (span,) = bridge["ipam"]["ranges"][0]
    first, last = (ipaddress.IPv4Address(span[key]) for key in ("rangeStart", "rangeEnd"))
    assert first in netns.NETWORK
    assert last in netns.NETWORK
    assert first > ipaddress.IPv4Address(netns.NODE_IP)
    assert span["gateway"] == netns.NODE_IP
    # The bridge's range is the interface's own route; the Services' goes via the node.
    assert bridge["ipam"]["routes"] == [{"dst": str(netns.SERVICE_NETWORK), "gw": netns.NODE_IP}]


def test_the_kubelet_serves_on_the_node_with_the_clusters_dns_and_this_machines_cgroups() -> None:
    config = node.kubelet_config(port=10250, healthz=10248, resolv_conf=Path("/run/empty"))
    assert config["address"] == netns.NODE_IP
    assert config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["clusterDNS"] == [netns.DNS_IP]
    assert config["clusterDomain"] == "cluster.local"
    assert config["resolvConf"] == "/run/empty"  # nothing of the host's DNS in pods
    assert config["containerRuntimeEndpoint"] == f"unix://{node.CONTAINERD_SOCKET}"
    assert (config["cgroupDriver"], config["cgroupRoot"]) == ("cgroupfs", node.CGROUP_ROOT)
    assert config["failCgroupV1"] is False  # these machines' cgroups are v1


def test_the_pods_are_the_processes_under_the_nodes_shims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shim of this node's containerd (by its state directory) and what runs under it; not
    another containerd's shim (nor a running cluster's: the node's state is this test's own)."""
    monkeypatch.setattr(node, "CONTAINERD_STATE", tmp_path / "ours")
    container = "import subprocess, time; subprocess.Popen(['/bin/sleep', '60']); time.sleep(60)"
    shims = [
        python_named("containerd-shim-runc-v2", container, f"-address={state}/containerd.sock")
        for state in (node.CONTAINERD_STATE, tmp_path / "other")
    ]  # fmt: skip
    try:
        for shim in shims:
            poll.until(lambda: len(process.descendants(shim.pid)) == 2,  # noqa: B023
                       timeout=10, what="the container runs")  # fmt: skip
        assert node.pods() == process.descendants(shims[0].pid)
    finally:
        for shim in shims:
            for pid in reversed(process.descendants(shim.pid)):
                os.kill(pid, signal.SIGKILL)
            shim.wait()
