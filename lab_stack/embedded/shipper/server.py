"""The shipper's process: its HTTP endpoints (``/ready``, ``/metrics``) beside the engine."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from lab_stack.embedded.shipper.config import ShipperConfig
from lab_stack.embedded.shipper.shipper import Shipper

__all__ = ["create_app", "serve"]

_log = structlog.get_logger("lab_stack.shipper")


def create_app(shipper: Shipper) -> Starlette:
    """The shipper's HTTP application: ``/ready`` and ``/metrics``."""

    async def ready(request: Request) -> Response:
        if shipper.ready:
            return PlainTextResponse("ready")
        return PlainTextResponse("not ready: files not yet discovered", status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(shipper.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # serve() handles the signals; uvicorn's capture would re-raise SIGTERM after shutdown.
        yield


async def serve(config: ShipperConfig) -> None:
    """Run the shipper and its HTTP server until SIGTERM or SIGINT."""
    shipper = Shipper(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.http_listen_address, config.http_listen_port))
    sock.listen(128)
    sock.setblocking(False)
    server = _Server(
        uvicorn.Config(
            create_app(shipper),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        shipper.stop()
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    _log.info(
        "shipper listening",
        host=config.http_listen_address,
        http_port=sock.getsockname()[1],
    )
    web = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await shipper.run()
    finally:
        server.should_exit = True
        await web
