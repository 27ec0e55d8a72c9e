"""The sinks' durable store: an in-memory list backed by an append-only JSON-lines file.

Every notification is appended to ``DIR/notifications.jsonl`` (written and flushed) before the
sink answers the sender, and the file is replayed at start, so a ``kill -9`` keeps everything that
was acknowledged. A clear is recorded as a marker line and compacted away at the next start.

Example:
    >>> import tempfile, pathlib
    >>> store = NotificationStore(pathlib.Path(tempfile.mkdtemp()))
    >>> store.add(receiver="team", kind="webhook", payload={"alerts": []}).id
    1
    >>> [n.receiver for n in store.list(kind="webhook")]
    ['team']
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

__all__ = ["KINDS", "Kind", "Notification", "NotificationStore"]

Kind = Literal["webhook", "slack", "email"]

#: The kinds of notification the sinks receive.
KINDS: tuple[str, ...] = ("webhook", "slack", "email")

_FILE_NAME = "notifications.jsonl"

_log = structlog.get_logger("lab_stack.sinks")


@dataclass(frozen=True, slots=True)
class Notification:
    """One received notification."""

    id: int
    receiver: str
    kind: str
    received_at: float
    payload: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The notification as the API returns it."""
        return {
            "id": self.id,
            "receiver": self.receiver,
            "kind": self.kind,
            "received_at": self.received_at,
            "payload": self.payload,
        }


class NotificationStore:
    """Thread-safe list of notifications persisted to ``data_dir/notifications.jsonl``."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self._path = data_dir / _FILE_NAME
        self._lock = threading.Lock()
        self._items: list[Notification] = []
        self._next_id = 1
        self._load()
        self._file = self._path.open("a", encoding="utf-8")

    @property
    def path(self) -> Path:
        """The JSON-lines file backing the store."""
        return self._path

    def _load(self) -> None:
        if not self._path.exists():
            return
        items: dict[int, Notification] = {}
        next_id = 1
        markers = 0
        with self._path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    record = json.loads(raw)
                except ValueError:
                    # A torn last line (the process died mid-write) was never acknowledged.
                    _log.warning("skipping unreadable line", file=str(self._path), line=lineno)
                    continue
                if not isinstance(record, dict):
                    continue
                if "next_id" in record and "id" not in record:
                    next_id = max(next_id, int(record["next_id"]))
                elif record.get("clear"):
                    markers += 1
                    receiver = record.get("receiver")
                    up_to = int(record.get("up_to", next_id - 1))
                    for key in [k for k, n in items.items() if k <= up_to]:
                        if receiver is None or items[key].receiver == receiver:
                            del items[key]
                else:
                    try:
                        note = Notification(
                            id=int(record["id"]),
                            receiver=str(record["receiver"]),
                            kind=str(record["kind"]),
                            received_at=float(record["received_at"]),
                            payload=dict(record["payload"]),
                        )
                    except (KeyError, TypeError, ValueError):
                        _log.warning("skipping malformed record", file=str(self._path), line=lineno)
                        continue
                    items[note.id] = note
                    next_id = max(next_id, note.id + 1)
        self._items = sorted(items.values(), key=lambda n: n.id)
        self._next_id = next_id
        if markers:
            self._compact()
        _log.info("loaded notifications", count=len(self._items), file=str(self._path))

    def _compact(self) -> None:
        tmp = self._path.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps({"next_id": self._next_id}) + "\n")
            for note in self._items:
                fh.write(json.dumps(note.to_json(), separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)

    def _append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def add(self, *, receiver: str, kind: str, payload: dict[str, Any]) -> Notification:
        """Persist and return a new notification."""
        with self._lock:
            note = Notification(
                id=self._next_id,
                receiver=receiver,
                kind=kind,
                received_at=time.time(),
                payload=payload,
            )
            self._append(note.to_json())
            self._next_id += 1
            self._items.append(note)
            return note

    def list(
        self, *, receiver: str | None = None, kind: str | None = None, since: float | None = None
    ) -> list[Notification]:
        """Notifications in arrival order, filtered by receiver, kind, ``received_at >= since``."""
        with self._lock:
            items: Iterable[Notification] = list(self._items)
        return [
            n
            for n in items
            if (receiver is None or n.receiver == receiver)
            and (kind is None or n.kind == kind)
            and (since is None or n.received_at >= since)
        ]

    def clear(self, *, receiver: str | None = None) -> int:
        """Delete every notification (or those of ``receiver``); return how many were deleted."""
        with self._lock:
            before = len(self._items)
            self._append({"clear": True, "receiver": receiver, "up_to": self._next_id - 1})
            self._items = [
                n for n in self._items if receiver is not None and n.receiver != receiver
            ]
            return before - len(self._items)

    def counts(self) -> dict[tuple[str, str], int]:
        """How many stored notifications each (receiver, kind) has."""
        out: dict[tuple[str, str], int] = {}
        with self._lock:
            for n in self._items:
                out[(n.receiver, n.kind)] = out.get((n.receiver, n.kind), 0) + 1
        return out

    def close(self) -> None:
        """Close the backing file."""
        with self._lock:
            self._file.close()
