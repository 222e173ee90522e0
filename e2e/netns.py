"""The node's network: a bridge on a documentation range, and the Services' range beside it.

A cluster gives every pod its own network namespace and address on the node's bridge, whose
address is the node's: the CNI bridge plugin does it for the pods (node.py); CoreDNS and the
trace store, which run as processes, get a namespace of their own the same way here (`create`). The
namespaces get no default route: from them only the bridge's range is reachable, and the
Services'.

The cluster's addresses are TEST-NET-2 (198.51.100.0/24), a documentation range that nothing on
these machines uses: its lower half is the bridge (the node, the components, the pods), its
upper half the Services' cluster IPs. The other documentation ranges are taken here: eth0 is on
TEST-NET-1, and the machine's way out (its proxy for the package registries) resolves into
TEST-NET-3. Before anything can send to a cluster IP, the host gets a blackhole route for the
upper half, after checking that nothing on the host is talking to it: a packet to a cluster IP
that kube-proxy's rules do not rewrite is dropped here and never leaves the machine. Each
namespace routes that half via the node, as a CNI bridge plugin's route would, and resolves
names with the cluster's DNS (resolv.conf as the kubelet writes it with --cluster-dns).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLUSTER_RANGE = ipaddress.ip_network("198.51.100.0/24")  # TEST-NET-2: all of the cluster's
NETWORK = ipaddress.ip_network("198.51.100.0/25")  # the bridge: node, components, pods
NODE_IP = str(NETWORK[1])  # the host's end of the bridge: the node's address
BRIDGE = "mfsa0"
PREFIX = "mfsa-"  # every namespace and host-side interface the harness makes
POD_ADDRESSES = range(32, 127)  # hosts .32 to .126 are the pods' (the CNI plugin's IPAM range)
SERVICE_NETWORK = ipaddress.ip_network("198.51.100.128/25")  # the Services' cluster IPs
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
    """The interface that already has an address in the cluster's range, if one does (not
    our bridge)."""
    for line in ip("-4", "-o", "addr", "show").stdout.splitlines():
        fields = line.split()
        in_range = len(fields) >= 4 and ipaddress.ip_interface(fields[3]).ip in CLUSTER_RANGE
        if in_range and fields[1] != BRIDGE:
            return fields[1]
    return None


def create_bridge() -> None:
    require_root()
    if (used := range_in_use()) is not None:
        raise NetworkError(f"{CLUSTER_RANGE} is already used by interface {used}")
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{NODE_IP}/{NETWORK.prefixlen}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


def _remove(stays: Callable[[], bool], *args: str) -> None:
    """`ip ARGS`, which removes something: NetworkError if that failed and it STAYS (not if
    it was gone already)."""
    result = ip(*args, check=False)
    if result.returncode != 0 and stays():
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def delete_bridge() -> None:
    _remove(lambda: ip("link", "show", BRIDGE, check=False).returncode == 0, "link", "del", BRIDGE)


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


def create(name: str, address: str) -> None:
    """A new namespace ``name`` with ``address`` on the bridge."""
    ip("netns", "add", name)
    try:
        _wire(name, address)
    except NetworkError:
        with contextlib.suppress(NetworkError):  # the first error is the one to tell
            delete(name)
        raise


def delete(name: str) -> None:
    """Remove namespace ``name``; its veth pair goes with it once no process holds it."""
    _remove(lambda: name in namespaces(), "netns", "del", name)
    shutil.rmtree(_ETC_NETNS / name, ignore_errors=True)


def namespaces() -> list[str]:
    """The machine's named network namespaces."""
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def owned() -> list[str]:
    """The namespaces the harness made (by their prefix)."""
    return [name for name in namespaces() if name.startswith(PREFIX)]


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


@dataclass(frozen=True)
class Route:
    """One of the host's IPv4 routes: its type as `ip route` names it (unicast, local,
    broadcast, blackhole, unreachable, prohibit, throw, multicast, ...) and its destination
    (None: the default route)."""

    type: str
    network: ipaddress.IPv4Network | None
    table: str = "main"

    def __str__(self) -> str:
        return f"{self.type} {self.network or 'default'} table {self.table}"


def parse_routes(output: str) -> list[Route]:
    """The routes in `ip -json -4 route show`'s OUTPUT (which names a type only if it is not
    unicast, and a table only if it is not main)."""

    def parsed(entry: dict[str, Any]) -> Route:
        to = entry["dst"].strip()
        network = None if to == "default" else ipaddress.IPv4Network(to, strict=False)
        return Route(entry.get("type", "unicast"), network, str(entry.get("table", "main")))

    try:
        return [parsed(entry) for entry in json.loads(output)]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise NetworkError(f"ip route: unreadable output ({error}): {output[:200]}") from None


def routes() -> list[Route]:
    """The host's IPv4 routes, in every table."""
    return parse_routes(ip("-json", "-4", "route", "show", "table", "all").stdout)


def blackhole_services() -> bool:
    """The blackhole route for the Services' range, before anything can send to it. Refused
    if a route of any other type covers part of the range already (even one that drops or
    rejects: `down` would remove it), or if the host talks to an address in it (a network this
    machine uses, however it is routed). False if the host had the route already (it stays
    when the cluster goes)."""
    require_root()
    had = False
    for route in routes():
        if route.network is None or not route.network.overlaps(SERVICE_NETWORK):
            continue
        if route.type != "blackhole":
            raise NetworkError(f"{SERVICE_NETWORK} is already routed: {route}")
        had = had or route.network == SERVICE_NETWORK
    if used := sorted(a for a in addresses_in_use() if a in SERVICE_NETWORK):
        raise NetworkError(f"{SERVICE_NETWORK} is in use by this machine: {used[0]}")
    ip("route", "replace", "blackhole", str(SERVICE_NETWORK))
    return not had


def addresses_in_use() -> set[ipaddress.IPv4Address]:
    """Addresses this machine talks to or is told to use: its sockets' peers, its
    nameservers and the addresses in /etc/hosts."""
    found: set[ipaddress.IPv4Address] = set()
    for table in ("/proc/net/tcp", "/proc/net/udp"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                peer = line.split()[2].split(":")[0]  # little-endian hex
                found.add(ipaddress.IPv4Address(bytes.fromhex(peer)[::-1]))
    for path, column in (("/etc/resolv.conf", 1), ("/etc/hosts", 0)):
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) > column and (path == "/etc/hosts" or words[0] == "nameserver"):
                    with contextlib.suppress(ValueError):
                        address = ipaddress.ip_address(words[column])
                        if isinstance(address, ipaddress.IPv4Address):
                            found.add(address)
    return found


def remove_blackhole(network: str) -> None:
    def stays() -> bool:
        wanted = ipaddress.IPv4Network(network)
        return any(r.type == "blackhole" and r.network == wanted and r.table == "main"
                   for r in routes())  # fmt: skip

    _remove(stays, "route", "del", "blackhole", network)


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
    """Write back what the host had (BEFORE, from set_sysctls): every one, then NetworkError
    naming those that could not be."""
    failed = []
    for key, value in before.items():
        try:
            (_SYSCTL / key).write_text(value)
        except OSError as error:
            failed.append(f"/proc/sys/{key} = {value}: {error.strerror or error}")
    if failed:
        raise NetworkError("; ".join(failed))
