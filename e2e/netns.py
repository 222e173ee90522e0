"""The node's network: a bridge on a private range, and a network namespace per pod or component.

A cluster gives every pod its own network namespace and address (the CNI plugin's job). Knative's
components need the same here: the controller's probe server and the autoscaler's stats server
both bind :8080, queue-proxy binds :8012, :8022 and :9090, none of them configurable, and
Endpoints refuse loopback addresses. So every pod and every Knative component gets a namespace
with one end of a veth pair; the other end joins a bridge in the host's namespace, whose address
is the node's. The range is TEST-NET-2 (198.51.100.0/24), which no interface here uses. The
namespaces get no default route: from them only this range is reachable.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

NETWORK = ipaddress.ip_network("198.51.100.0/24")
NODE_IP = str(NETWORK[1])  # the host's end of the bridge: the node's address
BRIDGE = "mfsa0"
PREFIX = "mfsa-"  # every namespace and host-side interface the harness makes
POD_ADDRESSES = range(32, 255)  # hosts .32 to .254 are the pods' (the kubelet's IPAM range)
_ETC_NETNS = Path("/etc/netns")


class NetworkError(RuntimeError):
    """The node's network could not be set up."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("ip") is None:
        raise NetworkError("ip: not found; install iproute2")
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def require_root() -> None:
    if os.geteuid() != 0:
        raise NetworkError("network namespaces need root: run as root")


def range_in_use() -> str | None:
    """The interface that already has an address in NETWORK, if one does (not our bridge)."""
    for line in ip("-4", "-o", "addr", "show").stdout.splitlines():
        fields = line.split()
        in_range = len(fields) >= 4 and ipaddress.ip_interface(fields[3]).ip in NETWORK
        if in_range and fields[1] != BRIDGE:
            return fields[1]
    return None


def create_bridge() -> None:
    require_root()
    if (used := range_in_use()) is not None:
        raise NetworkError(f"{NETWORK} is already used by interface {used}")
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{NODE_IP}/{NETWORK.prefixlen}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


def delete_bridge() -> None:
    ip("link", "del", BRIDGE, check=False)


def host_interface(address: str) -> str:
    """The host-side veth name of the namespace with ``address`` (at most 15 characters)."""
    return f"{PREFIX}{ipaddress.ip_address(address).packed[-1]}"


def _wire(target: str, address: str, hosts: dict[str, str] | None = None) -> None:
    """A veth pair: eth0 with ``address`` inside ``target`` (a namespace name), the other end
    on the bridge."""
    outside = host_interface(address)
    ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", target)
    ip("link", "set", outside, "master", BRIDGE, "up")
    ip("-n", target, "addr", "add", f"{address}/{NETWORK.prefixlen}", "dev", "eth0")
    ip("-n", target, "link", "set", "eth0", "up")
    ip("-n", target, "link", "set", "lo", "up")
    if hosts:
        # `ip netns exec` mounts /etc/netns/NAME/hosts over /etc/hosts: the cluster DNS names a
        # component resolves (Knative's activator dials the autoscaler by its service name).
        directory = _ETC_NETNS / target
        directory.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", *(f"{ip_} {name}" for name, ip_ in hosts.items())]
        (directory / "hosts").write_text("\n".join(lines) + "\n")


def create(name: str, address: str, hosts: dict[str, str] | None = None) -> None:
    """A new namespace ``name`` with ``address`` on the bridge."""
    ip("netns", "add", name)
    try:
        _wire(name, address, hosts)
    except NetworkError:
        delete(name)
        raise


def adopt(name: str, pid: int, address: str) -> None:
    """Name the namespace of process ``pid`` (a pod's pause container) and wire it."""
    ip("netns", "attach", name, str(pid))
    try:
        _wire(name, address)
    except NetworkError:
        delete(name)
        raise


def delete(name: str) -> None:
    """Remove namespace ``name``; its veth pair goes with it once no process holds it."""
    ip("netns", "del", name, check=False)
    shutil.rmtree(_ETC_NETNS / name, ignore_errors=True)


def owned() -> list[str]:
    """The namespaces the harness made (by their prefix)."""
    names = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]
    return [name for name in names if name.startswith(PREFIX)]


def exec_prefix(name: str) -> list[str]:
    """The command prefix that runs a program inside namespace ``name``."""
    return ["ip", "netns", "exec", name]
