"""The node's network: a bridge on a private range, and a network namespace per pod or component.

A cluster gives every pod its own network namespace and address (the CNI plugin's job). Knative's
components need the same here: the controller's probe server and the autoscaler's stats server
both bind :8080, queue-proxy binds :8012, :8022 and :9090, none of them configurable, and
Endpoints refuse loopback addresses. So every pod and every Knative component gets a namespace
with one end of a veth pair; the other end joins a bridge in the host's namespace, whose address
is the node's. The range is TEST-NET-2 (198.51.100.0/24), which no interface here uses. The
namespaces get no default route: from them only this range is reachable, and the Services'.

Service cluster IPs come from TEST-NET-3 (203.0.113.0/24), another documentation range. Before
anything can send to it, the host gets a blackhole route for it: a packet to a cluster IP that
kube-proxy's rules do not rewrite is dropped here and never leaves the machine. Each namespace
routes the range via the node, as a CNI bridge plugin's route would, and resolves names with the
cluster's DNS (resolv.conf as the kubelet writes it with --cluster-dns).
"""

from __future__ import annotations

import contextlib
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
SERVICE_NETWORK = ipaddress.ip_network("203.0.113.0/24")  # TEST-NET-3: Service cluster IPs
KUBERNETES_SERVICE_IP = str(SERVICE_NETWORK[1])  # the API server's Service, default/kubernetes
DNS_IP = str(SERVICE_NETWORK[10])  # kube-system/kube-dns, as kubeadm places it
CLUSTER_DOMAIN = "cluster.local"
# What forwarding a pod's packet to a cluster IP needs, and what the host had before.
SYSCTLS = {
    "net/ipv4/ip_forward": "1",  # routed from the bridge back to the bridge, after DNAT
    "net/bridge/bridge-nf-call-iptables": "1",  # replies between pods pass conntrack's un-DNAT
}
_SYSCTL = Path("/proc/sys")
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


def resolv_conf(namespace: str) -> str:
    """A pod's /etc/resolv.conf in Kubernetes namespace NAMESPACE (the kubelet's ClusterFirst)."""
    search = f"{namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}"
    return f"search {search}\nnameserver {DNS_IP}\noptions ndots:5\n"


def _wire(target: str, address: str) -> None:
    """A veth pair: eth0 with ``address`` inside ``target`` (a namespace name), the other end
    on the bridge (hairpin on, so a pod reaches itself through its Service); the Services'
    range routed via the node."""
    outside = host_interface(address)
    ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", target)
    ip("link", "set", outside, "master", BRIDGE, "up")
    ip("link", "set", outside, "type", "bridge_slave", "hairpin", "on")
    ip("-n", target, "addr", "add", f"{address}/{NETWORK.prefixlen}", "dev", "eth0")
    ip("-n", target, "link", "set", "eth0", "up")
    ip("-n", target, "link", "set", "lo", "up")
    ip("-n", target, "route", "add", str(SERVICE_NETWORK), "via", NODE_IP, "dev", "eth0")


def create(name: str, address: str, *, dns_namespace: str | None = None) -> None:
    """A new namespace ``name`` with ``address`` on the bridge; with ``dns_namespace``, the
    cluster's DNS as a pod in that Kubernetes namespace sees it (`ip netns exec` mounts
    /etc/netns/NAME/resolv.conf over /etc/resolv.conf for the programs it runs)."""
    ip("netns", "add", name)
    try:
        _wire(name, address)
    except NetworkError:
        delete(name)
        raise
    if dns_namespace is not None:
        directory = _ETC_NETNS / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "resolv.conf").write_text(resolv_conf(dns_namespace))


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


def route(address: str) -> str:
    """What the host's routing table does with ADDRESS: `ip route get`'s answer, or its error
    (a blackhole route answers with an error: the packet would be dropped)."""
    result = ip("route", "get", address, check=False)
    return (result.stdout if result.returncode == 0 else result.stderr).strip()


def leaves_the_machine(address: str) -> bool:
    """True if a packet to ADDRESS would go out through eth0 (the machine's one way out)."""
    return " dev eth0" in f" {route(address)} "


def blackhole_services() -> None:
    """The blackhole route for the Services' range, before anything can send to it. Refused
    if the range is routed anywhere already (a network this machine uses)."""
    require_root()
    for line in ip("-4", "route", "show", "table", "all").stdout.splitlines():
        fields = line.split()
        if not fields or fields[0] in ("local", "broadcast"):
            continue
        destination = fields[1] if fields[0] in ("blackhole", "unreachable") else fields[0]
        if destination == "default":
            continue
        network = ipaddress.ip_network(destination, strict=False)
        if network.overlaps(SERVICE_NETWORK) and fields[0] != "blackhole":
            raise NetworkError(f"{SERVICE_NETWORK} is already routed: {line}")
    ip("route", "replace", "blackhole", str(SERVICE_NETWORK))


def remove_blackhole() -> None:
    ip("route", "del", "blackhole", str(SERVICE_NETWORK), check=False)


def sysctl(key: str) -> str | None:
    try:
        return (_SYSCTL / key).read_text().strip()
    except OSError:
        return None


def set_sysctls(wanted: dict[str, str]) -> dict[str, str]:
    """Set each of WANTED; returns what each was before (to restore)."""
    before = {}
    for key, value in wanted.items():
        old = sysctl(key)
        if old is None:
            raise NetworkError(f"/proc/sys/{key}: not available on this kernel")
        before[key] = old
        (_SYSCTL / key).write_text(value)
    return before


def restore_sysctls(before: dict[str, str]) -> None:
    for key, value in before.items():
        with contextlib.suppress(OSError):
            (_SYSCTL / key).write_text(value)
