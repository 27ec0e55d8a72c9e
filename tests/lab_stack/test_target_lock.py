"""Scrape targets registered at once from many places all arrive (file_sd writes are locked)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import lab_stack

JOB = "lock-probe"


def test_concurrent_registrations_and_removals_lose_nothing(stack: lab_stack.Stack) -> None:
    """Eight writers registering 25 targets each leave all 200; removing them all empties the job."""
    urls = [f"http://127.0.0.1:{20000 + i}/metrics" for i in range(200)]

    def register(chunk: list[str]) -> None:
        for url in chunk:
            stack.register_target(JOB, url, labels={"probe": "lock"})

    def unregister(chunk: list[str]) -> None:
        for url in chunk:
            stack.unregister_target(JOB, url)

    chunks = [urls[i::8] for i in range(8)]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(register, chunks))
        registered = {t for g in stack.targets()[JOB] for t in g["targets"]}
        assert registered == {u.removeprefix("http://").removesuffix("/metrics") for u in urls}
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(unregister, chunks))
        assert JOB not in stack.targets()
    finally:
        stack.unregister_target(JOB)
