"""Command line of the notification sinks: ``python -m lab_stack.sinks --http-port P ...``.

:func:`run` is the same sinks as a coroutine, for :mod:`lab_stack.embedded.host`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from lab_stack.settings import HOST
from lab_stack.sinks.app import serve

__all__ = ["build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m lab_stack.sinks``."""
    parser = argparse.ArgumentParser(
        prog="python -m lab_stack.sinks",
        description="Webhook, Slack and SMTP notification sinks for Alertmanager.",
    )
    parser.add_argument("--host", default=HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--http-port", type=int, default=9095, help="HTTP port (0 = any free)")
    parser.add_argument("--smtp-port", type=int, default=2525, help="SMTP port (0 = any free)")
    parser.add_argument("--data-dir", type=Path, required=True, help="where notifications persist")
    return parser


async def run(argv: Sequence[str], stop: asyncio.Event) -> None:
    """Serve the sinks until ``stop`` is set."""
    args = build_parser().parse_args(list(argv))
    await serve(
        host=args.host,
        http_port=args.http_port,
        smtp_port=args.smtp_port,
        data_dir=args.data_dir,
        stop=stop,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, configure logging to stderr and run the sinks."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        asyncio.run(
            serve(
                host=args.host,
                http_port=args.http_port,
                smtp_port=args.smtp_port,
                data_dir=args.data_dir,
            )
        )
    except OSError as exc:
        print(  # noqa: T201 - a CLI's user-facing error
            f"lab sinks could not start on {args.host} (http {args.http_port}, smtp "
            f"{args.smtp_port}): {exc}. Hint: pick free ports or stop what holds them.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
