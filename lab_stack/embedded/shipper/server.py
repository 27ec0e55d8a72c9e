"""The shipper's process: its HTTP endpoints (``/ready``, ``/metrics``) beside the engine."""

from __future__ import annotations

import asyncio
import signal

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from lab_stack.embedded.hosting import bind_socket, serve_app, wait_stopped
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


async def serve(config: ShipperConfig, stop: asyncio.Event | None = None) -> None:
    """Run the shipper and its HTTP server until ``stop`` is set (None: until SIGTERM or SIGINT)."""
    shipper = Shipper(config)
    sock = bind_socket(config.http_listen_address, config.http_listen_port, backlog=128)
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    _log.info(
        "shipper listening",
        host=config.http_listen_address,
        http_port=sock.getsockname()[1],
    )
    web_stop = asyncio.Event()
    web = asyncio.create_task(
        serve_app(
            create_app(shipper),
            [sock],
            web_stop,
            name="log shipper",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    engine = asyncio.create_task(shipper.run())
    try:
        await wait_stopped(stop, engine, web)
    finally:
        shipper.stop()
        try:
            await engine
        finally:
            web_stop.set()
            try:
                await web
            finally:
                sock.close()
