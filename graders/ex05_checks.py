"""Exercise 05 helpers: run the submission's ``drift.py`` / ``drift_job.py`` in a child process.

The student's modules are imported from the graded folder in a child interpreter (never in the
grader's own process, so two graded submissions cannot share a cached ``drift`` module, and a
hanging submission only costs its timeout). One child per graded folder, a :class:`Worker`, serves
every call of a grade: it imports pandas, SciPy and the submission once
(``graders/ex05_worker.py``), then answers one JSON request per line. A call that times out kills
the child; the next call starts a fresh one.

Example:
    >>> held_out_datasets(7)["clean"].drifted_features   # doctest: +SKIP
    []
    >>> quality_cases(7)["null_30"].issues                # doctest: +SKIP
    {'avg_amount_30d': ['missing']}
    >>> with Worker(folder) as w:                         # doctest: +SKIP
    ...     w.call("detect", 7, timeout=120.0)["ok"]
    True
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from graders.errors import GradingError
from graders.ex05_worker import (
    LARGE_N,
    QUALITY_FIELDS,
    REQUIRED_FIELDS,
    held_out_datasets,
    quality_cases,
)

__all__ = [
    "LARGE_N",
    "QUALITY_FIELDS",
    "REQUIRED_FIELDS",
    "Worker",
    "held_out_datasets",
    "quality_cases",
]

#: The child's script (run with ``-P``: see its docstring).
_SCRIPT = Path(__file__).with_name("ex05_worker.py")


class Worker:
    """A child interpreter serving ``detect`` / ``quality`` / ``job`` calls for one graded folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: IO[str] | None = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[str]:
        self._stderr = tempfile.TemporaryFile("w+", prefix="ex05-worker-")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-P", str(_SCRIPT), "serve", str(self.folder)],
            cwd=self.folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = proc.stdout

        def read() -> None:
            assert stdout is not None
            for line in stdout:
                lines.put(line)
            lines.put(None)  # the child exited

        threading.Thread(target=read, name="ex05-worker-reader", daemon=True).start()
        self._proc, self._lines = proc, lines
        return proc

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return " | ".join(self._stderr.read().strip().splitlines()[-3:])

    def call(self, command: str, *args: Any, timeout: float) -> dict[str, Any]:
        """Run one command in the child; ``ok`` is False (with ``error``) when it raised or hung."""
        proc = self._proc if self._proc is not None and self._proc.poll() is None else None
        if proc is None:
            self.close()
            proc = self._start()
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # when it died, the reader reports the exit below
            proc.stdin.write(json.dumps({"command": command, "args": list(args)}) + "\n")
            proc.stdin.flush()
        deadline = time.monotonic() + timeout
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.close(kill=True)
            return {"ok": False, "error": f"did not finish within {timeout:.0f} s"}
        if line is None:
            code = proc.wait()
            error = self._stderr_tail() or f"exit {code}"
            self.close()
            return {"ok": False, "error": error}
        try:
            data: dict[str, Any] = json.loads(line)
        except ValueError as exc:
            raise GradingError(f"unreadable worker output {line[:200]!r}: {exc}") from exc
        return data

    def close(self, *, kill: bool = False) -> None:
        """Stop the child (if any; ``kill``: without waiting for it); a later call starts a new one."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if kill:
                proc.kill()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # the child exits at end of input
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
