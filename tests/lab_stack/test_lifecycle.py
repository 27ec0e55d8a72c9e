"""Lifecycle of the native stack with real processes: idempotent up, restart, down, ports."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time

import httpx
import pytest

import lab_stack
from lab_stack.components import SPECS
from lab_stack.errors import BinaryNotFound, NotRunning
from lab_stack.settings import Settings
from tests.lab_stack.helpers import (
    eventually,
    is_loopback,
    listening_addresses,
    process_group_members,
    stack_pids,
)

pytestmark = pytest.mark.slow


def test_up_up_down_up_is_idempotent(fresh_settings: Settings) -> None:
    """A second up starts nothing new; down stops everything; up again starts it all afresh."""
    first = lab_stack.up(settings=fresh_settings, free_ports=True)
    pids = stack_pids(fresh_settings)
    assert set(pids) == set(first.components)
    assert all(row.state == "ready" for row in first.status())

    events: list[tuple[str, str]] = []
    second = lab_stack.up(
        settings=fresh_settings, free_ports=True, on_event=lambda n, w, s: events.append((n, w))
    )
    assert stack_pids(fresh_settings) == pids, "a running component was restarted"
    assert {what for _, what in events} == {"running"}
    assert second.urls() == first.urls()

    stopped = lab_stack.down(settings=fresh_settings)
    assert set(stopped) == set(pids)
    with pytest.raises(NotRunning, match="lab up"):
        lab_stack.connect(settings=fresh_settings)

    third = lab_stack.up(settings=fresh_settings, free_ports=True)
    assert all(row.state == "ready" for row in third.status())
    assert set(stack_pids(fresh_settings).values()).isdisjoint(pids.values())


def test_killed_component_is_restarted_and_keeps_its_samples(fresh_settings: Settings) -> None:
    """kill -9 of Prometheus, then up: it is restarted on the same port with its stored samples."""
    stack = lab_stack.up(settings=fresh_settings, free_ports=True)
    prometheus = stack.url("prometheus")
    # Let it scrape itself a few times and note a sample time.
    eventually(
        lambda: httpx.get(
            f"{prometheus}/api/v1/query", params={"query": "count_over_time(up[1m]) > 3"}
        ).json()["data"]["result"],
        what="a few scrapes of `up`",
    )
    before = time.time()
    old_pid = stack_pids(fresh_settings)["prometheus"]
    os.kill(old_pid, signal.SIGKILL)
    eventually(
        lambda: any(r.name == "prometheus" and r.state == "stopped" for r in stack.status()),
        what="the death",
    )

    restarted = lab_stack.up(settings=fresh_settings, free_ports=True)
    assert restarted.url("prometheus") == prometheus
    assert stack_pids(fresh_settings)["prometheus"] != old_pid
    result = httpx.get(
        f"{prometheus}/api/v1/query",
        params={"query": 'count_over_time(up{job="prometheus"}[5m])', "time": before},
    ).json()["data"]["result"]
    assert result and float(result[0]["value"][1]) >= 3, result


def test_taken_port_falls_back_to_a_free_one(
    fresh_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When Prometheus's usual port is taken, it starts on another and the state records that one."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        spec = SPECS["prometheus"]
        monkeypatch.setitem(
            SPECS,
            "prometheus",
            dataclasses.replace(spec, ports=(dataclasses.replace(spec.ports[0], default=taken),)),
        )
        stack = lab_stack.up(settings=fresh_settings, components=["prometheus"])
        url = stack.url("prometheus")
        assert not url.endswith(f":{taken}")
        assert httpx.get(f"{url}/-/ready").status_code == 200
        assert lab_stack.connect(settings=fresh_settings).url("prometheus") == url


def test_nothing_listens_beyond_loopback_and_down_leaves_no_process(
    fresh_settings: Settings,
) -> None:
    """Every listening socket of the stack is on 127.0.0.1; after down no process of it remains."""
    lab_stack.up(settings=fresh_settings, free_ports=True)
    pids = stack_pids(fresh_settings)
    pgids = {os.getpgid(pid) for pid in pids.values()}
    members = {p.pid for p in process_group_members(pgids)}
    assert set(pids.values()) <= members
    sockets = listening_addresses(members)
    assert {pid for pid, _, _ in sockets} >= set(pids.values()), "a component opened no socket?"
    strays = [(pid, ip, port) for pid, ip, port in sockets if not is_loopback(ip)]
    assert not strays, f"listening beyond loopback: {strays}"

    lab_stack.down(settings=fresh_settings)
    assert process_group_members(pgids) == []
    assert not fresh_settings.state_file.exists()


def test_missing_binary_is_named_with_the_package_to_install(
    fresh_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Prometheus off PATH, up fails before starting anything and says what to install."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BinaryNotFound, match=r"apt-get install prometheus"):
        lab_stack.up(settings=fresh_settings, components=["prometheus"])
    assert not fresh_settings.state_file.exists()
