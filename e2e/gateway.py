"""Stand-in for the Istio ingress gateway's Envoy: `python -m e2e.gateway`.

Envoy cannot run here (no binary is built from Go modules), so this process does its part and
net-istio's, and only that. It reads every Knative Ingress (KIngress) of the Istio class, as
net-istio does to program Envoy, and serves its public (ExternalIP) rules on 127.0.0.1:

- a request is routed by its Host header, then by path prefix and exact header matches;
- a split is chosen by its traffic percent, the split's and the path's appendHeaders are added
  (Knative-Serving-Revision and -Namespace among them: the activator needs them), and the host is
  rewritten where the rule says so;
- the request goes to an address of the split's Service, from the Endpoints Knative published
  (the activator's, or the revision's pods'), as Envoy's endpoint discovery does;
- no route: 404; no endpoint or no connection: 503, as Envoy answers.

Once a KIngress is loaded it writes the status net-istio writes: LoadBalancerReady,
NetworkConfigured and Ready, and the public and private load balancers. It also plays the load
balancer in front of Envoy: the istio-ingressgateway Service's status gets 127.0.0.1.
`/healthz/ready` on a host that no rule names answers 200 once the stand-in is serving.
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
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from lightkube import ALL_NS, ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Endpoints, Service
from lightkube.types import OnErrorAction, OnErrorResult, PatchType

from e2e.context import KUBECONFIG, Context, get_ok

LOG = logging.getLogger("gateway-standin")
KIngress = create_namespaced_resource(
    "networking.internal.knative.dev", "v1alpha1", "Ingress", "ingresses"
)
ISTIO_CLASS = "istio.ingress.networking.knative.dev"
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


@dataclass(frozen=True)
class Split:
    namespace: str
    service: str
    port: int | str
    percent: int
    headers: dict[str, str]


@dataclass(frozen=True)
class Path:
    prefix: str
    match_headers: dict[str, str]
    splits: tuple[Split, ...]
    headers: dict[str, str]
    rewrite_host: str


def _paths(rule: dict[str, Any]) -> list[Path]:
    paths = []
    for path in (rule.get("http") or {}).get("paths", []):
        splits = tuple(
            Split(
                namespace=s["serviceNamespace"],
                service=s["serviceName"],
                port=s["servicePort"],
                percent=int(s.get("percent", 100)),
                headers=dict(s.get("appendHeaders") or {}),
            )
            for s in path.get("splits", [])
        )
        paths.append(
            Path(
                prefix=path.get("path") or "/",
                match_headers={
                    k: v.get("exact", "") for k, v in (path.get("headers") or {}).items()
                },
                splits=splits,
                headers=dict(path.get("appendHeaders") or {}),
                rewrite_host=path.get("rewriteHost") or "",
            )
        )
    return paths


class Gateway:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.ingresses: dict[tuple[str, str], dict[str, list[Path]]] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.endpoints: dict[tuple[str, str], dict[str, Any]] = {}
        self.session: aiohttp.ClientSession

    # -- routing table ---------------------------------------------------------------------------

    def route(self, host: str) -> list[Path] | None:
        for hosts in self.ingresses.values():
            if host in hosts:
                return hosts[host]
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
            if event == "DELETED" or meta.get("deletionTimestamp"):
                self.ingresses.pop(key, None)
                continue
            if (meta.get("annotations") or {}).get(CLASS_ANNOTATION, ISTIO_CLASS) != ISTIO_CLASS:
                continue
            hosts: dict[str, list[Path]] = {}
            for rule in raw["spec"].get("rules", []):
                if rule.get("visibility", "ExternalIP") != "ExternalIP":
                    continue  # cluster-local rules are the local gateway's, not served here
                for host in rule.get("hosts", []):
                    hosts[host.lower()] = _paths(rule)
            self.ingresses[key] = hosts
            await self._mark_ready(raw)

    async def _mark_ready(self, raw: dict[str, Any]) -> None:
        meta = raw["metadata"]
        status = raw.get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        if (
            status.get("observedGeneration") == meta.get("generation")
            and conditions.get("Ready") == "True"
        ):
            return
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

    def match(self, request: web.BaseRequest) -> tuple[Path, Split] | web.Response:
        """The route's path and split for ``request``, or the answer when there is none."""
        host = (request.host or "").rsplit(":", 1)[0].lower()
        paths = self.route(host)
        if paths is None:
            ready = request.path == "/healthz/ready"
            return web.Response(text="ready\n") if ready else web.Response(status=404)
        for path in paths:
            if request.path.startswith(path.prefix) and all(
                request.headers.get(k) == v for k, v in path.match_headers.items()
            ):
                split = _choose(path.splits)
                return (path, split) if split is not None else web.Response(status=404)
        return web.Response(status=404)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        response = await self._handle(request)
        LOG.info(
            '"%s %s" %s %s %.3f s', request.method, request.path_qs, request.host,
            response.status, time.monotonic() - started,
        )  # fmt: skip
        return response

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        matched = self.match(request)
        if isinstance(matched, web.Response):
            return matched
        path, split = matched
        address = self.backend(split)
        if address is None:
            return web.Response(status=503, text="no healthy upstream")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.update(path.headers)
        headers.update(split.headers)
        if path.rewrite_host:
            headers["Host"] = path.rewrite_host
        peer = request.remote or ""
        forwarded = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
        headers["X-Forwarded-Proto"] = "http"
        headers.setdefault("X-Request-Id", str(uuid.uuid4()))
        url = f"http://{address[0]}:{address[1]}{request.rel_url}"
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


def _choose(splits: tuple[Split, ...]) -> Split | None:
    total = sum(s.percent for s in splits)
    if total <= 0:
        return None
    point = random.uniform(0, total)  # noqa: S311 (traffic splitting, not security)
    for split in splits:
        point -= split.percent
        if point <= 0 and split.percent > 0:
            return split
    return splits[-1]


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


def _retry(error: Exception, count: int) -> OnErrorResult:
    LOG.warning("watch: %s; watching again", error)
    return OnErrorResult(OnErrorAction.RETRY, sleep=min(1.0 * count, 5.0))


async def _main(kubeconfig: str, host: str, port: int) -> None:
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="gateway-standin")
    gateway = Gateway(client)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as gateway.session:
        server = web.Server(gateway.handle)
        runner = web.ServerRunner(server, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
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
        for task in watches:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()
        for task in finished:
            if task is not done and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    await client.close()


def start(ctx: Context) -> None:
    """Serve on 127.0.0.1 at the gateway's port; ready once it answers and has published the
    load balancer of istio-ingressgateway."""
    started = time.monotonic()
    port = ctx.state.ports["gateway"]
    process = ctx.spawn(
        "gateway-standin",
        [sys.executable, "-m", "e2e.gateway", f"--kubeconfig={KUBECONFIG}",
         f"--listen=127.0.0.1:{port}"],
        executable="e2e.gateway",
    )  # fmt: skip

    def published() -> bool:
        service = ctx.client.get(Service, "istio-ingressgateway", namespace=GATEWAY_NAMESPACE)
        ingress = service.to_dict().get("status", {}).get("loadBalancer", {}).get("ingress")
        return bool(ingress) and get_ok(f"http://127.0.0.1:{port}/healthz/ready")

    ctx.wait(process, published, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The Istio gateway stand-in of the local cluster.")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--listen", required=True, help="HOST:PORT to serve on")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per API request otherwise
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # handle() logs each request
    try:
        asyncio.run(_main(args.kubeconfig, host, int(port)))
    except (ApiError, OSError) as error:
        print(f"gateway-standin: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
