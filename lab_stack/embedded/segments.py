"""An append-only, crash-tolerant record log in numbered segment files.

The embedded Loki and Tempo write every acknowledged batch here before they answer, and replay the
log when they start, so that a ``kill -9`` loses nothing that was acknowledged.

On disk a log is a directory of files named ``<20-digit number>.seg``. Each record is framed as
``<u32 length, little endian><u32 crc32 of the payload><payload>``. A torn or corrupt record (a
crash in the middle of a write) ends its segment: :meth:`SegmentLog.replay` truncates the file
there. Each process that opens a log writes to a fresh segment, so it never appends after a torn
tail.

Example:
    >>> import tempfile, pathlib
    >>> log = SegmentLog(pathlib.Path(tempfile.mkdtemp()))
    >>> log.append([b"one", b"two"])
    >>> list(log.replay())
    [b'one', b'two']
    >>> log.close()
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["SegmentLog"]

_HEADER = struct.Struct("<II")
_SUFFIX = ".seg"
#: Largest record accepted; a bigger length field in a header is treated as corruption.
_MAX_RECORD = 1 << 30


def _segment_number(path: Path) -> int | None:
    stem = path.name[: -len(_SUFFIX)]
    if not path.name.endswith(_SUFFIX) or not stem.isdigit():
        return None
    return int(stem)


class SegmentLog:
    """Append-only records in numbered segment files under ``directory``; thread-safe.

    Args:
        directory: where the segment files live (created when missing).
        segment_bytes: a new segment is started before an append would grow the current one
            past this size.
        fsync: also ``fsync`` each append, so that a machine crash (not only a process crash)
            loses nothing acknowledged. Without it, appends reach the OS before returning.
    """

    def __init__(
        self, directory: Path, *, segment_bytes: int = 32 * 2**20, fsync: bool = False
    ) -> None:
        if segment_bytes <= 0:
            raise ValueError(
                f"segment_bytes={segment_bytes} must be positive. Hint: use the default (32 MiB)."
            )
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._active: Path | None = None
        self._active_size = 0
        existing = self._segments()
        self._next_number = (_segment_number(existing[-1]) or 0) + 1 if existing else 1

    # -- helpers -------------------------------------------------------------------------------

    def _segments(self) -> list[Path]:
        numbered = [
            (n, p) for p in self.directory.iterdir() if (n := _segment_number(p)) is not None
        ]
        return [p for _, p in sorted(numbered)]

    def _open_new(self) -> None:
        self._close_active()
        path = self.directory / f"{self._next_number:020d}{_SUFFIX}"
        self._next_number += 1
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._active = path
        self._active_size = 0

    def _close_active(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._active = None
        self._active_size = 0

    # -- public API ----------------------------------------------------------------------------

    def append(self, records: Sequence[bytes]) -> None:
        """Write ``records`` and hand them to the OS (and disk, with ``fsync``) before returning."""
        if not records:
            return
        parts: list[bytes] = []
        for record in records:
            if len(record) > _MAX_RECORD:
                raise ValueError(
                    f"a record of {len(record)} bytes exceeds the limit of {_MAX_RECORD} bytes. "
                    "Hint: split the batch into smaller records."
                )
            parts.append(_HEADER.pack(len(record), zlib.crc32(record)))
            parts.append(record)
        blob = b"".join(parts)
        with self._lock:
            # Roll before a batch would push the segment past segment_bytes (a single batch
            # bigger than that still gets a segment of its own).
            full = self._active_size and self._active_size + len(blob) > self.segment_bytes
            if self._fd is None or full:
                self._open_new()
            assert self._fd is not None
            view = memoryview(blob)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(self._fd)
            self._active_size += len(blob)

    def replay(self) -> Iterator[bytes]:
        """Yield every intact record, oldest first; a torn or corrupt tail is truncated away."""
        with self._lock:
            paths = self._segments()
        for path in paths:
            with self._lock:
                try:
                    data = path.read_bytes()
                except FileNotFoundError:  # removed by retention meanwhile
                    continue
                good, records = self._scan(data)
                if good < len(data) and path != self._active:
                    with open(path, "r+b") as fh:
                        fh.truncate(good)
            yield from records

    @staticmethod
    def _scan(data: bytes) -> tuple[int, list[bytes]]:
        records: list[bytes] = []
        pos, size, hsize = 0, len(data), _HEADER.size
        view = memoryview(data)
        while pos + hsize <= size:
            length, crc = _HEADER.unpack_from(data, pos)
            end = pos + hsize + length
            if length > _MAX_RECORD or end > size:
                break
            payload = bytes(view[pos + hsize : end])
            if zlib.crc32(payload) != crc:
                break
            records.append(payload)
            pos = end
        return pos, records

    def enforce_retention(self, max_age_s: float, max_bytes: int) -> int:
        """Delete whole oldest segments older than ``max_age_s`` or beyond ``max_bytes`` in total.

        Returns:
            how many segments were deleted.
        """
        deleted = 0
        with self._lock:
            now = time.time()
            sized: list[tuple[Path, int, float]] = []
            for path in self._segments():
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                sized.append((path, st.st_size, st.st_mtime))
            total = sum(size for _, size, _ in sized)
            for index, (path, size, mtime) in enumerate(sized):
                too_old = now - mtime > max_age_s
                too_big = total > max_bytes and index < len(sized) - 1
                if not (too_old or too_big):
                    break
                if path == self._active:
                    self._close_active()
                path.unlink(missing_ok=True)
                total -= size
                deleted += 1
        return deleted

    def total_bytes(self) -> int:
        """Bytes on disk across all segments."""
        with self._lock:
            return sum(p.stat().st_size for p in self._segments())

    def segment_paths(self) -> list[Path]:
        """The segment files, oldest first."""
        with self._lock:
            return self._segments()

    def close(self) -> None:
        """Close the active segment; a later append opens a new one."""
        with self._lock:
            self._close_active()

    def __enter__(self) -> SegmentLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
