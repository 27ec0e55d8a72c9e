"""The embedded Tempo's command line: parse flags, replay the store, serve until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import structlog
import uvicorn

from lab_stack.embedded.tempo.server import ServerConfig, bind_socket, create_app
from lab_stack.embedded.tempo.store import TraceStore
from lab_stack.settings import HOST, Settings

__all__ = ["build_parser", "main"]

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


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    log.info("signal after shutdown", signal=signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status."""
    args = build_parser().parse_args(argv)
    _configure_logging()
    ports = {args.http_port, args.otlp_http_port}
    try:
        sockets = [bind_socket(args.host, port) for port in sorted(ports)]
    except OSError as exc:
        log.error("cannot bind", host=args.host, ports=sorted(ports), error=str(exc))
        return 1
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
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            h11_max_incomplete_event_size=64 * 1024,
            timeout_graceful_shutdown=5,
        )
    )
    log.info(
        "tempo listening",
        http=f"{args.host}:{args.http_port}",
        otlp_http=f"{args.host}:{args.otlp_http_port}",
        otlp_grpc=f"{args.host}:{args.otlp_grpc_port}",
    )
    # uvicorn re-raises the signal it caught once it has shut down; these handlers receive that
    # re-raise, so that a SIGTERM ends the process with status 0 after a clean shutdown.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _ignore_signal)
    try:
        server.run(sockets=sockets)
    finally:
        store.close()
        for sock in sockets:
            sock.close()
    log.info("stopped")
    return 0 if server.started else 1
