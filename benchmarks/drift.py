"""Drift checks on 1M rows x 20 columns: the exercise 05 solution vs Evidently's DataDriftPreset.

One run, one table: wall time and peak memory (resident set, in a forked child) of each,
whether their per-column decisions agree, and the streaming monitor's cost per request.

The solution's ``detect_drift`` is read from the ``%%writefile drift.py`` cell of
``solutions/ex05_drift/ex05_drift.ipynb`` (the single source of the solution).

Usage: ``python benchmarks/drift.py [--rows 1000000] [--columns 20]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import psutil
from prometheus_client import CollectorRegistry

from ml_service.data import FEATURES
from ml_service.drift_data import reference_and_current
from ml_service.drift_monitor import DriftMonitor

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "ex05_drift" / "ex05_drift.ipynb"


def load_solution() -> Any:
    """Import the solution's drift.py from the notebook's %%writefile cell."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(
        c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%writefile drift.py")
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    path = folder / "drift.py"
    path.write_text(cell.source.split("\n", 1)[1])
    spec = importlib.util.spec_from_file_location("bench_drift_solution", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak MiB above the start) of one call, run in a forked child process.

    The child inherits the data; its peak resident set (``ru_maxrss``) minus its resident set at
    the start is the memory the call itself needed, C and NumPy allocations included.
    """
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def work() -> None:
        start_mib = psutil.Process().memory_info().rss / 2**20
        t = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child.send((out, seconds, peak_mib - start_mib))

    proc = ctx.Process(target=work)
    proc.start()
    result: tuple[Any, float, float] = parent.recv()
    proc.join()
    return result


def evidently_decisions(snapshot: Any) -> dict[str, bool]:
    """Per column: Evidently's drift call (distance methods: score >= threshold)."""
    out = {}
    for metric in json.loads(snapshot.json())["metrics"]:
        config = metric.get("config", {})
        if str(config.get("type", "")).endswith("ValueDrift"):
            method = str(config["method"]).lower()
            score, threshold = float(metric["value"]), float(config["threshold"])
            pvalue = "p_value" in method or "test" in method
            out[config["column"]] = score < threshold if pvalue else score >= threshold
    return out


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--monitor-requests", type=int, default=50_000)
    args = parser.parse_args()
    extra = max(0, args.columns - len(FEATURES))
    shifts = {
        "amount": "large",
        "merchant_category": "small",
        "hour": "negligible",
        "x_00": "small",
    }
    ds = reference_and_current(
        seed=1,
        n_reference=args.rows,
        n_current=args.rows,
        shifts=shifts,
        extra_numeric=extra,
        name="bench",
    )
    truth = {f: t.drifted for f, t in ds.truth.items()}
    solution = load_solution()
    t = time.perf_counter()
    from evidently import Report
    from evidently.presets import DataDriftPreset

    import_s = time.perf_counter() - t

    ours_flags, ours_s, ours_mib = measure(
        lambda: {
            f: bool(r.drifted)
            for f, r in solution.detect_drift(ds.reference, ds.current).features.items()
        }
    )
    theirs, ev_s, ev_mib = measure(
        lambda: evidently_decisions(Report([DataDriftPreset()]).run(ds.reference, ds.current))
    )
    disagree = sorted(f for f in truth if ours_flags.get(f) != theirs.get(f))
    ours_wrong = sorted(f for f in truth if ours_flags[f] != truth[f])
    theirs_wrong = sorted(f for f in truth if theirs.get(f) != truth[f])

    monitor = DriftMonitor.from_reference(
        ds.reference.head(100_000), window=1_000, registry=CollectorRegistry()
    )
    rows = ds.current.head(args.monitor_requests).to_dict("records")
    t = time.perf_counter()
    for row in rows:
        monitor.observe(row)
    per_request_us = (time.perf_counter() - t) / len(rows) * 1e6
    t = time.perf_counter()
    for _ in range(100):
        monitor.psi()
    scrape_us = (time.perf_counter() - t) / 100 * 1e6

    print(
        f"data: {args.rows:,} reference + {args.rows:,} current rows x {len(ds.features)} columns; "
        f"truly drifted {ds.drifted_features}"
    )
    print(f"{'':38}{'seconds':>10}{'peak MiB':>10}")
    print(f"{'solution detect_drift':38}{ours_s:10.2f}{ours_mib:10.0f}")
    print(f"{'Evidently DataDriftPreset (run)':38}{ev_s:10.2f}{ev_mib:10.0f}")
    print(f"{'Evidently import (once)':38}{import_s:10.2f}")
    print(f"speed-up: {ev_s / ours_s:.1f}x; memory ratio {ev_mib / max(ours_mib, 1e-9):.1f}x")
    print(
        f"decisions agree on {len(truth) - len(disagree)}/{len(truth)} columns; disagree: {disagree or 'none'}"
    )
    print(
        f"wrong vs known answer: solution {ours_wrong or 'none'}, Evidently {theirs_wrong or 'none'}"
    )
    print(
        f"streaming monitor: {per_request_us:.1f} us per request ({len(ds.features)} features), "
        f"{scrape_us:.0f} us per PSI computation (scrape)"
    )


if __name__ == "__main__":
    main()
