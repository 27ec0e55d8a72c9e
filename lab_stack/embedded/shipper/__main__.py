"""Command line of the log shipper: ``python -m lab_stack.embedded.shipper --config FILE``.

:func:`run` is the same shipper as a coroutine, for :mod:`lab_stack.embedded.host`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from lab_stack.embedded.shipper.config import load_config
from lab_stack.embedded.shipper.server import serve
from lab_stack.errors import ConfigError

__all__ = ["build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m lab_stack.embedded.shipper``."""
    parser = argparse.ArgumentParser(
        prog="python -m lab_stack.embedded.shipper",
        description="Tail log files named by a Promtail-style YAML and push them to Loki.",
    )
    parser.add_argument("--config", "-config.file", dest="config", type=Path, required=True)
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    parser.add_argument("--host", default=None, help="override server.http_listen_address")
    return parser


async def run(argv: Sequence[str], stop: asyncio.Event) -> None:
    """Ship the files named by ``--config`` until ``stop`` is set.

    Raises:
        ConfigError: the config file is invalid.
        OSError: the HTTP port cannot be bound.
    """
    args = build_parser().parse_args(list(argv))
    await serve(load_config(args.config, host=args.host), stop)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, check the config, then run the shipper (or only check it)."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, host=args.host)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - a CLI's user-facing error
        return 1
    if args.check_config:
        files = sum(len(s.static_configs) for s in config.scrape_configs)
        print(  # noqa: T201 - a CLI's answer
            f"config {args.config} is valid: {len(config.scrape_configs)} scrape config(s), "
            f"{files} path glob(s), {len(config.clients)} client(s)"
        )
        return 0
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(  # noqa: T201 - a CLI's user-facing error
            f"error: the shipper could not listen on {config.http_listen_address}:"
            f"{config.http_listen_port}: {exc}. Hint: pick a free port (0 picks one).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
