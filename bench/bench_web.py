"""The web app under load on loopback: concurrent clients searching by upload, with and without
another client adding images meanwhile.

Run: ``python -m bench.run_all web`` (or ``python -m bench.bench_web``) after ``make demo``.
Writes ``bench/results/web.json`` and returns the Markdown section.

``imagelearn serve`` runs in its own process (as a user starts it), on a copy of the demo
index (``$BENCH_WEB_INDEX``, default ``runs/demo/index``), so the index itself is never
written. The clients are threads of this process, each with its own keep-alive connection;
a query is an upload of one of the index's own photos (fetched from the server first), in the
default mode (hybrid where the index has global descriptors) with verification.

* One client, ``$BENCH_WEB_SINGLE`` searches one after another: the latency a person sees.
* ``$BENCH_WEB_CLIENTS`` (8) clients searching for ``$BENCH_WEB_SECONDS`` (30) seconds:
  throughput, median and 95th-percentile latency, errors (any answer but 200).
* The same while one more client adds images (new content: mirrored, cropped copies of the
  index's photos, two per request) to a writable server, one request after another.
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import describe_machine, machine, setting, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "web.json"
REPOSITORY = Path(__file__).resolve().parents[1]
#: Photos of the index the clients upload, in turn.
N_QUERIES = 16
#: Searches before a run is measured (the first loads the CNN of the global descriptor).
WARM_UP = 3
#: Longest wait for one answer (s).
TIMEOUT = 120


def start_server(index: Path, writable: bool) -> tuple[subprocess.Popen, str]:
    """``imagelearn serve INDEX --port 0`` in a new process; returns it and its URL (read from
    the line it prints once its socket listens)."""
    command = [sys.executable, "-m", "imagelearn.cli.main", "serve", str(index), "--port", "0"]
    if writable:
        command.append("--writable")
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "IMAGELEARN_QUIET": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if " at http://" in line:
            url = line.split(" at ", 1)[1].strip().rstrip("/")
            threading.Thread(target=process.stdout.read, daemon=True).start()  # drain it
            return process, url
    raise RuntimeError(f"the server did not start:\n{''.join(lines)}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=60)


def fetch_queries(url: str) -> list[tuple[str, bytes]]:
    import httpx

    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        items = client.get("/api/images", params={"limit": 500}).json()["items"]
        step = max(1, len(items) // N_QUERIES)
        chosen = items[::step][:N_QUERIES]
        return [
            (item["path"], client.get(f"/api/images/{item['id']}/file").content) for item in chosen
        ]


def search(client, query: tuple[str, bytes]) -> tuple[float, int]:
    """One upload search: (seconds, HTTP status; 0 for a failure without an answer)."""
    name, data = query
    started = time.perf_counter()
    try:
        status = client.post(
            "/api/search", files={"file": (Path(name).name, data)}, data={"top": "20"}
        ).status_code
    except Exception:
        status = 0
    return time.perf_counter() - started, status


def summary(latencies: list[float], statuses: list[int], seconds: float) -> dict[str, Any]:
    """Requests, throughput, median and 95th-percentile latency (ms), errors."""
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else 0.0
    return {
        "requests": len(latencies),
        "seconds": round(seconds, 2),
        "throughput_per_s": round(len(latencies) / seconds, 2) if seconds else 0.0,
        "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else 0.0,
        "p95_ms": round(1000 * p95, 1),
        "max_ms": round(1000 * ordered[-1], 1) if ordered else 0.0,
        "errors": sum(status != 200 for status in statuses),
        "statuses": sorted(set(statuses)),
    }


def single_client(url: str, queries: list, count: int) -> dict[str, Any]:
    import httpx

    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        for query in queries[:WARM_UP]:
            search(client, query)
        started = time.perf_counter()
        runs = [search(client, queries[i % len(queries)]) for i in range(count)]
    return summary([s for s, _ in runs], [c for _, c in runs], time.perf_counter() - started)


def new_images(queries: list, count: int) -> list[tuple[str, bytes]]:
    """``count`` JPEGs of new content: mirrored, cropped copies of the query photos."""
    from PIL import Image, ImageOps

    made = []
    for number in range(count):
        name, data = queries[number % len(queries)]
        image = ImageOps.mirror(Image.open(io.BytesIO(data)).convert("RGB"))
        cut = 2 + number // len(queries)  # each round crops a little more: new content
        image = image.crop((cut, cut, image.width - cut, image.height - cut))
        stream = io.BytesIO()
        image.save(stream, "JPEG", quality=90)
        made.append((f"added-{number:04d}-{Path(name).stem}.jpg", stream.getvalue()))
    return made


def load(url: str, queries: list, clients: int, seconds: float, add: bool) -> dict[str, Any]:
    """``clients`` threads searching for ``seconds`` (and, with ``add``, one adding images)."""
    import httpx

    with httpx.Client(base_url=url, timeout=TIMEOUT) as warm:
        for query in queries[:WARM_UP]:
            search(warm, query)
    results: list[list[tuple[float, int]]] = [[] for _ in range(clients)]
    adds: list[tuple[float, int, int]] = []
    start = threading.Barrier(clients + 1 + int(add))
    deadline = [0.0]

    def searcher(number: int) -> None:
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            start.wait()
            position = number
            while time.perf_counter() < deadline[0]:
                results[number].append(search(client, queries[position % len(queries)]))
                position += 1

    def adder() -> None:
        pool = new_images(queries, 400)
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            start.wait()
            position = 0
            while time.perf_counter() < deadline[0] and position + 2 <= len(pool):
                batch = pool[position : position + 2]
                position += 2
                began = time.perf_counter()
                try:
                    answer = client.post("/api/images", files=[("files", f) for f in batch])
                    status, added = answer.status_code, len(answer.json().get("added", []))
                except Exception:
                    status, added = 0, 0
                adds.append((time.perf_counter() - began, status, added))

    threads = [threading.Thread(target=searcher, args=(n,)) for n in range(clients)]
    if add:
        threads.append(threading.Thread(target=adder))
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    runs = [run for client in results for run in client]
    report = summary([s for s, _ in runs], [c for _, c in runs], elapsed)
    report["clients"] = clients
    if add:
        add_summary = summary([s for s, _, _ in adds], [c for _, c, _ in adds], elapsed)
        report["adds"] = {**add_summary, "images_added": sum(n for _, _, n in adds)}
    return report


def main() -> str:
    """Run the three loads; write the results; return the Markdown section."""
    index = Path(os.environ.get("BENCH_WEB_INDEX", REPOSITORY / "runs" / "demo" / "index"))
    if not (index / "manifest.json").is_file():
        raise SystemExit(f"{index}: no index; run `make demo` first (or set BENCH_WEB_INDEX)")
    clients = setting("BENCH_WEB_CLIENTS", 8)
    seconds = float(setting("BENCH_WEB_SECONDS", 30))
    single = setting("BENCH_WEB_SINGLE", 30)
    info = machine()
    report: dict[str, Any] = {"index": str(index), "clients": clients, "seconds": seconds}
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "index"
        shutil.copytree(index, copy, ignore=shutil.ignore_patterns(".lock", "uploads"))
        process, url = start_server(copy, writable=False)
        try:
            queries = fetch_queries(url)
            import httpx

            report["images"] = httpx.get(f"{url}/api/info", timeout=TIMEOUT).json()["images"]
            report["single"] = single_client(url, queries, single)
            report["search"] = load(url, queries, clients, seconds, add=False)
        finally:
            stop_server(process)
        process, url = start_server(copy, writable=True)
        try:
            report["search_while_adding"] = load(url, queries, clients, seconds, add=True)
            report["images_after"] = httpx.get(f"{url}/api/info", timeout=TIMEOUT).json()["images"]
        finally:
            stop_server(process)
    record = write_results(RESULTS, report, info)
    return section(record)


def section(record: dict[str, Any]) -> str:
    single, plain, adding = record["single"], record["search"], record["search_while_adding"]
    adds = adding["adds"]
    rows = [
        ("1 client, one search after another", single),
        (f"{record['clients']} clients", plain),
        (f"{record['clients']} clients, while 1 client adds images", adding),
    ]
    lines = [
        "## Web app: searching by upload under load (loopback)",
        "",
        f"`imagelearn serve` on a copy of the demo index ({record['images']} images; "
        "one search thread), in its own process; clients are threads of the benchmark process "
        "with keep-alive connections, each uploading photos of the index in turn (default mode: "
        f"hybrid with verification, top 20), for {record['seconds']:.0f} s per run. "
        f"{describe_machine(record['machine'])}: the clients and the server share the 2 cores.",
        "",
        "| run | searches | searches/s | p50 ms | p95 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in rows:
        lines.append(
            f"| {name} | {run['requests']} | {run['throughput_per_s']:.2f} | {run['p50_ms']:.0f} | "
            f"{run['p95_ms']:.0f} | {run['max_ms']:.0f} | {run['errors']} |"
        )
    lines += [
        "",
        f"While adding: {adds['requests']} add requests (2 images each; {adds['images_added']} "
        f"images added, the index grew from {record['images']} to {record['images_after']}), "
        f"p50 {adds['p50_ms']:.0f} ms, p95 {adds['p95_ms']:.0f} ms, {adds['errors']} errors. "
        "Every add makes a new snapshot; searches in flight finish on the old one, the next "
        "ones open the new one.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main())
