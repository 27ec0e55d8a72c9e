"""Tests of the shared segment log: framing, torn tails, roll-over, retention and reopening."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from lab_stack.embedded.segments import SegmentLog


def test_replay_returns_records_in_order(tmp_path: Path) -> None:
    """Records come back from replay exactly as appended, oldest first."""
    log = SegmentLog(tmp_path)
    log.append([b"a", b"", b"c" * 1000])
    log.append([b"d"])
    assert list(log.replay()) == [b"a", b"", b"c" * 1000, b"d"]
    log.close()


def test_reopen_sees_everything_and_appends_to_new_segment(tmp_path: Path) -> None:
    """A reopened log replays all earlier records and writes new ones after them."""
    with SegmentLog(tmp_path) as log:
        log.append([b"one"])
    with SegmentLog(tmp_path) as log:
        log.append([b"two"])
        assert list(log.replay()) == [b"one", b"two"]
        assert len(log.segment_paths()) == 2


def test_torn_tail_is_dropped_and_truncated(tmp_path: Path) -> None:
    """A half-written last record is skipped on replay and cut from the file."""
    with SegmentLog(tmp_path) as log:
        log.append([b"kept-1", b"kept-2"])
    seg = sorted(tmp_path.iterdir())[-1]
    good_size = seg.stat().st_size
    with open(seg, "ab") as fh:
        fh.write(b"\x10\x00\x00\x00\x01\x02")  # header promising 16 bytes, then nothing
    with SegmentLog(tmp_path) as log:
        assert list(log.replay()) == [b"kept-1", b"kept-2"]
    assert seg.stat().st_size == good_size


def test_corrupt_record_ends_the_segment(tmp_path: Path) -> None:
    """A record whose checksum does not match ends replay of its segment."""
    with SegmentLog(tmp_path) as log:
        log.append([b"first", b"second"])
    seg = sorted(tmp_path.iterdir())[-1]
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    with SegmentLog(tmp_path) as log:
        assert list(log.replay()) == [b"first"]


def test_rolls_over_at_segment_bytes(tmp_path: Path) -> None:
    """Appends start a new segment file once the current one reaches segment_bytes."""
    with SegmentLog(tmp_path, segment_bytes=100) as log:
        for i in range(10):
            log.append([bytes([i]) * 60])
        assert len(log.segment_paths()) == 10
        assert [r[0] for r in log.replay()] == list(range(10))


def test_retention_by_bytes_deletes_oldest_segments(tmp_path: Path) -> None:
    """Byte retention removes the oldest whole segments until the total fits."""
    with SegmentLog(tmp_path, segment_bytes=100) as log:
        for i in range(10):
            log.append([bytes([i]) * 92])  # 100 bytes with the header: one segment each
        assert log.enforce_retention(3600, 350) == 7
        assert [r[0] for r in log.replay()] == [7, 8, 9]
        assert log.total_bytes() == 300


def test_retention_by_age_uses_segment_mtime(tmp_path: Path) -> None:
    """Age retention removes segments whose mtime is older than max_age_s, the active one too."""
    with SegmentLog(tmp_path, segment_bytes=10) as log:
        log.append([b"old-old-old"])
        log.append([b"new-new-new"])
        old, new = log.segment_paths()
        past = time.time() - 1000
        os.utime(old, (past, past))
        assert log.enforce_retention(500, 1 << 30) == 1
        assert list(log.replay()) == [b"new-new-new"]
        os.utime(new, (past, past))
        assert log.enforce_retention(500, 1 << 30) == 1
        log.append([b"after"])
        assert list(log.replay()) == [b"after"]


def test_concurrent_appends_are_not_interleaved(tmp_path: Path) -> None:
    """Appends from several threads each land intact."""
    log = SegmentLog(tmp_path, segment_bytes=4096)

    def writer(tag: int) -> None:
        for i in range(200):
            log.append([f"{tag}:{i}".encode() * 3])

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = list(log.replay())
    log.close()
    assert len(records) == 800
    assert {r for r in records} == {f"{t}:{i}".encode() * 3 for t in range(4) for i in range(200)}


def test_kill_9_after_append_loses_nothing(tmp_path: Path) -> None:
    """Records appended by a process that is then SIGKILLed are all replayed."""
    script = (
        "import sys, time, pathlib\n"
        "from lab_stack.embedded.segments import SegmentLog\n"
        "log = SegmentLog(pathlib.Path(sys.argv[1]))\n"
        "for i in range(500): log.append([b'rec-%d' % i])\n"
        "print('done', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"done"
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    with SegmentLog(tmp_path) as log:
        assert list(log.replay()) == [b"rec-%d" % i for i in range(500)]
