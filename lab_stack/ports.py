"""Loopback port helpers: is a port free, and which free port to use instead."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable
from pathlib import Path

from lab_stack.settings import HOST

__all__ = ["choose_port", "free_port", "port_is_free", "use_range"]

_random = random.SystemRandom()


def port_is_free(port: int, *, host: str = HOST) -> bool:
    """True when nothing listens on ``host:port`` and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so old TIME_WAIT connections do not keep them from a port;
        # without it here, a port a killed component just left would look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_range: tuple[int, int] | None = None


def use_range(low: int, high: int) -> None:
    """Pick free ports from ``[low, high)`` from now on in this process.

    Parallel test workers each take their own range, so two stacks starting at the same moment
    never choose the same port.
    """
    global _range
    if not 1024 <= low < high <= 65536:
        raise ValueError(f"bad port range {low}-{high}")
    _range = (low, high)


def free_port(*, host: str = HOST, avoid: Iterable[int] = ()) -> int:
    """A port free on ``host`` right now (not in ``avoid``).

    Chosen below the kernel's ephemeral range: a port from that range (what ``bind(0)`` gives) can
    be handed to an outgoing connection between our check and the server's own bind.
    """
    taken = set(avoid)
    low, high = _range or (10000, _ephemeral_range()[0])
    if high - low > 100:
        for _ in range(200):
            port = _random.randrange(low, high)
            if port not in taken and port_is_free(port, host=host):
                return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def choose_port(preferred: int, *, host: str = HOST, avoid: Iterable[int] = ()) -> int:
    """``preferred`` when it is free and not in ``avoid``, else a free port."""
    taken = set(avoid)
    if preferred and preferred not in taken and port_is_free(preferred, host=host):
        return preferred
    return free_port(host=host, avoid=taken)
