"""Run the embedded Loki: ``python -m lab_stack.embedded.loki --port 3100 --data-dir DIR``.

Logs go to stderr as JSON lines; SIGTERM (and Ctrl-C) stop it cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import structlog
import uvicorn

from lab_stack.settings import HOST, Settings

from .server import create_app

__all__ = ["main"]


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


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until SIGTERM."""
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
    args = parser.parse_args(argv)
    _configure_logging()
    app = create_app(
        data_dir=args.data_dir,
        retention_s=args.retention_seconds,
        retention_bytes=args.retention_bytes,
        fsync=args.fsync,
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        access_log=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)

    def _stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    # uvicorn re-raises SIGTERM after its shutdown (exit status -15); handling the signal
    # ourselves lets the lifespan close the segment log and the process exit 0.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
