"""The local cluster's network as generated: the ranges, each pod's DNS and routes, CoreDNS's
Corefile, kube-proxy's configuration and the trace store's Services (no cluster, no root)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest

from e2e import dns, netns, proxy

DOCUMENTATION = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24",
                                                   "203.0.113.0/24")]  # fmt: skip


def test_cluster_ips_come_from_a_documentation_range_apart_from_the_pods() -> None:
    services = netns.SERVICE_NETWORK
    assert any(services.subnet_of(d) for d in DOCUMENTATION)  # type: ignore[arg-type]
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
        assert not services.overlaps(ipaddress.ip_network(private))
    assert not services.overlaps(netns.NETWORK)
    assert services.subnet_of(netns.CLUSTER_RANGE)  # type: ignore[arg-type]
    assert netns.NETWORK.subnet_of(netns.CLUSTER_RANGE)  # type: ignore[arg-type]
    # TEST-NET-1 is eth0's on these machines, TEST-NET-3 their way out: neither is the cluster's.
    for taken in ("192.0.2.0/24", "203.0.113.0/24"):
        assert not netns.CLUSTER_RANGE.overlaps(ipaddress.ip_network(taken))
    assert ipaddress.ip_address(netns.DNS_IP) in services
    assert ipaddress.ip_address(netns.KUBERNETES_SERVICE_IP) in services
    pods = [netns.NETWORK[i] for i in netns.POD_ADDRESSES]
    assert all(address in netns.NETWORK for address in pods)


def test_the_addresses_this_machine_uses_include_its_nameservers_and_peers() -> None:
    """What the blackhole route's check looks at: a range the host talks to is refused."""
    used = netns.addresses_in_use()
    nameservers = [line.split()[1] for line in Path("/etc/resolv.conf").read_text().splitlines()
                   if line.startswith("nameserver")]  # fmt: skip
    for nameserver in nameservers:
        address = ipaddress.ip_address(nameserver)
        if address.version == 4:
            assert address in used
    assert not any(address in netns.SERVICE_NETWORK for address in used)


def test_a_pods_resolv_conf_is_the_kubelets_cluster_first() -> None:
    assert netns.resolv_conf("hackathon-pi-knative").splitlines() == [
        "search hackathon-pi-knative.svc.cluster.local svc.cluster.local cluster.local",
        f"nameserver {netns.DNS_IP}",
        "options ndots:5",
    ]


def test_forwarding_needs_only_these_sysctls_and_they_are_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert netns.SYSCTLS == {
        "net/ipv4/ip_forward": "1",
        "net/bridge/bridge-nf-call-iptables": "1",
    }
    # /proc/sys as a host with forwarding off has it: set, then written back as it was.
    monkeypatch.setattr(netns, "_SYSCTL", tmp_path)
    host = {"net/ipv4/ip_forward": "0", "net/bridge/bridge-nf-call-iptables": "0"}
    for key, value in host.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_text(value)
    before = netns.set_sysctls(netns.SYSCTLS)
    assert before == host
    assert {key: netns.sysctl(key) for key in host} == netns.SYSCTLS
    netns.restore_sysctls(before)
    assert {key: netns.sysctl(key) for key in host} == host


def test_coredns_answers_for_the_cluster_domain_through_its_kubeconfig_and_forwards_nothing() -> (
    None
):
    corefile = dns.corefile("/run/kubeconfig-coredns", "198.51.100.6")
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in corefile
    assert "kubeconfig /run/kubeconfig-coredns" in corefile
    assert "ready 198.51.100.6:8181" in corefile
    assert "forward" not in corefile
    service = dns.kube_dns_service()
    assert service["metadata"] == {
        "name": "kube-dns", "namespace": "kube-system",
        "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
    }  # fmt: skip
    assert service["spec"]["clusterIP"] == netns.DNS_IP
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} == {
        (53, "UDP"), (53, "TCP"), (9153, "TCP"),
    }  # fmt: skip


def test_kube_proxy_routes_services_by_iptables_and_leaves_the_hosts_settings_alone() -> None:
    config = proxy.configuration("/run/kubeconfig-kube-proxy", 10256, 10249)
    assert config["mode"] == "iptables"
    assert config["clusterCIDR"] == str(netns.NETWORK)
    assert config["hostnameOverride"] == "node-1"
    assert config["healthzBindAddress"] == "127.0.0.1:10256"
    assert config["metricsBindAddress"] == "127.0.0.1:10249"
    # No NodePort on 127.0.0.1 (route_localnet) or on eth0; conntrack's sysctls untouched.
    assert config["iptables"]["localhostNodePorts"] is False
    assert config["nodePortAddresses"] == [f"{netns.NODE_IP}/32"]
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["conntrack"]["tcpEstablishedTimeout"] == "0s"


# `ip -json -4 route show table all` on a host with a route of each type (iproute2 names the
# type only if it is not unicast, the table only if it is not main).
ROUTES = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
    {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "prefsrc": "192.0.2.2"},
    {"type": "prohibit", "dst": "10.1.0.0/16"},
    {"type": "throw", "dst": "10.2.0.0/16", "table": "100"},
    {"type": "unreachable", "dst": "10.3.0.0/16"},
    {"type": "blackhole", "dst": "10.4.0.0/16"},
    {"type": "multicast", "dst": "239.1.0.0/16", "dev": "eth0", "table": "local"},
    {"type": "local", "dst": "127.0.0.1", "dev": "lo", "table": "local"},
    {"type": "broadcast", "dst": "192.0.2.255", "dev": "eth0", "table": "local"},
]


def test_routes_of_every_type_are_read_with_their_type_and_destination() -> None:
    routes = [str(route) for route in netns.parse_routes(json.dumps(ROUTES))]
    assert routes == [
        "unicast default table main",
        "unicast 192.0.2.0/24 table main",
        "prohibit 10.1.0.0/16 table main",
        "throw 10.2.0.0/16 table 100",
        "unreachable 10.3.0.0/16 table main",
        "blackhole 10.4.0.0/16 table main",
        "multicast 239.1.0.0/16 table local",
        "local 127.0.0.1/32 table local",
        "broadcast 192.0.2.255/32 table local",
    ]
    with pytest.raises(netns.NetworkError, match=r"^ip route: unreadable output"):
        netns.parse_routes('[{"type": "unicast", "dst": "not-a-network"}]')


@pytest.mark.parametrize(("had", "added"), [([], True), (["198.51.100.0/24"], True),
                                             ([str(netns.SERVICE_NETWORK)], False)])  # fmt: skip
def test_the_services_blackhole_is_added_unless_the_host_has_it(
    monkeypatch: pytest.MonkeyPatch, had: list[str], added: bool
) -> None:
    """Among routes of every type; a blackhole route the host had for the range stays (one
    for a wider range is no reason not to add it)."""
    table = [*ROUTES, *({"type": "blackhole", "dst": network} for network in had)]
    commands: list[tuple[str, ...]] = []

    def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        commands.append(args)
        return subprocess.CompletedProcess(["ip", *args], 0, json.dumps(table), "")

    monkeypatch.setattr(netns, "ip", ip)
    monkeypatch.setattr(netns, "require_root", lambda: None)
    monkeypatch.setattr(netns, "addresses_in_use", set)
    assert netns.blackhole_services() is added
    assert commands[-1] == ("route", "replace", "blackhole", str(netns.SERVICE_NETWORK))
