"""The local cluster's network as generated: the ranges, each pod's DNS and routes, CoreDNS's
Corefile, kube-proxy's configuration and the trace store's Services (no cluster, no root)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from e2e import dns, netns, proxy, traces

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


def test_forwarding_needs_only_these_sysctls_and_they_are_restored() -> None:
    assert netns.SYSCTLS == {
        "net/ipv4/ip_forward": "1",
        "net/bridge/bridge-nf-call-iptables": "1",
    }


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


def test_the_trace_store_is_published_as_istios_tracing_addon() -> None:
    names = {s["metadata"]["name"]: [p["port"] for p in s["spec"]["ports"]]
             for s in traces.SERVICES}  # fmt: skip
    assert names == {"zipkin": [9411], "jaeger-collector": [4317, 4318], "tracing": [16686]}
    assert all(s["metadata"]["namespace"] == "istio-system" for s in traces.SERVICES)
    config = traces.configuration("198.51.100.7")
    assert config["receivers"]["zipkin"] == {"endpoint": "198.51.100.7:9411"}
    assert config["extensions"]["jaeger_query"]["http"] == {"endpoint": "198.51.100.7:16686"}
    assert config["service"]["pipelines"]["traces"]["receivers"] == ["otlp", "zipkin"]
