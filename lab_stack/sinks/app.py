"""Notification sinks: HTTP (webhook, Slack) and SMTP receivers for Alertmanager, one process.

HTTP routes (Starlette):

* ``GET /ready`` → ``ready``
* ``POST /webhook/{receiver}`` — Alertmanager's webhook payload (version 4)
* ``POST /slack/{receiver}`` — a Slack incoming-webhook payload; answers ``ok`` like Slack
* ``GET /api/notifications?receiver=&kind=&since=`` — what arrived, in arrival order
* ``DELETE /api/notifications?receiver=`` — forget what arrived
* ``GET /metrics`` — ``lab_sink_notifications_total{receiver,kind}``

SMTP (aiosmtpd) accepts any message without authentication and stores it parsed; the receiver of
an email is its first recipient.
"""

from __future__ import annotations

import asyncio
import email.policy
import json
import signal
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lab_stack.embedded.hosting import bind_socket, serve_app
from lab_stack.sinks.store import KINDS, NotificationStore

__all__ = ["MAX_BODY_BYTES", "SinkMetrics", "SmtpHandler", "create_app", "parse_email", "serve"]

#: Largest request body (HTTP) or message (SMTP) the sinks accept, in bytes.
MAX_BODY_BYTES = 4 * 1024 * 1024

_log = structlog.get_logger("lab_stack.sinks")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SinkMetrics:
    """Prometheus metrics of the sinks, on their own registry."""

    def __init__(self, store: NotificationStore, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.notifications = Counter(
            "lab_sink_notifications",
            "Notifications received by the lab's notification sinks.",
            ["receiver", "kind"],
            registry=self.registry,
        )
        # Start from what the store holds, so a restart does not look like a counter reset.
        for (receiver, kind), count in store.counts().items():
            self.notifications.labels(receiver=receiver, kind=kind).inc(count)

    def record(self, receiver: str, kind: str) -> None:
        """Count one notification."""
        self.notifications.labels(receiver=receiver, kind=kind).inc()


async def _read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _BadRequest(413, f"request body of {length} bytes exceeds {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BadRequest(413, f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_json_object(request: Request) -> dict[str, Any]:
    body = await _read_body(request)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _BadRequest(400, f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise _BadRequest(400, f"expected a JSON object, got {type(data).__name__}")
    return data


def _check_webhook(data: dict[str, Any]) -> None:
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise _BadRequest(400, "webhook payload has no 'alerts' list (Alertmanager webhook v4)")
    if not all(isinstance(a, dict) for a in alerts):
        raise _BadRequest(400, "webhook payload 'alerts' must be a list of objects")
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        if key in data and not isinstance(data[key], dict):
            raise _BadRequest(400, f"webhook payload '{key}' must be an object")


def _check_slack(data: dict[str, Any]) -> None:
    if "attachments" in data and not isinstance(data["attachments"], list):
        raise _BadRequest(400, "invalid_attachments")
    if "blocks" in data and not isinstance(data["blocks"], list):
        raise _BadRequest(400, "invalid_blocks")
    if not (data.get("text") or data.get("attachments") or data.get("blocks")):
        raise _BadRequest(400, "no_text")


def create_app(store: NotificationStore, metrics: SinkMetrics) -> Starlette:
    """Build the sinks' HTTP application over ``store``."""

    async def ready(request: Request) -> Response:
        return PlainTextResponse("ready")

    async def receive(request: Request) -> Response:
        kind = "webhook" if request.url.path.startswith("/webhook/") else "slack"
        receiver = request.path_params["receiver"]
        try:
            data = await _read_json_object(request)
            (_check_webhook if kind == "webhook" else _check_slack)(data)
        except _BadRequest as exc:
            _log.info("rejected notification", kind=kind, receiver=receiver, reason=exc.message)
            return PlainTextResponse(exc.message, status_code=exc.status)
        note = store.add(receiver=receiver, kind=kind, payload=data)
        metrics.record(receiver, kind)
        _log.info("notification", id=note.id, kind=kind, receiver=receiver)
        if kind == "slack":
            return PlainTextResponse("ok")
        return JSONResponse({"status": "success", "id": note.id})

    async def notifications(request: Request) -> Response:
        params = request.query_params
        receiver = params.get("receiver") or None
        if request.method == "DELETE":
            deleted = store.clear(receiver=receiver)
            _log.info("cleared notifications", receiver=receiver, deleted=deleted)
            return JSONResponse({"deleted": deleted})
        kind = params.get("kind") or None
        if kind is not None and kind not in KINDS:
            return PlainTextResponse(
                f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}", status_code=400
            )
        since: float | None = None
        if params.get("since"):
            try:
                since = float(params["since"])
            except ValueError:
                return PlainTextResponse(
                    f"since={params['since']!r} is not a number of unix seconds", status_code=400
                )
        items = store.list(receiver=receiver, kind=kind, since=since)
        return JSONResponse({"notifications": [n.to_json() for n in items]})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/ready", ready, methods=["GET"]),
        Route("/-/ready", ready, methods=["GET"]),
        Route("/webhook/{receiver}", receive, methods=["POST"]),
        Route("/slack/{receiver}", receive, methods=["POST"]),
        Route("/api/notifications", notifications, methods=["GET", "DELETE"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _part_text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content.replace("\r\n", "\n") if isinstance(content, str) else ""


def parse_email(mail_from: str, rcpt_tos: list[str], content: bytes) -> dict[str, Any]:
    """Parse an SMTP message into the sinks' email payload."""
    msg = BytesParser(policy=email.policy.default).parsebytes(content)
    assert isinstance(msg, EmailMessage)
    headers: dict[str, str] = {}
    for name, value in msg.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else str(value)
    text = html = ""
    for part in msg.walk() if msg.is_multipart() else [msg]:
        if not isinstance(part, EmailMessage) or part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and not text:
            text = _part_text(part)
        elif ctype == "text/html" and not html:
            html = _part_text(part)
    return {
        "mail_from": mail_from,
        "rcpt_tos": rcpt_tos,
        "subject": str(msg.get("Subject", "")),
        "headers": headers,
        "body": text or html,
        "text": text,
        "html": html,
    }


class SmtpHandler:
    """aiosmtpd handler storing each message as an ``email`` notification."""

    def __init__(self, store: NotificationStore, metrics: SinkMetrics) -> None:
        self._store = store
        self._metrics = metrics

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store one message; any recipient is accepted."""
        raw = envelope.original_content or envelope.content or b""
        content = raw if isinstance(raw, bytes) else raw.encode("utf-8", "replace")
        rcpt_tos = [str(r) for r in envelope.rcpt_tos]
        try:
            payload = parse_email(str(envelope.mail_from or ""), rcpt_tos, content)
        except Exception as exc:  # a hostile message must never kill the sink
            _log.warning("unparsable email", error=repr(exc))
            return "554 Transaction failed: message could not be parsed"
        receiver = rcpt_tos[0] if rcpt_tos else ""
        note = self._store.add(receiver=receiver, kind="email", payload=payload)
        self._metrics.record(receiver, "email")
        _log.info("notification", id=note.id, kind="email", receiver=receiver)
        return "250 Message accepted for delivery"


async def serve(
    *,
    host: str,
    http_port: int,
    smtp_port: int,
    data_dir: Path,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the HTTP and SMTP sinks until ``stop`` is set (None: until SIGTERM or SIGINT)."""
    store = NotificationStore(data_dir)
    try:
        await _serve(
            store, host=host, http_port=http_port, smtp_port=smtp_port, data_dir=data_dir, stop=stop
        )
    finally:
        store.close()
        _log.info("sinks stopped")


async def _serve(
    store: NotificationStore,
    *,
    host: str,
    http_port: int,
    smtp_port: int,
    data_dir: Path,
    stop: asyncio.Event | None,
) -> None:
    metrics = SinkMetrics(store)
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    http_sock = bind_socket(host, http_port, backlog=128)
    try:
        smtp_sock = bind_socket(host, smtp_port, backlog=128)
    except OSError:
        http_sock.close()
        raise
    handler = SmtpHandler(store, metrics)
    smtp_server = await loop.create_server(
        lambda: SMTP(
            handler,
            data_size_limit=MAX_BODY_BYTES,
            hostname="lab-sinks",
            ident="lab-stack SMTP sink",
            timeout=60,
        ),
        sock=smtp_sock,
    )
    _log.info(
        "sinks listening",
        host=host,
        http_port=http_sock.getsockname()[1],
        smtp_port=smtp_sock.getsockname()[1],
        data_dir=str(data_dir),
    )
    try:
        await serve_app(
            create_app(store, metrics),
            [http_sock],
            stop,
            name="notification sinks",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    finally:
        smtp_server.close()
        await smtp_server.wait_closed()
        http_sock.close()
