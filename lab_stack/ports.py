"""Loopback port helpers: is a port free, and which free port to use instead."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from lab_stack.settings import HOST

__all__ = ["choose_port", "free_port", "port_is_free"]


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


def free_port(*, host: str = HOST, avoid: Iterable[int] = ()) -> int:
    """A port the OS says is free on ``host`` right now (not in ``avoid``)."""
    taken = set(avoid)
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
