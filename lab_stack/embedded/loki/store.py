"""The embedded Loki's in-memory log store, made durable by a :class:`SegmentLog`.

Streams are keyed by their label set. Each stream keeps sealed chunks of entries sorted by
timestamp: a numpy ``int64`` array of nanosecond timestamps, the lines joined into one string with
their start offsets (cheap to hold, and fast to search with ``str.find`` / ``re.finditer``), and
sparse structured metadata. New entries go to a small sorted head that is sealed when full; a
query sees the head through a cached frozen chunk. Chunks of one stream may overlap in time
(out-of-order writes); every query treats them independently and merges.

Example:
    >>> store = LokiStore()
    >>> store.ingest([({"app": "api"}, [(1_000, "hello", None)])])
    1
    >>> [s.labels for s in store.select([])]
    [{'app': 'api'}]
"""

from __future__ import annotations

import bisect
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lab_stack.embedded.segments import SegmentLog

from .logql import Matcher

__all__ = ["Chunk", "Entry", "LokiStore", "Stream", "labels_key"]

#: One pushed entry: (timestamp in ns, line, structured metadata or None).
Entry = tuple[int, str, dict[str, str] | None]
I64 = npt.NDArray[np.int64]

HEAD_MAX = 16384


def labels_key(labels: dict[str, str]) -> str:
    """The canonical Prometheus text form of a label set, sorted by name."""
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items()))
    return "{" + inner + "}"


@dataclass
class Chunk:
    """An immutable, time-sorted run of entries of one stream."""

    ts: I64
    text: str  # lines joined, each followed by "\n"
    offsets: I64  # len(ts) + 1 start offsets into text
    sm: dict[int, dict[str, str]]
    multiline: bool  # some line contains "\n" itself
    _blen: I64 | None = None

    @classmethod
    def build(cls, ts: Sequence[int], lines: Sequence[str], sm: dict[int, dict[str, str]]) -> Chunk:
        """Freeze sorted parallel lists into a chunk."""
        text = "\n".join(lines) + "\n" if lines else ""
        lengths = np.fromiter((len(x) + 1 for x in lines), dtype=np.int64, count=len(lines))
        offsets = np.zeros(len(lines) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        multiline = text.count("\n") != len(lines)
        return cls(np.asarray(ts, dtype=np.int64), text, offsets, dict(sm), multiline)

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def min_ts(self) -> int:
        """Oldest timestamp in the chunk."""
        return int(self.ts[0])

    @property
    def max_ts(self) -> int:
        """Newest timestamp in the chunk."""
        return int(self.ts[-1])

    def line(self, i: int) -> str:
        """The i-th line."""
        return self.text[int(self.offsets[i]) : int(self.offsets[i + 1]) - 1]

    def lines(self, lo: int, hi: int) -> list[str]:
        """Lines ``lo`` (inclusive) to ``hi`` (exclusive)."""
        if lo >= hi:
            return []
        if not self.multiline:
            return self.text[int(self.offsets[lo]) : int(self.offsets[hi]) - 1].split("\n")
        return [self.line(i) for i in range(lo, hi)]

    def byte_lengths(self) -> I64:
        """UTF-8 length of every line."""
        if self._blen is None:
            if self.text.isascii():
                self._blen = np.diff(self.offsets) - 1
            else:
                self._blen = np.fromiter(
                    (len(x.encode("utf-8", "surrogatepass")) for x in self.lines(0, len(self))),
                    dtype=np.int64,
                    count=len(self),
                )
        return self._blen

    def window(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """Index range of entries with ``start_ns <= ts < end_ns``."""
        lo = int(np.searchsorted(self.ts, start_ns, side="left"))
        hi = int(np.searchsorted(self.ts, end_ns, side="left"))
        return lo, hi

    def find(self, needle: str, lo: int, hi: int) -> I64:
        """Indexes in ``[lo, hi)`` of lines containing ``needle`` (sorted, unique)."""
        if lo >= hi:
            return np.empty(0, dtype=np.int64)
        if needle == "":
            return np.arange(lo, hi, dtype=np.int64)
        start, end = int(self.offsets[lo]), int(self.offsets[hi])
        text = self.text
        if "\n" in needle:
            return np.fromiter((i for i in range(lo, hi) if needle in self.line(i)), dtype=np.int64)
        positions: list[int] = []
        append = positions.append
        find = text.find
        offsets = self.offsets
        pos = find(needle, start, end)
        while pos >= 0:
            append(pos)
            # Skip to the next line: one hit per line is enough.
            nxt = text.find("\n", pos + len(needle) - 1, end)
            if nxt < 0:
                break
            pos = find(needle, nxt + 1, end)
        if not positions:
            return np.empty(0, dtype=np.int64)
        idx = np.searchsorted(offsets, np.asarray(positions, dtype=np.int64), side="right") - 1
        return np.unique(idx)

    def find_regex(self, regex: re.Pattern[str], lo: int, hi: int) -> I64 | None:
        """Indexes in ``[lo, hi)`` of lines ``regex`` (compiled with MULTILINE) finds a match in.

        Searches the joined text; returns None when a match crossed a line boundary, in which
        case the caller must test line by line.
        """
        if lo >= hi:
            return np.empty(0, dtype=np.int64)
        if self.multiline:
            return None
        start, end = int(self.offsets[lo]), int(self.offsets[hi])
        text = self.text
        positions: list[int] = []
        search = regex.search
        m = search(text, start, end)
        while m is not None:
            a, b = m.span()
            if "\n" in text[a:b]:
                return None
            positions.append(a)
            nxt = text.find("\n", b if b > a else a, end)
            if nxt < 0:
                break
            m = search(text, nxt + 1, end)
        if not positions:
            return np.empty(0, dtype=np.int64)
        idx = np.searchsorted(self.offsets, np.asarray(positions, dtype=np.int64), side="right")
        return np.unique(idx - 1)


@dataclass
class Stream:
    """One label set's entries: sealed chunks plus a sorted head."""

    labels: dict[str, str]
    key: str
    chunks: list[Chunk] = field(default_factory=list)
    head_ts: list[int] = field(default_factory=list)
    head_lines: list[str] = field(default_factory=list)
    head_sm: dict[int, dict[str, str]] = field(default_factory=dict)
    _frozen: Chunk | None = None
    min_ts: int = 0
    max_ts: int = 0
    nbytes: int = 0

    def append(self, ts: int, line: str, sm: dict[str, str] | None) -> bool:
        """Add one entry; return False when it duplicates an entry of the head."""
        hts = self.head_ts
        if not hts or ts >= hts[-1]:
            if hts and ts == hts[-1] and self._dup(ts, line):
                return False
            hts.append(ts)
            self.head_lines.append(line)
            if sm:
                self.head_sm[len(hts) - 1] = sm
        else:
            if self._dup(ts, line):
                return False
            pos = bisect.bisect_right(hts, ts)
            hts.insert(pos, ts)
            self.head_lines.insert(pos, line)
            if self.head_sm:
                self.head_sm = {(i + 1 if i >= pos else i): v for i, v in self.head_sm.items()}
            if sm:
                self.head_sm[pos] = sm
        if self.nbytes == 0 and not self.chunks and len(hts) == 1:
            self.min_ts = self.max_ts = ts
        self.min_ts = min(self.min_ts, ts)
        self.max_ts = max(self.max_ts, ts)
        self.nbytes += len(line) + 16
        self._frozen = None
        if len(hts) >= HEAD_MAX:
            self.seal()
        return True

    def _dup(self, ts: int, line: str) -> bool:
        hts = self.head_ts
        lo = bisect.bisect_left(hts, ts)
        hi = bisect.bisect_right(hts, ts, lo)
        return any(self.head_lines[i] == line for i in range(lo, hi))

    def seal(self) -> None:
        """Turn the head into a sealed chunk."""
        if self.head_ts:
            self.chunks.append(Chunk.build(self.head_ts, self.head_lines, self.head_sm))
        self.head_ts, self.head_lines, self.head_sm = [], [], {}
        self._frozen = None

    def all_chunks(self) -> list[Chunk]:
        """Sealed chunks plus a frozen view of the head."""
        if not self.head_ts:
            return self.chunks
        if self._frozen is None:
            self._frozen = Chunk.build(self.head_ts, self.head_lines, self.head_sm)
        return [*self.chunks, self._frozen]

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        """Whether the stream may hold entries in ``[start_ns, end_ns]``."""
        return not (self.max_ts < start_ns or self.min_ts > end_ns) and self.nbytes > 0

    def drop_before(self, cutoff_ns: int) -> int:
        """Forget entries older than ``cutoff_ns``; return the bytes freed (approximate)."""
        freed = 0
        kept: list[Chunk] = []
        for c in self.chunks:
            if c.max_ts < cutoff_ns:
                freed += len(c.text) + 16 * len(c)
            elif c.min_ts < cutoff_ns:
                lo = int(np.searchsorted(c.ts, cutoff_ns, side="left"))
                lines = c.lines(lo, len(c))
                sm = {i - lo: v for i, v in c.sm.items() if i >= lo}
                freed += int(c.offsets[lo]) + 16 * lo
                kept.append(Chunk.build(c.ts[lo:].tolist(), lines, sm))
            else:
                kept.append(c)
        self.chunks = kept
        if self.head_ts and self.head_ts[0] < cutoff_ns:
            lo = bisect.bisect_left(self.head_ts, cutoff_ns)
            freed += sum(len(x) + 16 for x in self.head_lines[:lo])
            self.head_ts = self.head_ts[lo:]
            self.head_lines = self.head_lines[lo:]
            self.head_sm = {i - lo: v for i, v in self.head_sm.items() if i >= lo}
            self._frozen = None
        self.nbytes = max(0, self.nbytes - freed)
        mins = [c.min_ts for c in self.chunks] + self.head_ts[:1]
        if mins:
            self.min_ts = min(mins)
        else:
            self.nbytes = 0
        return freed


class LokiStore:
    """Streams in memory, every accepted batch appended to a segment log first."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        retention_s: float = 24 * 3600.0,
        retention_bytes: int = 512 * 1024 * 1024,
        fsync: bool = False,
    ) -> None:
        self.streams: dict[str, Stream] = {}
        self.retention_s = retention_s
        self.retention_bytes = retention_bytes
        self.log = SegmentLog(data_dir, fsync=fsync) if data_dir is not None else None
        self.nbytes = 0
        self.entries = 0

    def replay(self) -> int:
        """Reload what the segment log holds (skipping expired entries); return entries loaded."""
        if self.log is None:
            return 0
        cutoff = time.time_ns() - int(self.retention_s * 1e9)
        loaded = 0
        for record in self.log.replay():
            try:
                batch = json.loads(record)
            except ValueError:
                continue
            for labels, entries in batch:
                kept = [(e[0], e[1], e[2] if len(e) > 2 else None) for e in entries]
                loaded += self._add(labels, [e for e in kept if e[0] >= cutoff])
        return loaded

    def ingest(self, batch: Iterable[tuple[dict[str, str], Sequence[Entry]]]) -> int:
        """Persist then add ``(labels, entries)`` pairs; return how many entries were new."""
        items = [(labels, list(entries)) for labels, entries in batch if entries]
        if not items:
            return 0
        if self.log is not None:
            record = [
                [labels, [[ts, line, sm] if sm else [ts, line] for ts, line, sm in entries]]
                for labels, entries in items
            ]
            self.log.append(
                [json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()]
            )
        return sum(self._add(labels, entries) for labels, entries in items)

    def _add(self, labels: dict[str, str], entries: Sequence[Entry]) -> int:
        if not entries:
            return 0
        key = labels_key(labels)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = Stream(dict(labels), key)
        before = stream.nbytes
        added = 0
        for ts, line, sm in entries:
            added += stream.append(ts, line, sm)
        self.nbytes += stream.nbytes - before
        self.entries += added
        return added

    def select(self, matchers: Sequence[Matcher]) -> list[Stream]:
        """Streams whose labels satisfy every matcher."""
        return [
            s
            for s in self.streams.values()
            if s.nbytes > 0 and all(m.matches(s.labels.get(m.name, "")) for m in matchers)
        ]

    def enforce_retention(self, now_ns: int | None = None) -> None:
        """Drop entries past the age bound, then the oldest ones past the byte bound."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        cutoff = now_ns - int(self.retention_s * 1e9)
        self._drop_before(cutoff)
        if self.nbytes > self.retention_bytes:
            # Drop the oldest chunks first, across streams, until the bound holds.
            bounds = sorted(
                (c.max_ts for s in self.streams.values() for c in s.chunks), reverse=False
            )
            for ts in bounds:
                if self.nbytes <= self.retention_bytes:
                    break
                self._drop_before(ts + 1)
            if self.nbytes > self.retention_bytes:
                for s in self.streams.values():
                    s.seal()
                for ts in sorted(c.max_ts for s in self.streams.values() for c in s.chunks):
                    if self.nbytes <= self.retention_bytes:
                        break
                    self._drop_before(ts + 1)
        if self.log is not None:
            self.log.enforce_retention(self.retention_s, self.retention_bytes)

    def _drop_before(self, cutoff: int) -> None:
        for key, s in list(self.streams.items()):
            if s.min_ts < cutoff:
                self.nbytes -= s.drop_before(cutoff)
                if s.nbytes == 0:
                    del self.streams[key]
        self.nbytes = max(self.nbytes, 0)
        self.entries = sum(len(c) for s in self.streams.values() for c in s.chunks) + sum(
            len(s.head_ts) for s in self.streams.values()
        )

    def close(self) -> None:
        """Close the segment log."""
        if self.log is not None:
            self.log.close()
