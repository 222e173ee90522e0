"""Cluster DNS: CoreDNS with its kubernetes plugin, published as kube-system/kube-dns.

As kubeadm installs it: a ``coredns`` service account with the ``system:coredns`` role, the
kubernetes plugin answering for ``cluster.local`` (Services, their endpoints, pods) and reverse
zones, and the ``kube-dns`` Service at a fixed cluster IP, which every pod's resolv.conf names.
CoreDNS runs in a network namespace of its own, as its pod would. It forwards nothing: no name
outside the cluster resolves (the cluster has no way out anyway).
"""

from __future__ import annotations

from typing import Any

from e2e import netns, tools
from e2e.context import STATE, Context, get_ok, service_account, token_kubeconfig

NAMESPACE = "kube-system"
ADDRESS = str(netns.NETWORK[6])
READY_PORT = 8181


def corefile(kubeconfig: str, address: str) -> str:
    """kubeadm's Corefile, with the API server reached through KUBECONFIG and no upstream."""
    return f"""\
.:53 {{
    errors
    health {address}:8080
    ready {address}:{READY_PORT}
    kubernetes {netns.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus {address}:9153
    cache 30
    loop
    loadbalance
}}
"""


RBAC: list[dict[str, Any]] = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "system:coredns"},
     "rules": [
         {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
          "verbs": ["list", "watch"]},
         {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
          "verbs": ["list", "watch"]},
     ]},
    *service_account("coredns", NAMESPACE, "system:coredns", binding="system:coredns"),
]  # fmt: skip


def kube_dns_service() -> dict[str, Any]:
    """kube-system/kube-dns at the cluster IP every pod's resolv.conf names."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": NAMESPACE,
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        "spec": {
            "clusterIP": netns.DNS_IP,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    }  # fmt: skip


def start(ctx: Context) -> None:
    ctx.kubectl_apply(RBAC)
    kubeconfig = token_kubeconfig(ctx, "coredns", NAMESPACE)
    config = STATE / "Corefile"
    config.write_text(corefile(str(kubeconfig), ADDRESS))
    namespace = f"{netns.PREFIX}coredns"
    netns.create(namespace, ADDRESS)
    ctx.start(
        "coredns",
        [str(tools.path("coredns")), "-conf", str(config)],
        lambda: get_ok(f"http://{ADDRESS}:{READY_PORT}/ready"),
        namespace=namespace,
    )
    ctx.publish(kube_dns_service(), ADDRESS)
