"""The embedded Tempo's command line: parse flags, replay the store, serve until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from lab_stack.embedded.hosting import bind_socket, run_standalone, serve_app
from lab_stack.embedded.tempo.server import ServerConfig, create_app
from lab_stack.embedded.tempo.store import TraceStore
from lab_stack.settings import HOST, Settings

__all__ = ["build_parser", "main", "run"]

log = structlog.get_logger("lab_stack.embedded.tempo")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m lab_stack.embedded.tempo``."""
    defaults = Settings.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m lab_stack.embedded.tempo",
        description="Embedded Tempo 2.3 API subset: OTLP ingest, traces by id, search.",
    )
    parser.add_argument("--host", default=HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--http-port", type=int, default=3200, help="Tempo HTTP API port")
    parser.add_argument("--otlp-http-port", type=int, default=4318, help="OTLP/HTTP port")
    parser.add_argument("--otlp-grpc-port", type=int, default=4317, help="OTLP/gRPC port")
    parser.add_argument("--data-dir", type=Path, required=True, help="folder for the segment log")
    parser.add_argument(
        "--retention-seconds",
        type=float,
        default=defaults.tempo_retention,
        help="drop traces not updated for this long (default %(default)s)",
    )
    parser.add_argument(
        "--retention-bytes",
        type=int,
        default=defaults.tempo_retention_bytes,
        help="keep at most about this many bytes of traces (default %(default)s)",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=16 * 2**20,
        help="largest accepted request body, compressed or not (default %(default)s)",
    )
    return parser


def _configure_logging() -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)


async def run(argv: Sequence[str], stop: asyncio.Event) -> None:
    """Replay the store, then serve Tempo's HTTP API, OTLP/HTTP and OTLP/gRPC until ``stop``."""
    args = build_parser().parse_args(list(argv))
    ports = {args.http_port, args.otlp_http_port}
    sockets = [bind_socket(args.host, port) for port in sorted(ports)]
    store = None
    try:
        began = time.monotonic()
        store = TraceStore(
            args.data_dir / "segments",
            retention_s=args.retention_seconds,
            retention_bytes=args.retention_bytes,
        )
        spans = store.replay()
        log.info(
            "replayed",
            spans=spans,
            traces=store.trace_count,
            seconds=round(time.monotonic() - began, 3),
            data_dir=str(args.data_dir),
        )
        config = ServerConfig(max_request_bytes=args.max_request_bytes)
        app = create_app(store, config=config, grpc_address=(args.host, args.otlp_grpc_port))
        log.info(
            "tempo listening",
            http=f"{args.host}:{args.http_port}",
            otlp_http=f"{args.host}:{args.otlp_http_port}",
            otlp_grpc=f"{args.host}:{args.otlp_grpc_port}",
        )
        await serve_app(
            app,
            sockets,
            stop,
            name="embedded Tempo",
            h11_max_incomplete_event_size=64 * 1024,
            timeout_graceful_shutdown=5,
        )
    finally:
        if store is not None:
            store.close()
        for sock in sockets:
            sock.close()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status."""
    _configure_logging()
    try:
        return run_standalone(run, argv)
    except OSError as exc:
        log.error("cannot start", error=str(exc))
        return 1
    except RuntimeError as exc:
        log.error("stopped", error=str(exc))
        return 1
