"""The Starlette app: the heavy-lifting route, health, readiness and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote_from_bytes

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import render
from service.lifting import Lifting
from service.metrics import Metrics
from service.params import Limits, ParameterError, parse_format, parse_query
from service.settings import Settings

REVISION_HEADER = "k-revision"
# Health and metrics routes are not traced (matched against scheme://host:port/path).
_UNTRACED = "/healthz$,/readyz$,/metrics$"


class RevisionHeader:
    """Adds the serving revision to every response, so traffic splits can be seen."""

    def __init__(self, app: ASGIApp, revision: str) -> None:
        self.app = app
        self.header = (REVISION_HEADER.encode(), revision.encode("latin-1", "replace"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)


_PRINTABLE_ASCII = bytes(range(0x21, 0x7F))


class Utf8QueryString:
    """Percent-encodes a query string that is not UTF-8, so no layer fails to decode it.

    uvicorn's httptools parser already refuses such requests, but other servers pass them on,
    and the tracing middleware would answer them with a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query: bytes = scope.get("query_string", b"")
            try:
                query.decode("utf-8")
            except UnicodeDecodeError:
                scope = {
                    **scope,
                    "query_string": quote_from_bytes(query, _PRINTABLE_ASCII).encode(),
                }
        await self.app(scope, receive, send)


def _span_details(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    # Name by route, not raw path: unknown paths must not create one span name each.
    method = scope.get("method", "HTTP")
    return (f"{method} /" if scope.get("path") == "/" else method), {}


class _Endpoints:
    def __init__(self, settings: Settings, lifting: Lifting, metrics: Metrics) -> None:
        self.settings = settings
        self.lifting = lifting
        self.metrics = metrics
        self.limits = Limits(max_in=settings.max_in, max_processes=settings.max_processes)

    async def home(self, request: Request) -> Response:
        pairs = request.query_params.multi_items()
        fmt = render.negotiate(request.headers.get("accept", ""))
        revision = self.settings.revision
        try:
            fmt = parse_format(pairs) or fmt
            query = parse_query(pairs, self.limits)
        except ParameterError as error:
            self.metrics.rejected.labels(error.parameter).inc()
            return render.bad_request(fmt, str(error), error.parameter)
        if query is None:
            return render.usage(fmt, self.limits, self.settings.colour, revision)
        with self.metrics.in_flight.track_inprogress():
            outcome = await self.lifting.heavy_lifting(query)
        return render.result(fmt, outcome, self.settings.colour, revision)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(self, request: Request) -> Response:
        # Once shutdown starts the server takes no new connection: a probe is refused, which
        # fails readiness as a 503 would (no probe could ever see one).
        return PlainTextResponse("ready\n")

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, tracer_provider: TracerProvider) -> Starlette:
    """Build the app: the heavy-lifting route, health, readiness and metrics."""
    metrics = Metrics()
    lifting = Lifting(
        tracer_provider.get_tracer("service.lifting"), metrics, workers=settings.pi_workers
    )
    endpoints = _Endpoints(settings, lifting, metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        lifting.close()

    app = Starlette(
        routes=[
            Route("/", endpoints.home),
            Route("/healthz", endpoints.healthz),
            Route("/readyz", endpoints.readyz),
            Route("/metrics", endpoints.prometheus),
        ],
        middleware=[
            Middleware(Utf8QueryString),
            Middleware(RevisionHeader, revision=settings.revision),
            Middleware(
                OpenTelemetryMiddleware,
                excluded_urls=_UNTRACED,
                default_span_details=_span_details,
                tracer_provider=tracer_provider,
                exclude_spans=["receive", "send"],
            ),
        ],
        lifespan=lifespan,
    )
    app.state.endpoints = endpoints
    app.state.metrics = metrics
    return app
