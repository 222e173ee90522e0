"""The baseline: a bare Starlette "hello" app on uvicorn, configured as the service is."""

from __future__ import annotations

import os

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello\n")


app = Starlette(routes=[Route("/", hello), Route("/healthz", hello)])


def main() -> None:
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
        http="httptools",
        loop="asyncio",
        log_level=os.environ.get("LOG_LEVEL", "info"),
        server_header=False,
    )


if __name__ == "__main__":
    main()
