"""The shipper against a real embedded Loki: exact counts across restarts, outages, rotations."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import httpx


def write_lines(path: Path, prefix: str, start: int, count: int) -> None:
    """Append ``count`` numbered lines to ``path``."""
    with path.open("a") as fh:
        for i in range(start, start + count):
            fh.write(f"{prefix} line {i:06d} " + "x" * 40 + "\n")


def expected(prefix: str, start: int, count: int) -> list[str]:
    return [f"{prefix} line {i:06d} " + "x" * 40 for i in range(start, start + count)]


def test_ships_complete_lines_only(loki, setup_factory) -> None:
    """Every complete line arrives once; a line without its newline waits for it."""
    s = setup_factory(loki.url, "complete")
    s.logs.mkdir(parents=True)
    log = s.logs / "app.log"
    write_lines(log, "a", 0, 300)
    with log.open("a") as fh:
        fh.write("half a li")
    shipper = s.start()
    lines = s.wait_for_count(300)
    assert sorted(lines) == sorted(expected("a", 0, 300))
    time.sleep(0.5)
    assert len(s.lines_in_loki()) == 300
    with log.open("a") as fh:
        fh.write("ne\n")
    assert "half a line" in s.wait_for_count(301)
    metrics = httpx.get(f"{shipper.url}/metrics", timeout=5).text
    assert "promtail_sent_entries_total" in metrics
    assert shipper.stop(signal.SIGTERM) == 0
    assert s.committed()[str(log)] == log.stat().st_size


def test_restart_mid_file_neither_loses_nor_duplicates(loki, setup_factory) -> None:
    """Stopping the shipper mid-file and restarting it after more writes ships each line once."""
    s = setup_factory(loki.url, "restart", batchsize=4096)
    s.logs.mkdir(parents=True)
    log = s.logs / "app.log"
    write_lines(log, "r", 0, 3000)
    shipper = s.start()
    deadline = time.monotonic() + 20
    while not s.committed().get(str(log)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert shipper.stop(signal.SIGTERM) == 0
    stopped_at = s.committed()[str(log)]
    assert 0 < stopped_at < log.stat().st_size  # really mid-file
    write_lines(log, "r", 3000, 500)
    s.start()
    lines = s.wait_for_count(3500, timeout=40)
    assert sorted(lines) == sorted(expected("r", 0, 3500))


def test_kill_9_loses_nothing(loki, setup_factory) -> None:
    """After kill -9 mid-file and a restart, every line is in Loki (at least once)."""
    s = setup_factory(loki.url, "kill9", batchsize=4096)
    s.logs.mkdir(parents=True)
    log = s.logs / "app.log"
    write_lines(log, "k", 0, 2000)
    shipper = s.start()
    deadline = time.monotonic() + 20
    while not s.committed().get(str(log)) and time.monotonic() < deadline:
        time.sleep(0.02)
    shipper.stop(signal.SIGKILL)
    s.start()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        got = set(s.lines_in_loki())
        if got >= set(expected("k", 0, 2000)):
            break
        time.sleep(0.2)
    assert set(s.lines_in_loki()) == set(expected("k", 0, 2000))


def test_loki_down_then_up(tmp_path: Path, launch_loki, setup_factory, port_factory) -> None:
    """Lines written while Loki is down are retried, committed only once accepted, and land once."""
    port = port_factory()
    loki_url = f"http://127.0.0.1:{port}"
    s = setup_factory(loki_url, "outage")
    s.logs.mkdir(parents=True)
    log = s.logs / "app.log"
    write_lines(log, "o", 0, 400)
    s.start()
    time.sleep(1.5)  # the shipper is retrying against a port where nothing listens
    assert s.committed().get(str(log), 0) == 0
    loki = launch_loki(tmp_path / "loki-data", port)
    s.wait_for_count(400, timeout=30)
    loki.stop(signal.SIGTERM)
    write_lines(log, "o", 400, 250)
    time.sleep(1.0)
    assert s.committed()[str(log)] < log.stat().st_size
    launch_loki(tmp_path / "loki-data", port)
    lines = s.wait_for_count(650, timeout=30)
    assert sorted(lines) == sorted(expected("o", 0, 650))


def test_rename_rotation_while_running_and_while_down(loki, setup_factory) -> None:
    """A renamed file is finished and its successor read from the start, shipper up or down."""
    s = setup_factory(loki.url, "rotate")
    s.logs.mkdir(parents=True)
    log = s.logs / "app.log"
    write_lines(log, "v", 0, 200)
    shipper = s.start()
    s.wait_for_count(200)
    # Rotation while running; the application writes a last burst to the renamed file.
    log.rename(s.logs / "app.log.1")
    write_lines(s.logs / "app.log.1", "v", 200, 50)
    write_lines(log, "v", 250, 100)
    s.wait_for_count(350)
    # Rotation while the shipper is down, with unshipped lines in the renamed file.
    assert shipper.stop(signal.SIGTERM) == 0
    write_lines(log, "v", 350, 70)
    os.replace(log, s.logs / "app.log.2")
    write_lines(log, "v", 420, 30)
    s.start()
    lines = s.wait_for_count(450)
    assert sorted(lines) == sorted(expected("v", 0, 450))


def test_copytruncate_rotation(loki, setup_factory) -> None:
    """A file copied and truncated in place is read again from its start, without duplicates."""
    s = setup_factory(loki.url, "copytrunc")
    s.logs.mkdir(parents=True)
    log = s.logs / "app.log"
    write_lines(log, "c", 0, 120)
    s.start()
    s.wait_for_count(120)
    shutil.copyfile(log, s.logs / "app.log.1")
    with log.open("r+") as fh:
        fh.truncate(0)
    time.sleep(0.5)
    write_lines(log, "c", 120, 30)
    lines = s.wait_for_count(150)
    assert sorted(lines) == sorted(expected("c", 0, 150))
