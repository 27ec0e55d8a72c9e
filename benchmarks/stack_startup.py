"""Stack start-up: cold start to all-ready and memory, native and container backends side by side.

Prints a table:
- native: the whole stack from cold to all-ready, then each component alone, the ratio of the
  first to the slowest of the second (target <= 1.5), and RSS per component and in total (target
  <= 400 MB, measured after the stack has run a few seconds);
- docker (when an engine answers): cold start to all-ready with images already built, and the
  one-time image build with `--build` (debootstrap base included; several minutes).

Usage: python benchmarks/stack_startup.py [--rounds N] [--build]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

import lab_stack
import lab_stack.stack  # imported here, so the first timed start does not pay the client's imports
from lab_stack.components import component_names
from lab_stack.settings import Settings


def _settings(backend: str) -> Settings:
    return Settings.from_env().with_(
        home=Path(tempfile.mkdtemp(prefix="bench-lab-")), backend=backend
    )


def timed_up(backend: str, components: list[str] | None = None) -> tuple[float, Settings]:
    settings = _settings(backend)
    started = time.perf_counter()
    try:
        lab_stack.up(settings=settings, components=components, free_ports=True)
    except BaseException:
        lab_stack.down(settings=settings)  # leave nothing running behind a failed start
        raise
    return time.perf_counter() - started, settings


def group_rss(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, in bytes."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in processes:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def native(rounds: int) -> float:
    names = list(component_names())
    whole: list[float] = []
    alone_samples: dict[str, list[float]] = {name: [] for name in names}
    rss: dict[int, int] = {}
    owners: dict[str, int] = {}
    # Whole-stack and one-component starts alternate, so that machine noise hits both alike.
    for _ in range(rounds):
        seconds, settings = timed_up("native")
        whole.append(seconds)
        time.sleep(5)  # let every component settle (first scrapes, caches)
        stack = lab_stack.connect(settings=settings)
        # Components sharing a process (the embedded host) are counted once.
        owners = {n: c.pid or 0 for n, c in stack.state.components.items()}
        rss = {pid: group_rss(pid) for pid in set(owners.values())}
        lab_stack.down(settings=settings)
        for name in names:
            seconds, settings = timed_up("native", [name])
            alone_samples[name].append(seconds)
            lab_stack.down(settings=settings)
    alone = {name: statistics.median(samples) for name, samples in alone_samples.items()}
    slowest = max(alone, key=lambda n: alone[n])
    median_whole = statistics.median(whole)
    print("\n## native backend (median of", rounds, "rounds)\n")
    print(f"| {'component':<16} | {'alone: cold start (s)':>22} | {'RSS in full stack (MB)':>23} |")
    print(f"|{'-' * 18}|{'-' * 24}|{'-' * 25}|")
    first_of: dict[int, str] = {}
    for name in names:
        pid = owners.get(name, 0)
        if pid in first_of:
            memory = f"(in {first_of[pid]}'s process)"
        else:
            first_of[pid] = name
            memory = f"{rss.get(pid, 0) / 2**20:.1f}"
        print(f"| {name:<16} | {alone[name]:>22.2f} | {memory:>23} |")
    total = sum(rss.values()) / 2**20
    print(f"| {'WHOLE STACK':<16} | {median_whole:>22.2f} | {total:>23.1f} |")
    ratio = median_whole / alone[slowest]
    print(f"\nwhole stack / slowest component alone ({slowest}): {ratio:.2f} (target <= 1.5)")
    print(f"total RSS: {total:.0f} MB (target <= 400 MB)")
    return ratio


def docker(rounds: int, build: bool) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.conftest_helpers import docker_reason

    probe = _settings("docker")
    reason = docker_reason(probe)
    if reason:
        print(f"\n## docker backend: not measured ({reason})")
        return
    if build:
        from lab_stack.images import build_all

        started = time.perf_counter()
        results = build_all(probe, force=True)
        build_seconds = time.perf_counter() - started
    samples = []
    for _ in range(rounds):
        seconds, settings = timed_up("docker")
        samples.append(seconds)
        lab_stack.down(settings=settings)
    native_samples = []
    for _ in range(rounds):
        seconds, settings = timed_up("native")
        native_samples.append(seconds)
        lab_stack.down(settings=settings)
    print("\n## container backend vs native, same run (median of", rounds, "rounds)\n")
    print(f"| {'what':<44} | {'seconds':>8} |")
    print(f"|{'-' * 46}|{'-' * 10}|")
    print(
        f"| {'native: cold start to all-ready':<44} | {statistics.median(native_samples):>8.2f} |"
    )
    print(
        f"| {'containers: cold start to all-ready (built)':<44} | {statistics.median(samples):>8.2f} |"
    )
    if build:
        for r in results:
            print(f"| {'build ' + r.image:<44} | {r.seconds:>8.1f} |")
        print(f"| {'one-time image build, all (forced)':<44} | {build_seconds:>8.1f} |")
    print(
        f"\ncontainers / native: {statistics.median(samples) / statistics.median(native_samples):.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--build", action="store_true", help="also time a forced rebuild of every image"
    )
    parser.add_argument("--skip-docker", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    ratio = native(args.rounds)
    if not args.skip_docker:
        docker(args.rounds, args.build)
    # Last line, the same every run, for comparing runs: the native cold-start ratio.
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
