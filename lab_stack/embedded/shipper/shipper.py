"""The log shipper's engine: tail files, run the pipeline, batch, push to Loki, keep positions.

Delivery is at-least-once made exactly-once by bookkeeping: a line is read only once into a batch,
a batch is retried until Loki accepts it (or the retries run out), and the positions file moves
past a line only after the batch holding it was accepted. Files are followed by identity (device
and inode), not by name: a renamed file is read to its end while its successor at the old name is
read from the start; a file truncated in place (copytruncate) is read again from offset 0.

Example:
    >>> # shipper = Shipper(load_config(Path("promtail.yml")))
    >>> # asyncio.run(shipper.run())  # until shipper.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import glob
import json
import os
import time
from dataclasses import dataclass, field
from typing import BinaryIO

import httpx
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from lab_stack.embedded.shipper.config import ClientConfig, ShipperConfig, StaticConfig
from lab_stack.embedded.shipper.pipeline import Pipeline
from lab_stack.embedded.shipper.positions import Position, read_positions, write_positions

__all__ = ["Shipper", "ShipperMetrics"]

_log = structlog.get_logger("lab_stack.shipper")

FileKey = tuple[int, int]

#: How often files are read (seconds).
POLL_INTERVAL = 0.1
#: How often the globs are evaluated again (seconds).
DISCOVER_INTERVAL = 0.5
#: A file no longer named by its path is closed after being idle at its end this long (seconds).
DRAIN_GRACE = 2.0


class ShipperMetrics:
    """Promtail-named metrics of the shipper, on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.read_lines = Counter(
            "promtail_read_lines", "Lines read from files.", ["path"], registry=self.registry
        )
        self.read_bytes = Counter(
            "promtail_read_bytes", "Bytes read from files.", ["path"], registry=self.registry
        )
        self.sent_entries = Counter(
            "promtail_sent_entries", "Entries accepted by Loki.", ["host"], registry=self.registry
        )
        self.sent_bytes = Counter(
            "promtail_sent_bytes", "Line bytes accepted by Loki.", ["host"], registry=self.registry
        )
        self.dropped_entries = Counter(
            "promtail_dropped_entries",
            "Entries given up on (Loki refused them or retries ran out).",
            ["host", "reason"],
            registry=self.registry,
        )
        self.request_failures = Counter(
            "promtail_request_failures",
            "Push attempts that failed and will be retried.",
            ["host"],
            registry=self.registry,
        )
        self.files_active = Gauge(
            "promtail_files_active_total", "Files being tailed.", registry=self.registry
        )


@dataclass(slots=True)
class _Source:
    static: StaticConfig
    pipeline: Pipeline


@dataclass(slots=True)
class _File:
    key: FileKey
    path: str | None  # None: deleted while open
    fh: BinaryIO
    source: _Source
    read_offset: int
    committed: int
    label_path: str = ""  # the ``filename`` label: the path the file was found under
    generation: int = 0
    active: bool = True
    last_change: float = field(default_factory=time.monotonic)

    def position(self) -> Position | None:
        if self.path is None:
            return None
        return Position(self.path, self.committed, self.key[0], self.key[1])


@dataclass(slots=True)
class _Batch:
    streams: dict[tuple[tuple[str, str], ...], list[tuple[int, str]]] = field(default_factory=dict)
    marks: dict[FileKey, tuple[int, int]] = field(default_factory=dict)
    entries: int = 0
    size: int = 0
    started: float = 0.0

    def body(self) -> bytes:
        streams = [
            {"stream": dict(labels), "values": [[str(ts), line] for ts, line in values]}
            for labels, values in self.streams.items()
        ]
        return json.dumps({"streams": streams}, separators=(",", ":")).encode()


def _find_inode(directory: str, key: FileKey) -> str | None:
    try:
        with os.scandir(directory) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == key:
                    return entry.path
    except OSError:
        return None
    return None


class Shipper:
    """Tails the files of a :class:`ShipperConfig` and pushes their lines to its Loki clients."""

    def __init__(self, config: ShipperConfig, *, metrics: ShipperMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else ShipperMetrics()
        self._files: dict[FileKey, _File] = {}
        self._sources = [
            _Source(static, Pipeline(sc.pipeline_stages))
            for sc in config.scrape_configs
            for static in sc.static_configs
        ]
        self._batchsize = min(c.batchsize for c in config.clients)
        self._batchwait = min(c.batchwait for c in config.clients)
        self._batch = _Batch()
        self._stop = asyncio.Event()
        self._last_ts = 0
        self._last_discover = 0.0
        self.ready = False

    # ---------------------------------------------------------------- files

    def _open(self, path: str, source: _Source, offset: int, label_path: str = "") -> _File | None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - kept open while the file is tailed
            st = os.fstat(fh.fileno())
        except OSError as exc:
            _log.warning("cannot open file", path=path, error=str(exc))
            return None
        if offset > st.st_size:
            _log.info("file shorter than its position, reading from start", path=path)
            offset = 0
        tracked = _File(
            key=(st.st_dev, st.st_ino),
            path=path,
            fh=fh,
            source=source,
            read_offset=offset,
            committed=offset,
            label_path=label_path or path,
        )
        self._files[tracked.key] = tracked
        _log.info("tailing file", path=path, offset=offset)
        return tracked

    def _source_for(self, path: str) -> _Source | None:
        for source in self._sources:
            if fnmatch.fnmatch(path, source.static.path) or path in self._glob(source):
                return source
        return None

    @staticmethod
    def _glob(source: _Source) -> list[str]:
        paths = glob.glob(source.static.path, recursive=True)
        if source.static.exclude:
            paths = [p for p in paths if not fnmatch.fnmatch(p, source.static.exclude)]
        return sorted(p for p in paths if os.path.isfile(p))

    def _restore(self) -> None:
        """Reopen the files the positions file names, by identity, at their saved offsets."""
        saved = read_positions(self.config.positions_file)
        for pos in saved.values():
            path: str | None = pos.path
            if pos.inode is not None and pos.device is not None:
                key = (pos.device, pos.inode)
                try:
                    st = os.stat(pos.path)
                    same = (st.st_dev, st.st_ino) == key
                except OSError:
                    same = False
                if not same:
                    path = _find_inode(os.path.dirname(pos.path) or ".", key)
                    if path is None:
                        _log.info("positioned file is gone", path=pos.path)
                        continue
                    _log.info("positioned file was renamed", old=pos.path, new=path)
            if path is None:
                continue
            source = self._source_for(pos.path) or self._source_for(path)
            if source is None:
                continue
            tracked = self._open(path, source, pos.offset, label_path=pos.path)
            if tracked is not None and tracked.path != pos.path:
                tracked.active = False

    def _discover(self) -> None:
        named: dict[str, FileKey] = {}
        for source in self._sources:
            for path in self._glob(source):
                if path in named:
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                named[path] = key
                tracked = self._files.get(key)
                if tracked is None:
                    self._open(path, source, 0)
                elif tracked.path != path:
                    tracked.path = path
        # Files whose path no longer names them (rotated, deleted, out of the globs) drain.
        for tracked in self._files.values():
            if tracked.path is not None and named.get(tracked.path) == tracked.key:
                tracked.active = True
                continue
            if tracked.active:
                tracked.active = False
                tracked.last_change = time.monotonic()
                if tracked.path is not None:
                    new = _find_inode(os.path.dirname(tracked.path) or ".", tracked.key)
                    _log.info("file rotated or removed", path=tracked.path, now=new)
                    tracked.path = new
        self.metrics.files_active.set(len(self._files))

    def _close_drained(self) -> bool:
        now = time.monotonic()
        done = [
            f
            for f in self._files.values()
            if not f.active
            and f.committed == f.read_offset
            and now - f.last_change >= DRAIN_GRACE
            and f.key not in self._batch.marks
        ]
        for tracked in done:
            tracked.fh.close()
            del self._files[tracked.key]
            _log.info("stopped tailing file", path=tracked.path, offset=tracked.read_offset)
        return bool(done)

    # ---------------------------------------------------------------- reading

    def _timestamp(self) -> int:
        # Unique, increasing timestamps: Loki drops an entry equal in time and line to another.
        self._last_ts = max(time.time_ns(), self._last_ts + 1)
        return self._last_ts

    def _read(self, tracked: _File, budget: int) -> int:
        try:
            size = os.fstat(tracked.fh.fileno()).st_size
        except OSError:
            return 0
        if size < tracked.read_offset:
            _log.info(
                "file truncated, reading from start", path=tracked.path, was=tracked.read_offset
            )
            tracked.generation += 1
            tracked.read_offset = 0
            tracked.committed = 0
            tracked.last_change = time.monotonic()
        if size == tracked.read_offset:
            return 0
        limit = max(budget, 64 * 1024)
        while True:
            tracked.fh.seek(tracked.read_offset)
            data = tracked.fh.read(limit)
            cut = data.rfind(b"\n")
            if cut >= 0 or len(data) < limit or limit >= 64 * 1024 * 1024:
                break
            limit *= 2  # one line longer than the budget: read it whole
        if cut < 0:
            return 0  # only an incomplete last line: wait for its newline
        chunk = data[: cut + 1]
        labels = dict(tracked.source.static.labels)
        labels["filename"] = tracked.label_path
        offset = tracked.read_offset
        path_label = tracked.path or ""
        for raw in chunk.split(b"\n")[:-1]:
            offset += len(raw) + 1
            line = raw.decode("utf-8", "replace")
            if line.endswith("\r"):
                line = line[:-1]
            entry = tracked.source.pipeline.process(line, self._timestamp(), labels)
            self.metrics.read_lines.labels(path=path_label).inc()
            if entry is not None:
                if not self._batch.entries:
                    self._batch.started = time.monotonic()
                key = tuple(sorted(entry.labels.items()))
                self._batch.streams.setdefault(key, []).append((entry.timestamp_ns, entry.line))
                self._batch.entries += 1
                self._batch.size += len(entry.line)
            self._batch.marks[tracked.key] = (tracked.generation, offset)
        self.metrics.read_bytes.labels(path=path_label).inc(len(chunk))
        tracked.read_offset = offset
        tracked.last_change = time.monotonic()
        return len(chunk)

    def _read_all(self) -> None:
        for tracked in list(self._files.values()):
            budget = self._batchsize - self._batch.size
            if budget <= 0:
                return
            self._read(tracked, budget)

    # ---------------------------------------------------------------- pushing

    def _commit(self, batch: _Batch) -> None:
        for key, (generation, offset) in batch.marks.items():
            tracked = self._files.get(key)
            if tracked is not None and tracked.generation == generation:
                tracked.committed = max(tracked.committed, offset)
        self._save_positions()

    def _save_positions(self) -> None:
        positions = [p for f in self._files.values() if (p := f.position()) is not None]
        try:
            write_positions(self.config.positions_file, positions)
        except OSError as exc:
            _log.error(
                "cannot write positions", file=str(self.config.positions_file), error=str(exc)
            )

    async def _push_one(self, client: ClientConfig, http: httpx.AsyncClient, body: bytes) -> str:
        """One attempt: ``ok``, ``retry`` or ``drop``."""
        headers = {"Content-Type": "application/json", "User-Agent": "lab-stack-shipper/1"}
        if client.tenant_id:
            headers["X-Scope-OrgID"] = client.tenant_id
        try:
            response = await http.post(
                client.url, content=body, headers=headers, timeout=client.timeout
            )
        except httpx.HTTPError as exc:
            _log.warning("push failed", url=client.url, error=repr(exc))
            return "retry"
        if response.is_success:
            return "ok"
        reason = response.text[:300]
        if response.status_code == 429 or response.status_code >= 500:
            _log.warning("push failed", url=client.url, status=response.status_code, reason=reason)
            return "retry"
        _log.error(
            "push refused, dropping batch",
            url=client.url,
            status=response.status_code,
            reason=reason,
        )
        return "drop"

    async def _flush(self, http: httpx.AsyncClient, *, final: bool = False) -> bool:
        """Push the current batch to every client; return False when stopped before success."""
        batch, self._batch = self._batch, _Batch()
        if batch.entries == 0:
            if batch.marks:
                self._commit(batch)
            return True
        for client in self.config.clients:
            host = httpx.URL(client.url).host
            with_labels = batch
            if client.external_labels:
                with_labels = _Batch(
                    streams={
                        tuple(sorted({**dict(k), **client.external_labels}.items())): v
                        for k, v in batch.streams.items()
                    },
                    entries=batch.entries,
                )
            body = with_labels.body()
            attempt = 0
            while True:
                outcome = await self._push_one(client, http, body)
                if outcome == "ok":
                    self.metrics.sent_entries.labels(host=host).inc(batch.entries)
                    self.metrics.sent_bytes.labels(host=host).inc(batch.size)
                    break
                if outcome == "drop":
                    self.metrics.dropped_entries.labels(host=host, reason="refused").inc(
                        batch.entries
                    )
                    break
                self.metrics.request_failures.labels(host=host).inc()
                attempt += 1
                retries = client.backoff.max_retries
                if retries and attempt >= retries:
                    _log.error(
                        "retries exhausted, dropping batch", url=client.url, entries=batch.entries
                    )
                    self.metrics.dropped_entries.labels(host=host, reason="retries").inc(
                        batch.entries
                    )
                    break
                if final or self._stop.is_set():
                    # Not committed: these lines are read again after the restart.
                    return False
                delay = min(
                    client.backoff.min_period * 2 ** (attempt - 1), client.backoff.max_period
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
        self._commit(batch)
        _log.debug("pushed batch", entries=batch.entries, bytes=batch.size)
        return True

    # ---------------------------------------------------------------- running

    def stop(self) -> None:
        """Ask :meth:`run` to push what it holds (one attempt), save positions and return."""
        self._stop.set()

    async def run(self) -> None:
        """Tail and ship until :meth:`stop` is called."""
        self._restore()
        self._discover()
        self._last_discover = time.monotonic()
        self._save_positions()
        self.ready = True
        _log.info(
            "shipper running",
            files=len(self._files),
            positions=str(self.config.positions_file),
            clients=[c.url for c in self.config.clients],
        )
        async with httpx.AsyncClient() as http:
            while not self._stop.is_set():
                now = time.monotonic()
                if now - self._last_discover >= DISCOVER_INTERVAL:
                    self._discover()
                    self._last_discover = now
                self._read_all()
                due = self._batch.entries and (
                    self._batch.size >= self._batchsize
                    or time.monotonic() - self._batch.started >= self._batchwait
                )
                if due or (not self._batch.entries and self._batch.marks):
                    await self._flush(http)
                if self._close_drained():
                    self._save_positions()
                if self._batch.size < self._batchsize:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=POLL_INTERVAL)
            await self._flush(http, final=True)
        for tracked in self._files.values():
            tracked.fh.close()
        _log.info("shipper stopped")
