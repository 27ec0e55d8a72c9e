"""Run the embedded Loki: ``python -m lab_stack.embedded.loki --port 3100 --data-dir DIR``.

Logs go to stderr as JSON lines; SIGTERM (and Ctrl-C) stop it cleanly. :func:`run` is the same
server as a coroutine, for :mod:`lab_stack.embedded.host`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from lab_stack.embedded.hosting import bind_socket, run_standalone, serve_app
from lab_stack.settings import HOST, Settings

__all__ = ["build_parser", "main", "run"]


def _configure_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m lab_stack.embedded.loki``."""
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m lab_stack.embedded.loki", description=__doc__)
    parser.add_argument("--host", default=HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=3100, help="HTTP port (default %(default)s)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=settings.data_dir / "loki",
        help="folder of the segment files (default %(default)s)",
    )
    parser.add_argument(
        "--retention-seconds",
        type=float,
        default=settings.loki_retention,
        help="drop entries older than this (default %(default)s)",
    )
    parser.add_argument(
        "--retention-bytes",
        type=int,
        default=settings.loki_retention_bytes,
        help="bound on stored bytes (default %(default)s)",
    )
    parser.add_argument(
        "--fsync", action="store_true", help="fsync every push (survives power loss)"
    )
    return parser


async def run(argv: Sequence[str], stop: asyncio.Event) -> None:
    """Serve the embedded Loki until ``stop`` is set (the store is replayed by the lifespan)."""
    from lab_stack.embedded.loki.server import create_app

    args = build_parser().parse_args(list(argv))
    sock = bind_socket(args.host, args.port)
    try:
        app = create_app(
            data_dir=args.data_dir,
            retention_s=args.retention_seconds,
            retention_bytes=args.retention_bytes,
            fsync=args.fsync,
        )
        await serve_app(app, [sock], stop, name="embedded Loki", timeout_graceful_shutdown=5)
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until SIGTERM."""
    _configure_logging()
    try:
        return run_standalone(run, argv)
    except OSError as exc:
        structlog.get_logger("lab_stack.embedded.loki").error(
            "cannot start", error=str(exc), hint="pick a free port or stop what holds it"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
