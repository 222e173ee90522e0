"""A small fake Kubernetes API on 127.0.0.1: pod list and watch for one label selector.

The test drives it (``set_pods``) to scale a Knative Service's pods up and down; watchers get
ADDED / MODIFIED / DELETED events as the real API server sends them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.utils import free_port

LABEL = "serving.knative.dev/service"


def _pod(name: str, namespace: str, service: str, ready: bool, version: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL: service},
            "resourceVersion": str(version),
        },
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


class FakeKube:
    def __init__(self, namespace: str, service: str) -> None:
        self.namespace = namespace
        self.service = service
        self.pods: dict[str, dict[str, Any]] = {}
        self.version = 1
        self.watchers: list[asyncio.Queue[dict[str, Any]]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.selectors: list[str] = []
        self.watched = threading.Event()  # set once a watch has connected

    def _matches(self, request: Request) -> bool:
        selector = request.query_params.get("labelSelector", "")
        self.selectors.append(selector)
        return (
            request.path_params["namespace"] == self.namespace
            and selector == f"{LABEL}={self.service}"
        )

    async def pods_endpoint(self, request: Request) -> Response:
        if request.query_params.get("watch") not in ("true", "1"):
            items = list(self.pods.values()) if self._matches(request) else []
            return JSONResponse(
                {
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.version)},
                    "items": items,
                }
            )
        if not self._matches(request):
            return JSONResponse({"kind": "Status", "code": 400}, status_code=400)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for pod in self.pods.values():
            queue.put_nowait({"type": "ADDED", "object": pod})
        self.watchers.append(queue)
        self.watched.set()

        async def stream() -> AsyncIterator[bytes]:
            try:
                while True:
                    event = await queue.get()
                    yield (json.dumps(event) + "\n").encode()
            finally:
                self.watchers.remove(queue)

        return StreamingResponse(stream(), media_type="application/json")

    def set_pods(self, ready: list[bool]) -> None:
        """Make the service have ``len(ready)`` pods, the i-th ready or not (thread-safe)."""
        assert self.loop is not None
        done = threading.Event()

        def apply() -> None:
            wanted = {f"{self.service}-00001-deployment-{i}": r for i, r in enumerate(ready)}
            for name in list(self.pods):
                if name not in wanted:
                    self.version += 1
                    pod = self.pods.pop(name)
                    pod["metadata"]["resourceVersion"] = str(self.version)
                    self._publish("DELETED", pod)
            for name, is_ready in wanted.items():
                self.version += 1
                kind = "MODIFIED" if name in self.pods else "ADDED"
                pod = _pod(name, self.namespace, self.service, is_ready, self.version)
                if self.pods.get(name, {}).get("status") != pod["status"]:
                    self.pods[name] = pod
                    self._publish(kind, pod)
            done.set()

        self.loop.call_soon_threadsafe(apply)
        done.wait(5)

    def _publish(self, kind: str, pod: dict[str, Any]) -> None:
        for queue in self.watchers:
            queue.put_nowait({"type": kind, "object": pod})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/v1/namespaces/{namespace}/pods", self.pods_endpoint)])


@contextmanager
def running_fake_kube(
    tmp_path: Path, namespace: str, service: str
) -> Iterator[tuple[FakeKube, Path]]:
    """Serve a FakeKube on a free loopback port; yields it and a kubeconfig pointing at it."""
    fake = FakeKube(namespace, service)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning")
    )

    def serve() -> None:
        async def main() -> None:
            fake.loop = asyncio.get_running_loop()
            await server.serve()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                    }
                ],
                "current-context": "fake",
            }
        )
    )
    try:
        yield fake, kubeconfig
    finally:
        server.should_exit = True
        server.force_exit = True
        thread.join(10)
