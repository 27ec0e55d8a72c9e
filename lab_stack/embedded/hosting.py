"""Run an embedded server alone (its own process) or beside others (:mod:`lab_stack.embedded.host`).

Each embedded component (Loki, Tempo, the log shipper, the notification sinks) has one entry
point, ``async def run(argv, stop)``: it parses the same command line as ``python -m`` would, opens
its own sockets and store, serves until ``stop`` is set, then shuts down cleanly (store closed,
positions saved) and returns. It raises when it cannot start (a port taken, a bad config).

:func:`run_standalone` turns such an entry point into a process's ``main`` (SIGTERM and SIGINT set
``stop``; exit status 0 after a clean stop); :func:`serve_app` runs one Starlette app under uvicorn
on already bound sockets without touching the process's signal handlers, so several apps can share
one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Literal

__all__ = ["Entry", "bind_socket", "run_standalone", "serve_app", "wait_stopped"]

#: ``async def run(argv, stop)`` of one embedded component.
Entry = Callable[[Sequence[str], asyncio.Event], Awaitable[None]]


def bind_socket(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (``SO_REUSEADDR``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def wait_stopped(stop: asyncio.Event, *tasks: asyncio.Future[Any]) -> bool:
    """Wait until ``stop`` is set or one of ``tasks`` ends; True when ``stop`` came first."""
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return stop.is_set()


def _quiet_server(config: Any) -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # The caller owns the signals: uvicorn's capture would install process-wide handlers
            # (wrong when several servers share a process) and re-raise SIGTERM after shutdown.
            yield

    return _Server(config)


async def serve_app(
    app: Any,
    sockets: list[socket.socket],
    stop: asyncio.Event,
    *,
    name: str,
    lifespan: Literal["auto", "on", "off"] = "on",
    **options: Any,
) -> None:
    """Serve ``app`` with uvicorn on ``sockets`` until ``stop`` is set, then shut down gracefully.

    Raises:
        RuntimeError: the app did not start (its lifespan failed) or stopped on its own.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        **options,
    )
    server = _quiet_server(config)

    async def _serve() -> None:
        try:
            await server.serve(sockets=sockets)
        except SystemExit:  # uvicorn's answer to a failed lifespan start-up
            raise RuntimeError(f"{name} failed to start (its lifespan start-up failed)") from None

    task = asyncio.ensure_future(_serve())
    asked = await wait_stopped(stop, task)
    server.should_exit = True
    await task
    if not server.started:
        raise RuntimeError(f"{name} did not start serving")
    if not asked:
        raise RuntimeError(f"{name} stopped serving on its own")


def run_standalone(entry: Entry, argv: Sequence[str] | None = None) -> int:
    """Run ``entry`` as this process's only component until SIGTERM or SIGINT; exit status."""
    args = list(sys.argv[1:] if argv is None else argv)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await entry(args, stop)

    asyncio.run(_main())
    return 0
