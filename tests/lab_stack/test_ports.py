"""Ports: a taken port falls back to a free one."""

from __future__ import annotations

import socket

from lab_stack.ports import choose_port, free_port, port_is_free


def test_taken_port_falls_back_to_a_free_one() -> None:
    """choose_port keeps a free preferred port and replaces a taken one."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert not port_is_free(taken)
        chosen = choose_port(taken)
        assert chosen != taken
        assert port_is_free(chosen)
    free = free_port()
    assert choose_port(free) == free
    assert choose_port(free, avoid={free}) != free
