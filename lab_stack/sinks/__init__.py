"""Notification sinks for Alertmanager: webhook, Slack-format webhook and SMTP, with a query API.

Run ``python -m lab_stack.sinks --host 127.0.0.1 --http-port P --smtp-port Q --data-dir DIR``;
tests and graders read what arrived from ``GET /api/notifications``.
"""

from __future__ import annotations

from lab_stack.sinks.app import (
    MAX_BODY_BYTES,
    SinkMetrics,
    SmtpHandler,
    create_app,
    parse_email,
    serve,
)
from lab_stack.sinks.store import KINDS, Notification, NotificationStore

__all__ = [
    "KINDS",
    "MAX_BODY_BYTES",
    "Notification",
    "NotificationStore",
    "SinkMetrics",
    "SmtpHandler",
    "create_app",
    "parse_email",
    "serve",
]
