"""``uncollapse serve`` under 200 concurrent clients, and under the large bodies that stalled it.

Starts the server as a real process (its access log to a file) on a small LVM run (trained here
on a synthetic compact sequence file unless ``--run`` names one), then:

1. ``load``: ``--clients`` concurrent HTTP/1.1 keep-alive clients (httpx, one asyncio task each)
   each post ``--requests`` predictions of ``--batch`` contexts; latency per request (p50, p99,
   max), errors (any answer but 200, any transport error), requests/s.
2. ``large bodies``: four clients post a ``--large-mb`` MB body at once (the issue's case: four
   123 MB bodies stalled ``/health`` for 12.2 s).

During both, a probe thread calls ``GET /health`` every 50 ms (its p50, p99, max), the server's
RSS is sampled every 50 ms (psutil: before, peak, after), and its CPU time is read before and
after (CPU ms per request: the figure a busy shared machine distorts least). ``--code``
measures the server of another source tree too (an older checkout), one after the other on the
same run.

    python benchmarks/bench_serve.py                      # 200 clients x 20 requests
    python benchmarks/bench_serve.py --code . --code ../old-checkout --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]


def synthetic_run(folder: Path, *, dim: int, context: int) -> Path:
    """A compact sequence file of 64 documents drifting in raw scale, and a 30-step LVM run."""
    rng = np.random.default_rng(0)
    docs, length = 64, 24
    start = rng.normal(size=(docs, 1, dim)) * 20
    vectors = (start + np.arange(length)[None, :, None] * 3.0
               + 0.2 * rng.normal(size=(docs, length, dim))).reshape(-1, dim)
    sequences = folder / "sequences.npz"
    np.savez(sequences, vectors=vectors.astype(np.float32),
             doc_offsets=np.arange(docs + 1, dtype=np.int64) * length,
             doc_keys=np.array([f"doc{d}" for d in range(docs)]),
             texts=np.array([f"chunk {i}" for i in range(docs * length)]),
             context_length=np.array(context))
    run = folder / "run"
    subprocess.run([sys.executable, "-m", "uncollapse", "train", "lvm", "--sequences",
                    str(sequences), "--steps", "30", "--batch-size", "64", "--hidden", "128",
                    "--layers", "1", "--device", "cpu", "--quiet", "--out", str(run)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(run: Path, log: Path, code: Path) -> tuple[subprocess.Popen, str]:
    """``uncollapse serve`` of the source tree ``code`` (this one, or an older checkout to
    compare with), ready once ``/health`` answers."""
    port = free_port()
    handle = open(log, "w")
    server = subprocess.Popen([sys.executable, "-m", "uncollapse", "serve", str(run), "--port",
                               str(port), "--device", "cpu"], cwd=code, stdout=handle,
                              stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(code)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.2)
    raise SystemExit("the server did not start in 300 s")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = np.sort(np.asarray(values)) * 1000
    return {"n": len(values), "p50_ms": round(float(np.percentile(ordered, 50)), 1),
            "p99_ms": round(float(np.percentile(ordered, 99)), 1),
            "max_ms": round(float(ordered[-1]), 1)}


class Watch:
    """``/health`` latency and the server's RSS, sampled every 50 ms from a thread of its own
    (so the clients' own work does not delay the probe), until stopped."""

    def __init__(self, url: str, pid: int):
        self.url, self.process = url, psutil.Process(pid)
        self.health: list[float] = []
        self.health_errors = 0
        self.rss: list[int] = []
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while self.running:
                self.rss.append(self.process.memory_info().rss)
                start = time.perf_counter()
                try:
                    ok = client.get(f"{self.url}/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.health.append(time.perf_counter() - start)
                else:
                    self.health_errors += 1
                time.sleep(0.05)

    def stop(self) -> None:
        self.running = False
        self.thread.join()


async def load(url: str, clients: int, requests: int, body: bytes) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        go = asyncio.Event()

        async def one_client():
            await go.wait()
            for _ in range(requests):
                start = time.perf_counter()
                try:
                    response = await client.post(f"{url}/predict", content=body,
                                                 headers={"content-type": "application/json"})
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - start)
                        continue
                    key = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1

        tasks = [asyncio.create_task(one_client()) for _ in range(clients)]
        await asyncio.sleep(0.2)
        start = time.perf_counter()
        go.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return {"clients": clients, "requests": clients * requests, "ok": len(latencies),
            "errors": errors, "wall_s": round(wall, 2),
            "requests_per_s": round(len(latencies) / wall, 1), **percentiles(latencies)}


async def large_bodies(url: str, megabytes: int, count: int = 4) -> dict:
    body = b'{"context": "' + b"x" * (megabytes << 20) + b'"}'
    outcomes: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=600) as client:
        async def one():
            start = time.perf_counter()
            try:
                response = await client.post(f"{url}/predict", content=body,
                                             headers={"content-type": "application/json"})
                key = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:  # the server answered 413 and closed mid-upload
                key = f"closed mid-upload ({type(exc).__name__})"
            outcomes[key] = outcomes.get(key, 0) + 1
            return time.perf_counter() - start

        times = await asyncio.gather(*(one() for _ in range(count)))
    return {"bodies": count, "mb_each": megabytes, "outcomes": outcomes,
            "slowest_answer_s": round(max(times), 2)}


async def measure(url: str, pid: int, args, body: bytes) -> dict:
    results = {}
    for phase in ("load", "large bodies"):
        watch = Watch(url, pid)
        await asyncio.sleep(0.5)
        before = watch.rss[-1]
        cpu = sum(watch.process.cpu_times()[:2])
        if phase == "load":
            result = await load(url, args.clients, args.requests, body)
        else:
            result = await large_bodies(url, args.large_mb)
        cpu = sum(watch.process.cpu_times()[:2]) - cpu
        await asyncio.sleep(0.5)
        watch.stop()
        # the server's own CPU time per answer: what a busy shared machine distorts least
        result["server_cpu_s"] = round(cpu, 2)
        if phase == "load" and result["ok"]:
            result["server_cpu_ms_per_request"] = round(1000 * cpu / result["ok"], 2)
        result["health_during"] = {**percentiles(watch.health), "errors": watch.health_errors}
        result["rss_mb"] = {"before": round(before / 2**20, 1),
                            "peak": round(max(watch.rss) / 2**20, 1),
                            "after": round(watch.rss[-1] / 2**20, 1)}
        results[phase] = result
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="an LVM run directory (default: train one)")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--batch", type=int, default=1, help="contexts per request")
    parser.add_argument("--large-mb", type=int, default=120)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--code", type=Path, action="append",
                        help="source tree(s) whose server to measure, one after the other (an "
                             "older checkout to compare with); default: this one")
    args = parser.parse_args()

    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
                   f"{platform.release()}, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python", "benchmarks/bench_serve.py", *sys.argv[1:]]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = args.run or synthetic_run(folder, dim=32, context=4)
        config = json.loads((run / "config.json").read_text())
        for code in args.code or [ROOT]:
            log = folder / "server.log"
            load_before = os.getloadavg()[0]
            server, url = start_server(run, log, code.resolve())
            try:
                shape = httpx.get(f"{url}/health").json()
                dim, context = shape["dim"], shape["context_length"]
                rng = np.random.default_rng(0)
                contexts = (rng.normal(size=(args.batch, context, dim)) * 20).round(3).tolist()
                body = json.dumps({"context": contexts}).encode()
                results = asyncio.run(measure(url, server.pid, args, body))
            finally:
                server.terminate()
                server.wait(timeout=600)
            lines = log.read_text().splitlines()
            report[str(code)] = {
                "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
                "model": {"arch": config.get("arch"), "hidden": config.get("hidden"),
                          "dim": dim, "context_length": context, "body_bytes": len(body),
                          "batch": args.batch},
                "access_log_lines": sum(1 for line in lines if '"POST /predict' in line),
                **results}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
