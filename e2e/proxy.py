"""Service routing: kube-proxy in iptables mode, in the host's network namespace.

It turns every Service's cluster IP and port into DNAT rules to the Service's endpoints on the
bridge, as on a node. A pod's packet to a cluster IP follows its route to the node, is rewritten
in PREROUTING and routed back to the bridge; without a rule, the blackhole route drops it here
(see netns.py). Host processes do not reach cluster IPs (the blackhole route is looked up before
any rule): components on the host use endpoints, as the API server's aggregator routing does.

kube-proxy runs with the credentials kubeadm gives it (the kube-proxy service account, bound to
system:node-proxier), leaves conntrack's sysctls alone, and `down` removes its rules with
`kube-proxy --cleanup`, and the chains that leaves for a kubelet (KUBE-FIREWALL) unless the host
had them before.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import yaml

from e2e import netns, tools
from e2e.context import (
    NODE_NAME,
    STATE,
    Context,
    free_port,
    get_ok,
    service_account,
    token_kubeconfig,
)

NAMESPACE = "kube-system"
CONFIG = STATE / "kube-proxy.yaml"

RBAC = service_account(
    "kube-proxy", NAMESPACE, "system:node-proxier", binding="kubeadm:node-proxier"
)


def configuration(kubeconfig: str, healthz: int, metrics: int) -> dict[str, Any]:
    """kube-proxy's KubeProxyConfiguration for this node."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": str(netns.NETWORK),
        "detectLocalMode": "ClusterCIDR",
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        # NodePorts only on the node's bridge address, never on 127.0.0.1 (that needs
        # route_localnet) or on eth0.
        "nodePortAddresses": [f"{netns.NODE_IP}/32"],
        "iptables": {"localhostNodePorts": False, "minSyncPeriod": "0s", "syncPeriod": "30s"},
        # 0: leave the host's conntrack sysctls as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }  # fmt: skip


def start(ctx: Context) -> None:
    ctx.kubectl_apply(RBAC)
    kubeconfig = token_kubeconfig(ctx, "kube-proxy", NAMESPACE)
    healthz, metrics = free_port(), free_port()
    ctx.state.ports.update({"kube-proxy": healthz})
    CONFIG.write_text(yaml.safe_dump(configuration(str(kubeconfig), healthz, metrics)))
    run(ctx)


def run(ctx: Context) -> None:
    """kube-proxy with the configuration `start` wrote; again after a fault stopped it."""
    healthz = ctx.state.ports["kube-proxy"]
    ctx.start(
        "kube-proxy",
        [str(tools.path("kube-proxy")), f"--config={CONFIG}"],
        lambda: get_ok(f"http://127.0.0.1:{healthz}/healthz"),
    )


def cleanup(keep: list[list[str]]) -> None:
    """Remove every rule kube-proxy made (its own --cleanup), whether or not it runs, then the
    chains it makes for the kubelet and leaves on purpose (KUBE-FIREWALL): every KUBE- chain
    but those in KEEP, which the host had before `up` (see chains())."""
    try:
        binary = tools.path("kube-proxy")
    except tools.ToolError:
        pass
    else:
        subprocess.run([str(binary), "--cleanup"], capture_output=True, check=False, timeout=60)
    kept = {tuple(chain) for chain in keep}
    for command, table, chain in chains():
        if (command, table, chain) in kept:
            continue
        listed = _iptables(command, "-t", table, "-S")
        for rule in listed.splitlines():
            words = rule.split()
            if words[:1] == ["-A"] and words[1] != chain and f"-j {chain}" in rule:
                _iptables(command, "-t", table, "-D", *words[1:])
        _iptables(command, "-t", table, "-F", chain)
        _iptables(command, "-t", table, "-X", chain)


def chains() -> list[list[str]]:
    """Every KUBE- chain on the host: [command, table, chain] (iptables and ip6tables)."""
    found = []
    for command in ("iptables", "ip6tables"):
        table = ""
        for line in _iptables(f"{command}-save").splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":KUBE-"):
                found.append([command, table, line[1:].split()[0]])
    return found


def _iptables(command: str, *args: str) -> str:
    if shutil.which(command) is None:
        return ""
    result = subprocess.run([command, *args], capture_output=True, text=True, check=False)
    return result.stdout
