"""The node: the real kubelet, with Debian's containerd (its CRI plugin) and CNI plugins.

As kubeadm sets up a worker: containerd with a configuration of its own (root under the run
directory, its socket under /run/mfsa, images pulled from the cluster's registry over plain
HTTP through its registry hosts configuration), the CNI bridge plugin on the node's bridge
(host-local addresses from the pods' range, routes for that range and the Services' only, no
masquerade), and the kubelet registered as the cluster's Node with a client certificate from
the cluster's CA, its serving certificate for the node's address, the cluster's DNS for pods.
Probes, restarts, limits, hooks, volumes, pod status, `kubectl logs` and `kubectl exec` are
then the kubelet's own.

What this machine needs, each found by a failure (see local-cluster-facts): cgroups v1 are
accepted only with `failCgroupV1: false`; lowering oom_score_adj is not permitted, so
containerd's CRI plugin restricts it; the kubelet's cgroups live under /mfsa, which `down`
removes with everything else the node made: pods, mounts, network namespaces, cgroups.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

import psutil
import yaml
from lightkube.resources.core_v1 import Node

from e2e import netns, process, tools
from e2e.context import (
    NODE_NAME,
    PKI,
    RUN,
    STATE,
    ClusterError,
    Context,
    free_port,
    get_ok,
    kubeconfig_text,
    require,
)
from e2e.images import registry_address
from e2e.poll import until

CONTAINERD = STATE / "containerd"  # its root: images and snapshots, gone with the cluster
CONTAINERD_STATE = RUN / "containerd"
CONTAINERD_SOCKET = CONTAINERD_STATE / "containerd.sock"
CNI_CONF = STATE / "cni" / "net.d"
CNI_BIN = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
KUBELET_ROOT = RUN / "kubelet"
CGROUP_ROOT = "/mfsa"
CGROUPS = Path("/sys/fs/cgroup")
K8S_NAMESPACE = "k8s.io"  # containerd's namespace for the CRI's containers and images
CTR_TIMEOUT = 60.0
DRAIN_TIMEOUT = 60.0  # for the kubelet to stop every pod's containers (their tasks)


def containerd_config(registry: str, pause_image: str) -> str:
    """containerd's configuration (version 2, as containerd 1.6 reads it)."""
    return f"""\
version = 2
root = "{CONTAINERD}"
state = "{CONTAINERD_STATE}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # This machine does not permit lowering oom_score_adj (runc fails to start sandboxes).
  restrict_oom_score_adj = true
  enable_unprivileged_ports = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{CNI_CONF}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{CONTAINERD / "certs.d"}"
"""


def registry_hosts(registry: str) -> str:
    """containerd's hosts.toml for the cluster's registry: plain HTTP, as kind's local one."""
    return (
        f'server = "http://{registry}"\n\n'
        f'[host."http://{registry}"]\n  capabilities = ["pull", "resolve"]\n'
    )


def cni_config() -> dict[str, Any]:
    """The bridge plugin on the node's bridge: an address from the pods' range (host-local),
    routes for that range (the interface's) and the Services' (via the node), no masquerade,
    hairpin on (a pod reaches itself through its Service)."""
    first, last = (
        netns.NETWORK[netns.POD_ADDRESSES.start],
        netns.NETWORK[netns.POD_ADDRESSES.stop - 1],
    )
    return {
        "cniVersion": "0.4.0",
        "name": "mfsa",
        "plugins": [
            {
                "type": "bridge",
                "bridge": netns.BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(netns.NETWORK), "rangeStart": str(first),
                                 "rangeEnd": str(last), "gateway": netns.NODE_IP}]],
                    "routes": [{"dst": str(netns.SERVICE_NETWORK), "gw": netns.NODE_IP}],
                    "dataDir": str(STATE / "cni" / "ipam"),
                },
            }
        ],
    }  # fmt: skip


def kubelet_config(*, port: int, healthz: int, resolv_conf: Path) -> dict[str, Any]:
    """The kubelet's KubeletConfiguration for this node."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": netns.NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "tlsCertFile": str(PKI / "kubelet.crt"),
        "tlsPrivateKeyFile": str(PKI / "kubelet.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(PKI / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": CGROUP_ROOT,
        "failCgroupV1": False,  # this machine's cgroups are v1
        "failSwapOn": False,
        "clusterDNS": [netns.DNS_IP],
        "clusterDomain": netns.CLUSTER_DOMAIN,
        # Pods with dnsPolicy Default get this, not the host's: nothing of the host's DNS.
        "resolvConf": str(resolv_conf),
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi"},
        "localStorageCapacityIsolation": False,
        "enableServer": True,
        "staticPodPath": "",
    }


def ctr(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """containerd's own client, in the CRI's namespace; ClusterError if it does not answer."""
    try:
        return subprocess.run(
            ["ctr", f"--address={CONTAINERD_SOCKET}", f"--namespace={K8S_NAMESPACE}", *args],
            capture_output=True, text=True, check=check, timeout=CTR_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ClusterError(f"ctr {' '.join(args)}: no answer within {CTR_TIMEOUT:g} s") from None


def containerd(ctx: Context) -> None:
    """containerd with the CRI plugin, its CNI configuration, the registry as plain HTTP."""
    registry = registry_address(ctx.state)
    CONTAINERD.mkdir(parents=True, exist_ok=True)
    hosts = CONTAINERD / "certs.d" / registry
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(registry_hosts(registry))
    CNI_CONF.mkdir(parents=True, exist_ok=True)
    (CNI_CONF / "10-mfsa.conflist").write_text(json.dumps(cni_config(), indent=2))
    config = STATE / "containerd.toml"
    config.write_text(containerd_config(registry, ctx.state.images["pause"]))
    ctx.state.netns_before = sorted(netns.namespaces())
    ctx.start(
        "containerd",
        [require("containerd", "containerd"), f"--config={config}"],
        lambda: ctr("version").returncode == 0,
    )


def kubelet(ctx: Context) -> None:
    """The kubelet, registered as NODE_NAME, ready when its Node is Ready and untainted."""
    kubeconfig = STATE / "kubeconfig-kubelet"
    kubeconfig.write_text(kubeconfig_text(ctx.server, ctx.ca, {
        "client-certificate": str(PKI / "kubelet-client.crt"),
        "client-key": str(PKI / "kubelet-client.key")}))  # fmt: skip
    resolv_conf = STATE / "kubelet-resolv.conf"
    resolv_conf.write_text("")
    port, healthz = free_port(netns.NODE_IP), free_port()
    ctx.state.ports.update(kubelet=port)
    config = STATE / "kubelet.yaml"
    config.write_text(yaml.safe_dump(kubelet_config(port=port, healthz=healthz,
                                                    resolv_conf=resolv_conf)))  # fmt: skip
    _cgroup_root()

    def node_ready() -> bool:
        node = ctx.client.get(Node, NODE_NAME).to_dict()
        taints = node.get("spec", {}).get("taints") or []
        conditions = node.get("status", {}).get("conditions") or []
        untainted = all(t["key"] != "node.kubernetes.io/not-ready" for t in taints)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return untainted and ready and get_ok(f"http://127.0.0.1:{healthz}/healthz")

    ctx.start(
        "kubelet",
        [
            str(tools.path("kubelet")),
            f"--config={config}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={KUBELET_ROOT}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={netns.NODE_IP}",
            "--v=0",
        ],
        node_ready,
        timeout=120,
    )


def _cgroups() -> list[Path]:
    """The kubelet's cgroup root in each v1 hierarchy (and the unified one, if mounted)."""
    found = []
    for hierarchy in sorted(CGROUPS.iterdir()) if CGROUPS.is_dir() else []:
        if (
            hierarchy.is_dir() and not hierarchy.is_symlink() and (hierarchy / "tasks").exists()
        ) or (hierarchy.name == "unified" and (hierarchy / "cgroup.procs").exists()):
            found.append(hierarchy / CGROUP_ROOT.strip("/"))
    return found


def _cgroup_root() -> None:
    for path in _cgroups():
        path.mkdir(exist_ok=True)


def drain(ctx: Context) -> None:
    """Every pod off the node while the kubelet still runs, as `kubectl drain` would, but
    forcing: it stops their containers and tears their networks down (CNI DEL). An API server
    that does not answer is no error (`clean` kills what is left); ToolError without kubectl,
    ClusterError if ctr does not answer, TimeoutError if containers stay."""
    try:
        ctx.kubectl("cordon", NODE_NAME)
        ctx.kubectl("delete", "pods", "--all", "--all-namespaces", "--force",
                    "--grace-period=0", "--wait=false")  # fmt: skip
    except ClusterError:
        return  # no pod was deleted: nothing to wait for
    # Running tasks, not containers: a stopped container (a sandbox, once its network is torn
    # down) is listed until the kubelet's garbage collection removes it, once a minute.
    until(lambda: not ctr("tasks", "list", "--quiet").stdout.split(),
          timeout=DRAIN_TIMEOUT, what="the kubelet stops every pod's containers")  # fmt: skip


def clean(ctx: Context) -> list[str]:
    """What the node leaves once its processes are stopped: containers still running under
    containerd's shims (killed, and waited for), mounts, the kubelet's cgroups, the CRI's
    network namespaces. Returns what stays, one line each."""
    problems = _kill(pods())
    for root in (KUBELET_ROOT, CONTAINERD_STATE, CONTAINERD):
        problems += process.unmount_below(root)
    problems += [stays for path in _cgroups() if (stays := _remove_cgroup(path))]
    before = set(ctx.state.netns_before)
    for name in netns.namespaces():
        if name.startswith("cni-") and name not in before:
            netns.delete(name)
    return problems


def _kill(pids: list[int]) -> list[str]:
    """SIGKILL each of PIDS and wait until they are gone: those that stay, one line each."""
    killed = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            found = psutil.Process(pid)
            found.kill()
            killed.append(found)
    _, staying = psutil.wait_procs(killed, timeout=process.KILL_TIMEOUT)
    return [f"pod process {p.pid} still runs {process.KILL_TIMEOUT:g} s after SIGKILL"
            for p in sorted(staying, key=lambda p: p.pid)]  # fmt: skip


def pods() -> list[int]:
    """containerd's shims and what runs under them: the pods' processes (a shim is started
    apart from containerd, and outlives it)."""
    pids = []
    for shim in psutil.process_iter(["cmdline"]):
        argv: list[str] = shim.info["cmdline"] or [""]
        if "containerd-shim-runc-v2" in argv[0] and str(CONTAINERD_STATE) in " ".join(argv):
            pids += process.descendants(shim.pid)
    return pids


def _remove_cgroup(path: Path) -> str | None:
    """A cgroup and every cgroup below it, innermost first (their processes are gone): the
    first that stays, if one does."""
    if not path.is_dir():
        return None
    inner = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    stays = None
    for each in [*inner, path]:
        try:
            each.rmdir()
        except FileNotFoundError:
            pass
        except OSError as error:
            stays = stays or f"cgroup {each} stays: {error.strerror or error}"
    return stays
