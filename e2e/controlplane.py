"""The Kubernetes control plane: its certificates, etcd, kube-apiserver, kube-controller-manager
and kube-scheduler, as envtest runs them: plain processes, each ready when its health answers."""

from __future__ import annotations

from e2e import netns, pki, tools
from e2e.context import (
    KUBECONFIG,
    NODE_NAME,
    PKI,
    STATE,
    Context,
    free_port,
    get_ok,
    kubeconfig_text,
)


def certificates(ctx: Context) -> None:
    """The CA, the API server's serving certificate, the admin's client certificate and the
    service-account signing key, in build/cluster/pki."""
    ca = pki.Authority(PKI)
    hosts = (
        netns.NODE_IP,
        "127.0.0.1",
        netns.KUBERNETES_SERVICE_IP,
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )
    ca.issue("apiserver", common_name="kube-apiserver", hosts=hosts)
    ca.issue("admin", common_name="admin", organization="system:masters")
    pki.signing_key(PKI)
    # The node's: the kubelet's serving certificate for its address, and its client
    # certificate as the Node authorizer knows nodes.
    ca.issue("kubelet", common_name=f"system:node:{NODE_NAME}", hosts=(netns.NODE_IP,))
    ca.issue("kubelet-client", common_name=f"system:node:{NODE_NAME}",
             organization="system:nodes")  # fmt: skip


def etcd(ctx: Context) -> None:
    client, peer = free_port(), free_port()
    ctx.state.ports.update(etcd=client)
    ctx.start(
        "etcd",
        [
            str(tools.path("etcd")),
            "--name=local",
            f"--data-dir={STATE / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=local=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync",  # a throw-away test cluster: durability buys nothing
            "--log-level=warn",
        ],
        lambda: get_ok(f"http://127.0.0.1:{client}/health"),
    )


def apiserver(ctx: Context) -> None:
    port = free_port(netns.NODE_IP)
    ctx.state.ports.update(apiserver=port)
    KUBECONFIG.write_text(
        kubeconfig_text(
            ctx.server,
            ctx.ca,
            {"client-certificate": str(ctx.admin.cert), "client-key": str(ctx.admin.key)},
        )
    )
    ctx.start(
        "kube-apiserver",
        [
            str(tools.path("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{ctx.state.ports['etcd']}",
            # The node's address: the one both the host and the namespaces reach.
            f"--bind-address={netns.NODE_IP}",
            f"--advertise-address={netns.NODE_IP}",
            f"--secure-port={port}",
            f"--tls-cert-file={PKI / 'apiserver.crt'}",
            f"--tls-private-key-file={PKI / 'apiserver.key'}",
            f"--client-ca-file={ctx.ca}",
            f"--service-account-key-file={PKI / 'service-account.pub'}",
            f"--service-account-signing-key-file={PKI / 'service-account.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={netns.SERVICE_NETWORK}",
            "--authorization-mode=Node,RBAC",
            # Webhooks are called at their Service's endpoints: no cluster IP is needed.
            "--enable-aggregator-routing=true",
            # The kubelet's API (logs, exec), at the node's address, with the admin's certificate.
            f"--kubelet-client-certificate={ctx.admin.cert}",
            f"--kubelet-client-key={ctx.admin.key}",
            f"--kubelet-certificate-authority={ctx.ca}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
            "--v=0",
        ],
        lambda: get_ok(f"{ctx.server}/readyz", ctx.tls()),
    )


def controller_manager(ctx: Context) -> None:
    controllers = (
        "serviceaccount-controller", "deployment-controller", "replicaset-controller",
        "endpoints-controller", "endpointslice-controller",
        "endpointslice-mirroring-controller", "garbage-collector-controller",
        "namespace-controller", "clusterrole-aggregation-controller",
        "node-lifecycle-controller", "root-ca-certificate-publisher-controller",
    )  # fmt: skip
    _kube_component(
        ctx,
        "kube-controller-manager",
        f"--controllers={','.join(controllers)}",
        f"--root-ca-file={ctx.ca}",
        f"--service-account-private-key-file={PKI / 'service-account.key'}",
        "--use-service-account-credentials=false",
    )


def scheduler(ctx: Context) -> None:
    _kube_component(ctx, "kube-scheduler")


def _kube_component(ctx: Context, name: str, *flags: str) -> None:
    """kube-controller-manager or kube-scheduler: one instance (no leader election), its
    secure port on 127.0.0.1, ready when its /healthz answers."""
    port = free_port()
    health = f"https://127.0.0.1:{port}/healthz"
    ctx.start(
        name,
        [
            str(tools.path(name)),
            f"--kubeconfig={KUBECONFIG}",
            f"--authentication-kubeconfig={KUBECONFIG}",
            f"--authorization-kubeconfig={KUBECONFIG}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--profiling=false",
            *flags,
        ],
        lambda: get_ok(health, ctx.tls(client_cert=False)),
    )
