"""Benchmark the embedded Loki: push throughput, then queries over 1M lines against ``grep -c``.

Run: ``.venv/bin/python benchmarks/loki_embedded.py [--lines 1000000]``. Starts the embedded Loki
on a free port over a temporary data folder, pushes the lines in JSON batches, writes the same
lines to a file, then times each query (median of 3, over HTTP) beside ``grep -c`` on that file.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from lab_stack.ports import free_port

NS = 1_000_000_000


def make_lines(n: int) -> list[str]:
    rnd = random.Random(7)
    paths = ["/api/v1/predict", "/api/v1/features", "/healthz", "/metrics"]
    out = []
    for i in range(n):
        status = 500 if rnd.random() < 0.01 else 200
        level = "error" if status == 500 else "info"
        out.append(
            f'level={level} msg="request handled" path={rnd.choice(paths)} status={status} '
            f"latency_ms={rnd.randint(1, 900)} request_id={i:016x}"
        )
    return out


def timed(fn: object, repeat: int = 3) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    n = args.lines
    tmp = Path(tempfile.mkdtemp(prefix="loki-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab_stack.embedded.loki",
            "--port",
            str(port),
            "--data-dir",
            str(tmp / "data"),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        lines = make_lines(n)
        (tmp / "lines.log").write_text("\n".join(lines) + "\n")
        now = time.time_ns()
        start_ts = now - 3000 * NS
        spacing = 3000 * NS // n
        client = httpx.Client(timeout=120)
        t0 = time.perf_counter()
        for b in range(0, n, args.batch):
            values = [
                [str(start_ts + i * spacing), lines[i]] for i in range(b, min(n, b + args.batch))
            ]
            r = client.post(
                f"{url}/loki/api/v1/push",
                json={"streams": [{"stream": {"job": "bench"}, "values": values}]},
            )
            assert r.status_code == 204, r.text
        push_s = time.perf_counter() - t0
        rss_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
        disk_mb = sum(p.stat().st_size for p in (tmp / "data").iterdir()) / 2**20

        def query(q: str, instant: bool) -> str:
            if instant:
                r = client.get(
                    f"{url}/loki/api/v1/query", params={"query": q, "time": str(now + NS)}
                )
            else:
                r = client.get(
                    f"{url}/loki/api/v1/query_range",
                    params={
                        "query": q,
                        "start": str(start_ts - NS),
                        "end": str(now + NS),
                        "limit": 100,
                    },
                )
            assert r.status_code == 200, r.text
            res = r.json()["data"]["result"]
            if r.json()["data"]["resultType"] == "vector":
                return str(res[0]["value"][1]) if res else "0"
            if r.json()["data"]["resultType"] == "matrix":
                return f"{len(res[0]['values'])} points" if res else "0"
            return f"{sum(len(s['values']) for s in res)} lines"

        def grep(pattern: str) -> str:
            out = subprocess.run(
                ["grep", "-c", pattern, str(tmp / "lines.log")],
                capture_output=True,
                text=True,
                check=False,
            )
            return out.stdout.strip()

        rows = []
        cases = [
            ('{job="bench"} |= "status=500"', False, "status=500"),
            ('sum(count_over_time({job="bench"} |= "status=500" [1h]))', True, "status=500"),
            ('sum(count_over_time({job="bench"}[1h]))', True, ""),
            ('sum(count_over_time({job="bench"} |~ "status=5.." [1h]))', True, "status=5.."),
            ('sum(count_over_time({job="bench"} |= "status=500" [1m]))', False, "status=500"),
        ]
        for q, instant, pattern in cases:
            answer = query(q, instant)
            q_s = timed(lambda q=q, instant=instant: query(q, instant))
            g_answer = grep(pattern)
            g_s = timed(lambda pattern=pattern: grep(pattern))
            rows.append((q, answer, q_s, g_answer, g_s))
        client.close()
        print(f"\nembedded Loki, {n:,} lines of ~{sum(map(len, lines)) // n} bytes, one stream\n")
        print(f"push: {n / push_s:,.0f} lines/s ({push_s:.1f} s, JSON batches of {args.batch:,})")
        print(f"RSS after {n:,} lines: {rss_mb:,.0f} MiB; segment files: {disk_mb:,.0f} MiB\n")
        w = max(len(r[0]) for r in rows)
        print(
            f"{'query':<{w}}  {'answer':>12}  {'loki s':>8}  {'grep -c':>8}  {'grep s':>7}  ratio"
        )
        for q, answer, q_s, g_answer, g_s in rows:
            print(
                f"{q:<{w}}  {answer:>12}  {q_s:8.3f}  {g_answer:>8}  {g_s:7.3f}  {q_s / g_s:5.1f}x"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=15)


if __name__ == "__main__":
    main()
