"""``bof train`` at growing collection sizes: peak memory should stay flat, time grow linearly.

Run: ``python -m bench.run_all bof_scale`` (or ``python -m bench.bench_bof_scale``). Writes
``bench/results/bof_scale.json`` and returns a Markdown table.

Each size runs :func:`imagelearn.bof.runs.train_run` (what ``imagelearn bof train`` runs: the
default :class:`~imagelearn.bof.BofClassifier`, a stratified 70/30 split, held-out evaluation)
in a fresh Python process with its own empty feature cache, and reports the process's wall
time and peak resident memory (``VmHWM``), and that of its feature-extraction worker
processes. The collections are flowers5 (4,326 photos of 5 classes), then its photos flipped
horizontally, cropped to their central 85% and both (written once to a temporary folder), in
a seeded order, so that every size mixes all classes.

Sizes: ``BENCH_BOF_SCALE_SIZES`` (default ``1000,3000,10000``, images in the collection);
workers: ``BENCH_BOF_SCALE_JOBS`` (default -1, all cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from bench import data_root
from bench.common import describe_machine, finish_machine, machine
from imagelearn.core.bundle import atomic_write_json
from imagelearn.data.collection import find_images

RESULTS = Path(__file__).resolve().parent / "results" / "bof_scale.json"
SIZES = tuple(int(n) for n in os.environ.get("BENCH_BOF_SCALE_SIZES", "1000,3000,10000").split(","))
N_JOBS = int(os.environ.get("BENCH_BOF_SCALE_JOBS", -1))
#: Copies of every photo, in the order they join the pool.
VARIANTS = ("original", "flipped", "cropped", "flipped_cropped")
#: Seconds between two readings of the load average during a size's run.
LOAD_INTERVAL_S = 10
#: The stages of ``train_run``'s timings, in order.
STAGES = ("extract_s", "vocabulary_s", "encode_s", "svm_s")
#: Side of the central crop, as a fraction of the photo's.
CROP = 0.85


def variant(image: Image.Image, name: str) -> Image.Image:
    """``image`` as the copy ``name`` of :data:`VARIANTS` (same size as the original)."""
    if "cropped" in name:
        width, height = image.size
        left, top = round(width * (1 - CROP) / 2), round(height * (1 - CROP) / 2)
        image = image.crop((left, top, width - left, height - top)).resize((width, height))
    return ImageOps.mirror(image) if "flipped" in name else image


def write_pool(directory: Path, n_images: int) -> list[Path]:
    """The first ``n_images`` of the seeded pool of flowers5 photos and copies, written as
    ``directory/<class>/<variant>_<name>`` (the originals as links)."""
    originals = find_images(data_root() / "flowers5")
    rng = np.random.default_rng(0)
    pool = [(name, originals[i]) for name in VARIANTS for i in rng.permutation(len(originals))]
    if n_images > len(pool):
        raise ValueError(f"at most {len(pool)} images; asked for {n_images}")
    written = []
    for name, source in pool[:n_images]:
        target = directory / source.parent.name / f"{name}_{source.stem}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if name == "original":
            target.symlink_to(source)
        else:
            with Image.open(source) as image:
                variant(image.convert("RGB"), name).save(target, quality=95)
        written.append(target)
    return written


def link_collection(pool: list[Path], directory: Path, n_images: int) -> Path:
    """A collection of the first ``n_images`` of ``pool``: links in ``directory/<class>/``."""
    for path in pool[:n_images]:
        target = directory / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path.resolve())
    return directory


class LoadSampler:
    """The machine's 1-minute load average every :data:`LOAD_INTERVAL_S` seconds while the
    ``with`` block runs; ``mean`` once it ends."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(LOAD_INTERVAL_S):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))


def peak_rss_mb(pid: int | str = "self") -> float:
    """``VmHWM`` of a process (its peak resident memory), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def child_pids() -> list[int]:
    """The processes this one started (loky's workers and resource tracker), recursively."""
    found, pending = [], [os.getpid()]
    while pending:
        pid = pending.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            children = [int(c) for c in (task / "children").read_text().split()]
            found += children
            pending += children
    return found


def train_once(source: str, out: str) -> dict[str, Any]:
    """In the fresh process: ``train_run(source, out)``, its time and peak memories."""
    from imagelearn.bof.recognition import BofClassifier
    from imagelearn.bof.runs import train_run

    start = time.perf_counter()
    result = train_run(source, out, model=BofClassifier(n_jobs=N_JOBS))
    wall_s = time.perf_counter() - start
    svm = result.model.svm_
    workers = [peak_rss_mb(pid) for pid in child_pids()]
    return {
        "wall_s": wall_s,
        "peak_rss_mb": peak_rss_mb(),
        "workers_peak_rss_mb": max(workers, default=0.0),
        "total_peak_rss_mb": peak_rss_mb() + sum(workers),
        "n_train": result.metrics["n_train"],
        "accuracy": result.accuracy,
        "timings": result.metrics["timings"],
        "svm_solver": svm.solver_,
        "svm_passes": svm.n_passes_,
    }


def run_size(pool: list[Path], scratch: Path, n_images: int) -> dict[str, Any]:
    """One size in a fresh interpreter with an empty feature cache."""
    source = link_collection(pool, scratch / f"collection{n_images}", n_images)
    environment = {**os.environ, "IMAGELEARN_CACHE": str(scratch / f"cache{n_images}")}
    environment.setdefault("IMAGELEARN_QUIET", "1")
    with LoadSampler() as load:
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.bench_bof_scale",
                str(source),
                str(scratch / f"run{n_images}"),
            ],
            env=environment,
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=True,
        )
    row = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"images": n_images, "load_average": load.mean, **row}


def main() -> str:
    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench_bof_scale") as scratch:
        scratch = Path(scratch)
        pool = write_pool(scratch / "pool", max(SIZES))
        rows = []
        for n_images in SIZES:
            print(f"  bof train on {n_images} images", flush=True)
            rows.append(run_size(pool, scratch, n_images))
    info = finish_machine(info)
    atomic_write_json(RESULTS, {"machine": info, "n_jobs": N_JOBS, "rows": rows})
    return markdown(rows, info)


def stage_seconds(row: dict[str, Any]) -> str:
    """The row's stage times, seconds, as ``extract / vocabulary / encode / SVM``."""
    return " / ".join(f"{row['timings'][stage]:.0f}" for stage in STAGES)


def svm_cost(row: dict[str, Any]) -> str:
    """The row's SVM fit as ``passes (µs per training row per pass)``, for the Newton solver
    (whose passes each read every row; liblinear's iterations are not passes)."""
    if row.get("svm_solver") != "newton":
        return row.get("svm_solver", "")
    per_row_pass = 1e6 * row["timings"]["svm_s"] / (row["svm_passes"] * row["n_train"])
    return f"{row['svm_passes']} ({per_row_pass:.0f} µs)"


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    first, last = rows[0], rows[-1]
    lines = [
        "## Bag of Features: training at scale",
        "",
        "`bof train` (the default model: dense RootSIFT 2,000 words + Lab 256 words, soft, "
        "pyramid 1+2x2, chi2 SVM) on flowers5 and flipped/cropped copies, each size in a fresh "
        f"process with an empty feature cache, n_jobs={N_JOBS}; {describe_machine(info)}. "
        "One run per size (minutes each: compare a rerun for the spread). "
        "Peak memory is VmHWM: of the main process, of the largest extraction worker, and of "
        "all processes together. Load: the 1-minute load average over each size's run (other "
        "work shares the machine).",
        "",
        "| images | trained on | load (mean) | wall s | ms / image | extract / vocabulary "
        "/ encode / SVM s | SVM passes (µs / row / pass) | main peak MiB | worker peak MiB | all peak MiB | held-out accuracy |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        *(
            f"| {row['images']:,} | {row['n_train']:,} | {row.get('load_average', float('nan')):.1f} "
            f"| {row['wall_s']:.0f} | {1000 * row['wall_s'] / row['images']:.0f} "
            f"| {stage_seconds(row)} | {svm_cost(row)} "
            f"| {row['peak_rss_mb']:.0f} | {row['workers_peak_rss_mb']:.0f} "
            f"| {row['total_peak_rss_mb']:.0f} | {row['accuracy']:.3f} |"
            for row in rows
        ),
        "",
        f"From {first['images']:,} to {last['images']:,} images "
        f"({last['images'] / first['images']:.1f}x): main peak memory "
        f"{last['peak_rss_mb'] / first['peak_rss_mb']:.2f}x, all processes "
        f"{last['total_peak_rss_mb'] / first['total_peak_rss_mb']:.2f}x; wall time "
        f"{last['wall_s'] / first['wall_s']:.1f}x ("
        + ", ".join(
            f"{stage.removesuffix('_s')} {last['timings'][stage] / first['timings'][stage]:.1f}x"
            for stage in STAGES
        )
        + "). Times grow with the load as well as the size: compare rows of similar load.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3:  # one size, in the fresh process run_size starts
        print(json.dumps(train_once(sys.argv[1], sys.argv[2])))
    else:
        print(main())
