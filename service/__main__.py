"""``python -m service``: read settings, set up telemetry, serve until SIGTERM, then drain.

On SIGTERM (Knative's shutdown) the server stops accepting connections (so readiness probes
fail), in-flight requests finish, spans are flushed and the process exits 0.
"""

from __future__ import annotations

import gc

# Start-up is part of scale from zero: it allocates a lot and frees almost nothing, so the
# collector stays off until serving starts (about 10 ms less from exec to first 200).
gc.disable()

import logging  # noqa: E402 (after gc.disable, on purpose)
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from types import FrameType  # noqa: E402

import uvicorn  # noqa: E402

from service.app import create_app  # noqa: E402
from service.settings import Settings, SettingsError  # noqa: E402
from service.telemetry import build_tracer_provider, configure_propagation  # noqa: E402

EXIT_OK = 0
EXIT_BAD_SETTINGS = 2
EXIT_STARTUP_FAILURE = 3

log = logging.getLogger("service")


def _ignore(sig: int, frame: FrameType | None) -> None:
    """Replaces the default handlers that uvicorn re-raises after a graceful shutdown."""


def _listen(settings: Settings) -> socket.socket:
    """The server's socket, bound before anything says it serves (as uvicorn binds it). Made
    with IPPROTO_TCP: asyncio sets TCP_NODELAY on the connections it accepts only then, and
    without it a response's second segment waits for a delayed ACK (40 ms)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as error:
        sock.close()
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise SettingsError(
            f"PORT {settings.port} on HOST {settings.host}: {reason.lower()}"
        ) from None
    return sock


def main() -> int:
    try:
        settings = Settings.from_env()
        sock = _listen(settings)
    except SettingsError as error:
        print(f"myfirstserverlessapp: bad setting: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    configure_propagation()
    provider = build_tracer_provider(settings)
    app = create_app(settings, provider)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http="httptools",
        loop="asyncio",
        lifespan="on",
        log_level=settings.log_level,
        server_header=False,
    )
    server = uvicorn.Server(config)
    # What start-up made lives as long as the process: keep it out of every later collection
    # (shorter pauses under load), then collect as usual.
    gc.freeze()
    gc.enable()
    # uvicorn re-raises the signal that stopped it once it has drained; exit 0 instead, as the
    # Knative runtime contract expects of a clean shutdown.
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    log.info(
        "serving revision %s on %s:%d (service.name=%s)",
        settings.revision,
        settings.host,
        settings.port,
        settings.service_name,
    )
    server.run(sockets=[sock])
    provider.shutdown()
    if not server.started:
        return EXIT_STARTUP_FAILURE
    log.info("stopped cleanly, spans flushed")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
