"""One Python process serving several embedded components, each still its own server.

The native backend starts the embedded Loki, Tempo, log shipper, notification sinks and GPU
source in one host process instead of five: they share one interpreter and one import of their common
libraries (Starlette, uvicorn, structlog, prometheus_client), which is most of a Python server's
start-up. Each component keeps its own ports, its own store and durability, and its own log file;
each is started and stopped on its own.

``python -m lab_stack.embedded.host --dir DIR`` serves what ``DIR`` asks for:

* ``DIR/want/NAME.json`` — ``{"module": ..., "argv": [...], "log": PATH}``: serve component
  ``NAME`` (its :data:`ENTRY_POINTS` coroutine, with the command line ``python -m MODULE`` would
  get), logging to ``PATH``. Removing the file stops that component cleanly.
* ``DIR/serving/NAME`` — written while ``NAME`` runs here; gone once it has stopped.
* ``DIR/closing`` — written when the host shuts down: after SIGTERM, when nothing is wanted any
  more, or when a component failed. A failure stops the others cleanly and the host exits with
  status 1, so that the next ``lab up`` restarts them all, each from its own store.

The folder is scanned every :data:`SCAN_INTERVAL_S` seconds; the process imports nothing of a
component before it is asked for, and nothing but the standard library on its own. A component is
named by its ``python -m`` module and loaded by that name, as ``python -m`` would load it: the GPU
source (``ml_service.gpu``) is served here without ``lab_stack`` importing ``ml_service``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["ENTRY_POINTS", "LOGGERS", "SCAN_INTERVAL_S", "hostable", "main"]

#: The embedded servers do no linear algebra; numpy's OpenBLAS would otherwise start a pool of
#: threads at import that spin for ~0.1 s of CPU, taken from the other components' start-up on a
#: two-core laptop. Set before any component (and so numpy) is imported; a caller's value wins.
BLAS_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

#: ``python -m`` module of a component -> its ``async def run(argv, stop)`` entry point.
ENTRY_POINTS: dict[str, str] = {
    "lab_stack.embedded.loki": "lab_stack.embedded.loki.__main__:run",
    "lab_stack.embedded.tempo": "lab_stack.embedded.tempo.app:run",
    "lab_stack.embedded.shipper": "lab_stack.embedded.shipper.__main__:run",
    "lab_stack.sinks": "lab_stack.sinks.__main__:run",
    "ml_service.gpu": "ml_service.gpu:run",
}

#: The structlog logger name each component logs under (routed to that component's log file).
LOGGERS: dict[str, str] = {
    "lab_stack.embedded.loki": "lab_stack.embedded.loki",
    "lab_stack.embedded.tempo": "lab_stack.embedded.tempo",
    "lab_stack.embedded.shipper": "lab_stack.shipper",
    "lab_stack.sinks": "lab_stack.sinks",
}

SCAN_INTERVAL_S = 0.05
STOP_TIMEOUT_S = 10.0
IDLE_EXIT_S = 10.0


def hostable(module: str | None) -> bool:
    """True when the component run as ``python -m module`` can be served by a host process."""
    return module in ENTRY_POINTS


@dataclass
class _Hosted:
    name: str
    module: str
    log: TextIO
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class _Host:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.want_dir = directory / "want"
        self.serving_dir = directory / "serving"
        self.serving_dir.mkdir(parents=True, exist_ok=True)
        self.want_dir.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, _Hosted] = {}
        self.by_logger: dict[str, _Hosted] = {}
        self.shutdown = asyncio.Event()
        self.failed: str | None = None

    # ---------------------------------------------------------------- logging
    def logger(self, *args: Any) -> Any:
        """structlog logger factory: a component's logger writes to that component's log file."""
        import structlog

        hosted = self.by_logger.get(str(args[0])) if args else None
        return structlog.PrintLogger(hosted.log if hosted is not None else sys.stderr)

    def _configure_logging(self) -> None:
        import structlog

        logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
            ],
            logger_factory=self.logger,
        )

    def _say(self, hosted: _Hosted | None, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        line = f"{stamp} host[{os.getpid()}]: {message}"
        print(line, file=sys.stderr, flush=True)  # noqa: T201 - the host's own log
        if hosted is not None:
            with contextlib.suppress(OSError, ValueError):
                print(line, file=hosted.log, flush=True)

    # ---------------------------------------------------------------- wants
    def _wants(self) -> dict[str, dict[str, Any]]:
        wants: dict[str, dict[str, Any]] = {}
        try:
            entries = sorted(os.scandir(self.want_dir), key=lambda e: e.stat().st_mtime_ns)
        except OSError:
            return wants
        for entry in entries:
            if not entry.name.endswith(".json"):
                continue
            try:
                wants[entry.name[: -len(".json")]] = json.loads(Path(entry.path).read_text())
            except (OSError, ValueError):
                continue  # removed or being replaced: seen again on the next scan
        return wants

    async def _start(self, name: str, want: dict[str, Any]) -> None:
        module = str(want["module"])
        log = open(want["log"], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed in _reap
        hosted = _Hosted(name=name, module=module, log=log)
        self.running[name] = hosted
        self.by_logger[LOGGERS.get(module, module)] = hosted
        (self.serving_dir / name).write_text(str(os.getpid()))
        self._say(hosted, f"starting {name} ({module} {' '.join(want.get('argv', []))})")
        try:
            target = ENTRY_POINTS[module]
        except KeyError:
            raise RuntimeError(
                f"{module} cannot be hosted; known: {', '.join(ENTRY_POINTS)}"
            ) from None
        module_name, _, function = target.partition(":")
        entry = getattr(importlib.import_module(module_name), function)

        async def _run() -> None:
            try:
                await entry(list(want.get("argv", [])), hosted.stop)
            except SystemExit as exc:  # argparse, or a library that exits: a failure, not ours
                raise RuntimeError(f"{name} exited with status {exc.code}") from None

        hosted.task = asyncio.create_task(_run(), name=name)
        await asyncio.sleep(0)  # let it reach its first await (bind, replay) before the next

    def _reap(self, hosted: _Hosted) -> BaseException | None:
        """Forget a finished component; return its failure, if it failed."""
        assert hosted.task is not None and hosted.task.done()
        error: BaseException | None
        if hosted.task.cancelled():
            error = RuntimeError(f"{hosted.name} was cancelled")
        else:
            error = hosted.task.exception()
        if error is None and not hosted.stop.is_set():
            error = RuntimeError(f"{hosted.name} stopped on its own")
        if error is not None:
            text = "".join(traceback.format_exception(error)).rstrip()
            self._say(hosted, f"{hosted.name} failed: {text}")
        else:
            self._say(hosted, f"{hosted.name} stopped")
        (self.serving_dir / hosted.name).unlink(missing_ok=True)
        del self.running[hosted.name]
        if self.by_logger.get(LOGGERS.get(hosted.module, hosted.module)) is hosted:
            del self.by_logger[LOGGERS.get(hosted.module, hosted.module)]
        hosted.log.close()
        return error

    # ---------------------------------------------------------------- the loop
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.shutdown.set)
        self._configure_logging()
        started_any = False
        idle_since = time.monotonic()
        while not self.shutdown.is_set():
            wants = self._wants()
            for name, hosted in list(self.running.items()):
                if name not in wants:
                    hosted.stop.set()
            for name, want in wants.items():
                if name not in self.running:
                    started_any = True
                    try:
                        await self._start(name, want)
                    except Exception as exc:  # an import or a bad request: fail like a crash
                        broken = self.running.get(name)
                        self._say(broken, f"{name} could not start: {exc!r}")
                        if broken is not None:
                            (self.serving_dir / name).unlink(missing_ok=True)
                            del self.running[name]
                            broken.log.close()
                        self.failed = name
                        break
            if self.failed:
                break
            for hosted in list(self.running.values()):
                if hosted.task is not None and hosted.task.done() and self._reap(hosted):
                    self.failed = hosted.name
            if self.running or self._wants():
                idle_since = time.monotonic()
            elif started_any or time.monotonic() - idle_since > IDLE_EXIT_S:
                break  # nothing left to serve (or never asked for anything)
            if self.failed:
                break
            tasks = [h.task for h in self.running.values() if h.task is not None]
            waiter = asyncio.ensure_future(self.shutdown.wait())
            await asyncio.wait(
                [waiter, *tasks], timeout=SCAN_INTERVAL_S, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
        return await self._close()

    async def _close(self) -> int:
        (self.dir / "closing").write_text(self.failed or "")
        for hosted in self.running.values():
            hosted.stop.set()
        tasks = [h.task for h in self.running.values() if h.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        for hosted in list(self.running.values()):
            if hosted.task is not None and not hosted.task.done():
                hosted.task.cancel()
                with contextlib.suppress(BaseException):
                    await hosted.task
            if hosted.task is not None and self._reap(hosted) and self.failed is None:
                self.failed = hosted.name
        if self.failed:
            self._say(None, f"exiting: {self.failed} failed; `lab up` restarts every component")
            return 1
        self._say(None, "exiting")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lab_stack.embedded.host --dir DIR``: serve what ``DIR/want`` asks for."""
    parser = argparse.ArgumentParser(prog="python -m lab_stack.embedded.host", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="the host's control folder")
    args = parser.parse_args(argv)
    for variable, value in BLAS_THREADS.items():
        os.environ.setdefault(variable, value)
    # The host writes its components' logs as key=value lines and never draws on a terminal, but
    # structlog imports rich whenever it is installed (its pretty tracebacks): ~35 ms of CPU at
    # the start of this process, on `lab up`'s critical path. structlog falls back to plain
    # tracebacks when rich cannot be imported, which is what the log files want anyway.
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]

    async def _main() -> int:
        return await _Host(args.dir).run()

    return asyncio.run(_main())


if __name__ == "__main__":
    sys.exit(main())
