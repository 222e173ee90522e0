"""Stand-in for the Istio gateways' Envoy: `python -m e2e.gateway`.

Envoy cannot run here (no binary is built from Go modules), so this process does its part and
net-istio's, and only that. It reads every Knative Ingress (KIngress) of the Istio class, as
net-istio does to program Envoy, and serves its rules: the public (ExternalIP) ones as
istio-ingressgateway on 127.0.0.1, the cluster-local ones as knative-local-gateway on the node's
address, where pods reach it through its Service (`NAME.NAMESPACE.svc.cluster.local`, which
Knative makes an ExternalName of it):

- a request is routed by its Host header, then by path prefix and exact header matches;
- a split is chosen by its traffic percent, the split's and the path's appendHeaders are added
  (Knative-Serving-Revision and -Namespace among them: the activator needs them), and the host is
  rewritten where the rule says so;
- the request goes to an address of the split's Service, from the Endpoints Knative published
  (the activator's, or the revision's pods'), as Envoy's endpoint discovery does;
- no route: 404; no endpoint or no connection: 503, as Envoy answers.

Once a KIngress is loaded, it is probed as net-istio's prober does: for each rule's host, a
request to /healthz through the listener that serves it, with Knative's probe headers
(K-Network-Probe: probe, K-Network-Hash: override), which the route forwards with the
KIngress's hash; the backend (activator or queue-proxy) answers the probe with that hash. Only
then does it write the status net-istio writes: LoadBalancerReady, NetworkConfigured and Ready,
and the public and private load balancers. It also plays the load balancer in front of Envoy:
the istio-ingressgateway Service's status gets 127.0.0.1. `/healthz/ready` on a host that no
rule names answers 200 once the stand-in is serving.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import random
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from lightkube import ALL_NS, ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Endpoints, Service
from lightkube.types import OnErrorAction, OnErrorResult, PatchType

from e2e.context import KUBECONFIG, Context, free_port, get_ok
from e2e.kingress import EXTERNAL, LOCAL, Path, Split, choose, ingress_hash, ready, routes, select
from e2e.netns import NODE_IP

LOG = logging.getLogger("gateway-standin")
KIngress = create_namespaced_resource(
    "networking.internal.knative.dev", "v1alpha1", "Ingress", "ingresses"
)
ISTIO_CLASS = "istio.ingress.networking.knative.dev"
# Knative's network probe (knative.dev/networking pkg/http/header, pkg/status).
PROBE, HASH, OVERRIDE = "K-Network-Probe", "K-Network-Hash", "override"
PROBE_AGENT = "Knative-Ingress-Probe"
CLASS_ANNOTATION = "networking.knative.dev/ingress.class"
GATEWAY_NAMESPACE = "istio-system"
PUBLIC = f"istio-ingressgateway.{GATEWAY_NAMESPACE}.svc.cluster.local"
PRIVATE = f"knative-local-gateway.{GATEWAY_NAMESPACE}.svc.cluster.local"
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


@dataclass
class Gateway:
    client: AsyncClient
    listeners: dict[str, str] = field(default_factory=dict)  # visibility -> host:port served
    ingresses: dict[tuple[str, str], dict[str, dict[str, list[Path]]]] = field(default_factory=dict)
    services: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    probes: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    # -- routing table ---------------------------------------------------------------------------

    def route(self, visibility: str, host: str) -> list[Path] | None:
        for table in self.ingresses.values():
            if host in table.get(visibility, {}):
                return table[visibility][host]
        return None

    def backend(self, split: Split) -> tuple[str, int] | None:
        service = self.services.get((split.namespace, split.service))
        endpoints = self.endpoints.get((split.namespace, split.service))
        if service is None or endpoints is None:
            return None
        port_name = None
        for port in service["spec"].get("ports", []):
            if split.port in (port.get("port"), port.get("name")):
                port_name = port.get("name")
                break
        else:
            return None
        choices = []
        for subset in endpoints.get("subsets") or []:
            ports = subset.get("ports") or []
            number = next((p["port"] for p in ports if p.get("name") == port_name), None)
            if number is None and len(ports) == 1:
                number = ports[0]["port"]
            if number is not None:
                choices += [(a["ip"], int(number)) for a in subset.get("addresses") or []]
        return random.choice(choices) if choices else None  # noqa: S311 (load balancing)

    # -- watches ---------------------------------------------------------------------------------

    async def watch_ingresses(self) -> None:
        async for event, ingress in self.client.watch(KIngress, namespace=ALL_NS, on_error=_retry):
            raw: dict[str, Any] = ingress.to_dict()  # type: ignore[no-untyped-call]
            meta = raw["metadata"]
            key = (meta["namespace"], meta["name"])
            if (old := self.probes.pop(key, None)) is not None:
                old.cancel()
            if event == "DELETED" or meta.get("deletionTimestamp"):
                self.ingresses.pop(key, None)
                continue
            if (meta.get("annotations") or {}).get(CLASS_ANNOTATION, ISTIO_CLASS) != ISTIO_CLASS:
                continue
            self.ingresses[key] = routes(raw)
            if not ready(raw):
                self.probes[key] = asyncio.create_task(self._probe_then_markready(raw))

    async def _probe_then_markready(self, raw: dict[str, Any]) -> None:
        """Probe each rule's hosts through the listener that serves them, as net-istio's
        prober does, until every one answers with this version's hash; then mark it Ready."""
        digest = ingress_hash(raw)
        pending = [(visibility, host) for visibility, hosts in routes(raw).items()
                   for host in hosts]  # fmt: skip
        delay = 0.05
        while pending:
            pending = [item for item in pending if not await self._probe(*item, digest)]
            if pending:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        await self._markready(raw)

    async def _probe(self, visibility: str, host: str, digest: str) -> bool:
        listener = self.listeners.get(visibility)
        if listener is None or self.session is None:
            return False
        headers = {"Host": host, PROBE: "probe", HASH: OVERRIDE, "User-Agent": PROBE_AGENT}
        try:
            async with self.session.get(
                f"http://{listener}/healthz", headers=headers,
                timeout=aiohttp.ClientTimeout(total=5),
            ) as response:  # fmt: skip
                return response.status == 200 and response.headers.get(HASH) == digest
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _markready(self, raw: dict[str, Any]) -> None:
        meta = raw["metadata"]
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {
            "status": {
                "observedGeneration": meta.get("generation"),
                "conditions": [
                    {"type": kind, "status": "True", "lastTransitionTime": stamp}
                    for kind in ("LoadBalancerReady", "NetworkConfigured", "Ready")
                ],
                "publicLoadBalancer": {"ingress": [{"domainInternal": PUBLIC}]},
                "privateLoadBalancer": {"ingress": [{"domainInternal": PRIVATE}]},
            }
        }
        try:
            await self.client.patch(
                KIngress.Status,
                meta["name"],
                patch,
                namespace=meta["namespace"],
                patch_type=PatchType.MERGE,
            )
        except ApiError as error:
            LOG.warning(
                "kingress %s/%s: status not written: %s",
                meta["namespace"],
                meta["name"],
                error.status.message,
            )

    async def watch_services(self) -> None:
        await self._mirror(Service, self.services)

    async def watch_endpoints(self) -> None:
        await self._mirror(Endpoints, self.endpoints)

    async def _mirror(
        self, resource: type[Service] | type[Endpoints], store: dict[tuple[str, str], Any]
    ) -> None:
        """Keep ``store`` equal to every object of ``resource``, by namespace and name."""
        async for event, obj in self.client.watch(resource, namespace=ALL_NS, on_error=_retry):
            raw = obj.to_dict()
            key = (raw["metadata"]["namespace"], raw["metadata"]["name"])
            if event == "DELETED":
                store.pop(key, None)
            else:
                store[key] = raw

    async def publish_address(self) -> None:
        """The load balancer's address on the ingress gateway Service."""
        patch = {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP"}]}}}
        await self.client.patch(
            Service.Status,
            "istio-ingressgateway",
            patch,
            namespace=GATEWAY_NAMESPACE,
            patch_type=PatchType.MERGE,
        )

    # -- the data path ---------------------------------------------------------------------------

    def match(self, visibility: str, request: web.BaseRequest) -> tuple[Path, Split] | web.Response:
        """The route's path and split for ``request``, or the answer when there is none."""
        host = (request.host or "").rsplit(":", 1)[0].lower()
        paths = self.route(visibility, host)
        if paths is None:
            ready = request.path == "/healthz/ready"
            return web.Response(text="ready\n") if ready else web.Response(status=404)
        path = select(paths, request.path, request.headers)
        split = choose(path.splits) if path is not None else None
        return (path, split) if path is not None and split is not None else web.Response(status=404)

    def handler(
        self, visibility: str
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        """The listener of the gateway that serves VISIBILITY's rules."""

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            started = time.monotonic()
            response = await self._handle(visibility, request)
            LOG.info(
                '%s "%s %s" %s %s %.3f s', visibility, request.method, request.path_qs,
                request.host, response.status, time.monotonic() - started,
            )  # fmt: skip
            return response

        return handle

    async def _handle(self, visibility: str, request: web.BaseRequest) -> web.StreamResponse:
        matched = self.match(visibility, request)
        if isinstance(matched, web.Response):
            return matched
        path, split = matched
        address = self.backend(split)
        if address is None:
            return web.Response(status=503, text="no healthy upstream")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.update(path.headers)
        headers.update(split.headers)
        if headers.get(HASH) == OVERRIDE:  # a probe: it carries this version's hash upstream
            headers[HASH] = path.probe_hash
        if path.rewrite_host:
            headers["Host"] = path.rewrite_host
        peer = request.remote or ""
        forwarded = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
        headers["X-Forwarded-Proto"] = "http"
        headers.setdefault("X-Request-Id", str(uuid.uuid4()))
        url = f"http://{address[0]}:{address[1]}{request.rel_url}"
        assert self.session is not None
        try:
            async with self.session.request(
                request.method,
                url,
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
                auto_decompress=False,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in HOP_BY_HOP | {"server"}:
                        response.headers.add(name, value)
                response.headers["Server"] = "istio-envoy"  # Envoy overwrites it so
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, OSError) as error:
            return web.Response(
                status=503,
                text=f"upstream connect error or disconnect/reset before headers: "
                f"{type(error).__name__}",
            )


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


def _retry(error: Exception, count: int) -> OnErrorResult:
    LOG.warning("watch: %s; watching again", error)
    return OnErrorResult(OnErrorAction.RETRY, sleep=min(1.0 * count, 5.0))


async def _main(kubeconfig: str, listeners: dict[str, str]) -> None:
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="gateway-standin")
    gateway = Gateway(client, listeners)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as gateway.session:
        runners = []
        for visibility, address in listeners.items():
            host, _, port = address.rpartition(":")
            runner = web.ServerRunner(web.Server(gateway.handler(visibility)), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, int(port)).start()
            runners.append(runner)
        watches = [
            asyncio.create_task(w())
            for w in (gateway.watch_services, gateway.watch_endpoints, gateway.watch_ingresses)
        ]
        await gateway.publish_address()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        done = asyncio.create_task(_wait(stop))
        finished, _ = await asyncio.wait({done, *watches}, return_when=asyncio.FIRST_COMPLETED)
        for task in [*watches, *gateway.probes.values()]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in runners:
            await runner.cleanup()
        for task in finished:
            if task is not done and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    await client.close()


def services(local_port: int) -> list[dict[str, Any]]:
    """Istio's gateway Services, as an Istio install makes them (net-istio routes to them):
    the ingress gateway a load balancer (this stand-in sets its address), the local gateway a
    ClusterIP Service, its endpoint this stand-in's listener on the node's address."""

    def service(name: str, kind: str, target: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": GATEWAY_NAMESPACE, "labels": {"istio": name}},
            "spec": {
                "type": kind,
                "selector": {"istio": name},
                "ports": [{"name": "http2", "port": 80, "targetPort": target}],
            },
        }

    return [
        service("istio-ingressgateway", "LoadBalancer", 8080),
        service("knative-local-gateway", "ClusterIP", local_port),
    ]


def start(ctx: Context) -> None:
    """Serve the public rules on 127.0.0.1 at the gateway's port and the cluster-local ones on
    the node's address; ready once it answers and has published the ingress gateway's load
    balancer and the local gateway's endpoint."""
    port, local_port = ctx.state.ports["gateway"], free_port(NODE_IP)
    ctx.state.ports["local-gateway"] = local_port
    public, local = services(local_port)
    ctx.kubectl_apply([public])
    ctx.publish(local, NODE_IP)

    def published() -> bool:
        service = ctx.client.get(Service, "istio-ingressgateway", namespace=GATEWAY_NAMESPACE)
        ingress = service.to_dict().get("status", {}).get("loadBalancer", {}).get("ingress")
        return bool(ingress) and get_ok(f"http://127.0.0.1:{port}/healthz/ready")

    ctx.start(
        "gateway-standin",
        [sys.executable, "-m", "e2e.gateway", f"--kubeconfig={KUBECONFIG}",
         f"--listen=127.0.0.1:{port}", f"--local-listen={NODE_IP}:{local_port}"],
        published,
        executable="e2e.gateway",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The Istio gateway stand-in of the local cluster.")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--listen", required=True, help="HOST:PORT: the ingress gateway")
    parser.add_argument("--local-listen", required=True, help="HOST:PORT: the local gateway")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per API request otherwise
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # handle() logs each request
    try:
        asyncio.run(_main(args.kubeconfig, {EXTERNAL: args.listen, LOCAL: args.local_listen}))
    except (ApiError, OSError) as error:
        print(f"gateway-standin: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
