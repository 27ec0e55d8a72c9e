"""Small helpers shared by the lab-stack tests (polling, process and socket inspection)."""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable
from typing import TypeVar

import psutil

from lab_stack.settings import Settings
from lab_stack.state import load_state

T = TypeVar("T")


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 15.0, interval: float = 0.2, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


def stack_pids(settings: Settings) -> dict[str, int]:
    """PIDs of the stack's processes by component, from its state file."""
    state = load_state(settings.state_file)
    assert state is not None, "no state file"
    return {name: c.pid for name, c in state.components.items() if c.pid}


def process_group_members(pgids: set[int]) -> list[psutil.Process]:
    """Every live (non-zombie) process in one of ``pgids``."""
    members = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.pid) in pgids and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def listening_addresses(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every listening TCP socket owned by ``pids``."""
    found = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            found.append((conn.pid, conn.laddr.ip, conn.laddr.port))
    return found


def is_loopback(ip: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.0.0.1``, as gRPC binds)."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
