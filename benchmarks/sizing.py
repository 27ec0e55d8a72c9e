"""Sizing for a class: what one student's stack and one graded submission cost, and what a class
of N needs on Kubernetes (the README's sizing table).

Measured, not guessed, in one run on this machine:

- the stack laid out as in a pod (one process per component, the containers' commands and
  configs) and, for comparison, as ``lab up`` runs it natively, each started in a temporary
  home; their start-up seconds;
- at rest: RSS summed over the stack's processes, and its CPU (cores) over a window;
- while grading: each assignment's solution graded once with ``python -m graders KEY --json -``
  in a subprocess (every key ``graders.grader_keys()`` lists: the capstone and the knowledge
  check appear when they exist), sampling the stack and the grading process tree (its kernel and
  the services the notebook starts): peak RSS, mean cores, wall seconds;
- derived for ``--class-size`` submissions at ``--parallelism`` pods: pods, cores, memory and wall
  time of one assignment's grading Job, and of a JupyterHub with every student's stack at rest.

Run: ``.venv/bin/python benchmarks/sizing.py [--class-size 1000] [--parallelism 50]
[--rest 20] [--keys 01 02 ...]``. Figures depend on the machine's load: the load average is
printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

import lab_stack
from graders import exercise, grader_keys
from graders.release import venv_env
from lab_stack.errors import LabError
from lab_stack.settings import PROJECT_ROOT, Settings

MB = 1024 * 1024


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class Sampler:
    """Samples RSS and CPU of process trees in a thread: peak and mean RSS, CPU seconds used.

    CPU is summed per PID over the last value seen, so processes that exit between two samples
    (a kernel, a notebook's services) still count up to their last sample.
    """

    def __init__(self, roots: list[psutil.Process], interval: float = 0.25) -> None:
        self.roots = roots
        self.interval = interval
        self.rss: list[int] = []
        self._cpu: dict[tuple[int, float], float] = {}
        self._start_cpu: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        total = 0
        for root in self.roots:
            for process in _tree(root):
                try:
                    with process.oneshot():
                        key = (process.pid, process.create_time())
                        total += process.memory_info().rss
                        times = process.cpu_times()
                        self._cpu[key] = times.user + times.system
                except psutil.Error:
                    continue
        self.rss.append(total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._sample()
        self._start_cpu = dict(self._cpu)
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = time.monotonic() - self.started

    @property
    def cpu_seconds(self) -> float:
        return sum(v - self._start_cpu.get(k, 0.0) for k, v in self._cpu.items())

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds else 0.0

    @property
    def peak_mb(self) -> float:
        return max(self.rss) / MB if self.rss else 0.0

    @property
    def mean_mb(self) -> float:
        return statistics.fmean(self.rss) / MB if self.rss else 0.0


@dataclass
class Graded:
    key: str
    seconds: float
    score: float
    max_score: float
    stack: Sampler
    grader: Sampler
    error: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def _stack_roots(stack: lab_stack.Stack) -> dict[str, psutil.Process]:
    """The stack's processes, named by the components each runs (several share a host process)."""
    by_pid: dict[int, list[str]] = {}
    for name, record in stack.state.components.items():
        if record.pid:
            by_pid.setdefault(record.pid, []).append(name)
    return {"+".join(names): psutil.Process(pid) for pid, names in by_pid.items()}


@contextlib.contextmanager
def _one_process_per_component(enabled: bool) -> Iterator[None]:
    """Start each embedded component as its own process, as each is its own container in a pod
    (``lab up`` may serve them from one shared host process instead)."""
    from lab_stack.native import NativeBackend

    original = getattr(NativeBackend, "hosted", None)
    if not enabled or original is None:
        yield
        return
    NativeBackend.hosted = lambda self, spec: False  # type: ignore[method-assign]
    try:
        yield
    finally:
        NativeBackend.hosted = original  # type: ignore[method-assign]


@dataclass
class AtRest:
    layout: str
    start_seconds: float
    whole: Sampler
    parts: dict[str, Sampler]


def _at_rest(layout: str, settings: Settings, seconds: float, *, pod: bool) -> AtRest:
    """Start the stack in ``layout``, let it settle, sample it at rest, stop it."""
    with _one_process_per_component(pod):
        t0 = time.monotonic()
        stack = lab_stack.up(settings=settings, free_ports=True)
        started = time.monotonic() - t0
    try:
        roots = _stack_roots(stack)
        time.sleep(5)  # past start-up work (first scrapes, WAL creation)
        parts = {n: Sampler([p]) for n, p in roots.items()}
        with Sampler(list(roots.values())) as whole:
            for sampler in parts.values():
                sampler.__enter__()
            time.sleep(seconds)
            for sampler in parts.values():
                sampler.__exit__()
    except BaseException:
        lab_stack.down(settings=settings)
        raise
    return AtRest(layout, started, whole, parts)


def _grade(key: str, settings: Settings, stack_roots: list[psutil.Process]) -> Graded:
    ex = exercise(key)
    notebook = ex.solution_dir(PROJECT_ROOT) / ex.notebook
    env = {**venv_env(), "LAB_HOME": str(settings.home), "LAB_BACKEND": "native"}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "graders", key, "--notebook", str(notebook), "--json", "-"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    grader_root = psutil.Process(process.pid)
    with Sampler(stack_roots) as stack_sample, Sampler([grader_root]) as grader_sample:
        out, err = process.communicate(timeout=1800)
    seconds = time.monotonic() - started
    try:
        report = json.loads(out)
        return Graded(
            key, seconds, report["score"], report["max_score"], stack_sample, grader_sample
        )
    except (ValueError, KeyError):
        tail = (err or out).strip().splitlines()[-3:]
        return Graded(key, seconds, 0, 0, stack_sample, grader_sample, error=" | ".join(tail))


def _fmt_gib(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--class-size", type=int, default=1000)
    parser.add_argument("--parallelism", type=int, default=50)
    parser.add_argument("--rest", type=float, default=20.0, help="seconds of the at-rest window")
    parser.add_argument("--keys", nargs="*", default=None, help="assignments (default: all)")
    args = parser.parse_args(argv)
    keys = args.keys or grader_keys()

    with tempfile.TemporaryDirectory(prefix="bench-sizing-") as tmp:
        settings = Settings.from_env().with_(home=Path(tmp) / "pod", backend="native")
        pod = _at_rest("as in a pod", settings, args.rest, pod=True)
        try:
            roots = list(_stack_roots(lab_stack.connect(settings=settings)).values())
            graded = [_grade(key, settings, roots) for key in keys]
        finally:
            lab_stack.down(settings=settings)
        # For comparison: `lab up` as a student runs it (may share one host process).
        shared = Settings.from_env().with_(home=Path(tmp) / "shared", backend="native")
        layouts = [pod]
        try:
            layouts.append(_at_rest("lab up (native)", shared, args.rest, pod=False))
        except LabError as exc:
            print(f"(no comparison with `lab up`: {str(exc).splitlines()[0]})")
        finally:
            lab_stack.down(settings=shared)
    rest, start_seconds = pod.whole, pod.start_seconds

    load = os.getloadavg()
    cpus = os.cpu_count() or 1
    print(
        f"machine: {cpus} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(1/5/15 min) after measuring"
    )
    for layout in layouts:
        print(f"\nStack at rest, {layout.layout}: ready {layout.start_seconds:.1f} s after start")
        print(f"{'process (components)':40} {'RSS MB':>8} {'cores':>7}")
        for name, sampler in layout.parts.items():
            print(f"{name:40} {sampler.mean_mb:8.0f} {sampler.cores:7.3f}")
        print(f"{'whole stack':40} {layout.whole.mean_mb:8.0f} {layout.whole.cores:7.3f}")
    print()

    print("Grading one submission (the solution), per assignment")
    header = (
        f"{'assignment':10} {'score':>9} {'seconds':>8} {'stack MB':>9} {'stack cores':>11} "
        f"{'grader MB':>10} {'grader cores':>12} {'pod MB':>7} {'pod cores':>9}"
    )
    print(header)
    ok = [g for g in graded if not g.error]
    for g in graded:
        if g.error:
            print(f"{g.key:10} failed to grade: {g.error}")
            continue
        pod_mb = g.stack.peak_mb + g.grader.peak_mb
        pod_cores = g.stack.cores + g.grader.cores
        print(
            f"{g.key:10} {f'{g.score:g}/{g.max_score:g}':>9} {g.seconds:8.1f} {g.stack.peak_mb:9.0f} "
            f"{g.stack.cores:11.2f} {g.grader.peak_mb:10.0f} {g.grader.cores:12.2f} "
            f"{pod_mb:7.0f} {pod_cores:9.2f}"
        )
    if not ok:
        print("nothing graded; no class figures")
        return

    n, p = args.class_size, args.parallelism
    waves = math.ceil(n / p)
    pod_mb = max(g.stack.peak_mb + g.grader.peak_mb for g in ok)
    pod_cores = max(g.stack.cores + g.grader.cores for g in ok)
    print(
        f"\nA class of {n}: grading Job per assignment, parallelism {p} "
        f"({waves} waves; each pod pays the stack start-up, {start_seconds:.1f} s here)"
    )
    print(
        f"{'assignment':10} {'pods':>6} {'cores':>7} {'memory':>9} {'wall minutes':>13} {'core-hours':>11}"
    )
    total_minutes = 0.0
    for g in ok:
        per_pod = g.seconds + start_seconds
        minutes = waves * per_pod / 60
        total_minutes += minutes
        cores = p * (g.stack.cores + g.grader.cores)
        memory = p * (g.stack.peak_mb + g.grader.peak_mb)
        core_hours = n * per_pod * (g.stack.cores + g.grader.cores) / 3600
        print(
            f"{g.key:10} {n:6d} {cores:7.1f} {_fmt_gib(memory):>9} {minutes:13.1f} {core_hours:11.1f}"
        )
    print(
        f"{'all':10} {n * len(ok):6d} {p * pod_cores:7.1f} {_fmt_gib(p * pod_mb):>9} "
        f"{total_minutes:13.1f} {'':>11}  (cores, memory: the largest pod x {p})"
    )
    print(
        f"\nJupyterHub with all {n} students' stacks up at rest: "
        f"{n * rest.cores:.1f} cores and {_fmt_gib(n * rest.mean_mb)} for the stacks alone "
        f"({rest.cores:.3f} cores, {rest.mean_mb:.0f} MB per student), plus each student's notebook."
    )


if __name__ == "__main__":
    main()
