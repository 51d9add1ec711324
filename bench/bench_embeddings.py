"""CNN embeddings and GeM descriptors: PyTorch eager against ONNX Runtime on the CPU, the cache.

Run: ``python -m bench.run_all embeddings`` (or ``python -m bench.bench_embeddings``). Writes
``bench/results/embeddings.json`` and returns a Markdown section. In one process, interleaved
(PyTorch, ONNX Runtime, PyTorch, ...; ``BENCH_REPEATS`` rounds, default 5), no cache:

* GeM retrieval descriptors (MobileNetV2, longer side 384, p = 3) of ``BENCH_GEM_IMAGES``
  UKBench photos (default 200; 320 x 240): what ``index build --global`` adds to a build.
  PyTorch eager is the engine the descriptors ran on before ONNX Runtime became the CPU default
  (the same batches: UKBench photos share one shape);
* classification / cluster embeddings (224 px crop, average pooling) of ``BENCH_EMBED_IMAGES``
  hymenoptera photos (default 100, of varied sizes);

then the first ONNX Runtime call of a new process (with and without the export on disk), a
pass that reads every embedding from the cache, and the largest difference between the two
engines' outputs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import data_root
from bench.common import (
    REPEATS,
    describe_machine,
    finish_machine,
    format_spread,
    interleaved,
    machine,
    ratio_spread,
    spread,
    timed,
)
from imagelearn.core.bundle import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "embeddings.json"
N_GEM_IMAGES = int(os.environ.get("BENCH_GEM_IMAGES", 200))
N_EMBED_IMAGES = int(os.environ.get("BENCH_EMBED_IMAGES", 100))
ENGINES = ("torch", "onnx")


def gem_figures(paths: list[Path]) -> dict:
    """Interleaved GeM descriptor timings of both engines, and their largest difference."""
    from imagelearn.retrieval.global_descriptors import GeMDescriptor

    describers = {engine: GeMDescriptor(cache_dir="", backend=engine) for engine in ENGINES}
    setup = onnx_setup_seconds(describers["onnx"], paths[0])
    describers["torch"].transform(paths[:1])
    seconds, results = interleaved(
        {
            engine: lambda d=describer: d.transform(paths)
            for engine, describer in describers.items()
        },
        REPEATS,
    )
    return _figures(seconds, results, len(paths)) | setup


def onnx_setup_seconds(describer, path: Path) -> dict[str, float]:
    """Seconds of a first one-image call of a process: with an empty export cache (export and
    session), then with the export on disk (session only)."""
    from imagelearn.classify import runtime

    describer._network()  # the weights are read before the clock starts
    seconds = {}
    previous = os.environ.get("IMAGELEARN_CACHE")
    with tempfile.TemporaryDirectory() as home:
        os.environ["IMAGELEARN_CACHE"] = home
        try:
            for state in ("onnx_first_call_seconds_exporting", "onnx_first_call_seconds_exported"):
                runtime._sessions.clear()  # what a new process starts with
                runtime._runners.clear()
                seconds[state] = round(timed(lambda: describer.transform([path]))[0], 3)
        finally:
            if previous is None:
                os.environ.pop("IMAGELEARN_CACHE")
            else:
                os.environ["IMAGELEARN_CACHE"] = previous
    return seconds


def embedding_figures(paths: list[Path]) -> dict:
    """Interleaved classification-embedding timings of both engines, then a cached pass."""
    from imagelearn.classify import build_backbone
    from imagelearn.classify.embeddings import compute_embeddings
    from imagelearn.classify.runtime import configure_torch

    backbone = build_backbone("mobilenet_v2", "imagenet").to(configure_torch("cpu"))
    compute_embeddings(backbone, paths[:1], cache_dir="", backend="onnx")  # warm both engines
    compute_embeddings(backbone, paths[:1], cache_dir="", backend="torch")
    seconds, results = interleaved(
        {
            engine: lambda e=engine: (
                compute_embeddings(backbone, paths, cache_dir="", backend=e).vectors
            )
            for engine in ENGINES
        },
        REPEATS,
    )
    figures = _figures(seconds, results, len(paths))
    with tempfile.TemporaryDirectory() as cache:
        compute_embeddings(backbone, paths, cache_dir=cache)
        cached_seconds, cached = interleaved(
            {"cached": lambda: compute_embeddings(backbone, paths, cache_dir=cache)}, REPEATS
        )
    assert cached["cached"].n_computed == 0
    return figures | {"cached_seconds": spread(cached_seconds["cached"])}


def _figures(seconds: dict[str, list[float]], results: dict, n_images: int) -> dict:
    difference = float(np.abs(results["torch"] - results["onnx"]).max())
    return {
        "n_images": n_images,
        "seconds": {engine: spread(seconds[engine]) for engine in ENGINES},
        "images_per_second": {
            engine: round(n_images / spread(seconds[engine])["median"], 2) for engine in ENGINES
        },
        "speedup_onnx_over_torch": ratio_spread(seconds["torch"], seconds["onnx"]),
        "max_abs_difference": difference,
    }


def main() -> str:
    from imagelearn.classify.runtime import configure_torch

    configure_torch("cpu")
    info = machine()
    ukbench = sorted((data_root() / "ukbench").glob("*.jpg"))[:N_GEM_IMAGES]
    hymenoptera = sorted((data_root() / "hymenoptera" / "train").rglob("*.jpg"))[:N_EMBED_IMAGES]
    if not ukbench or not hymenoptera:
        print(f"real data not found under {data_root()} (set IMAGELEARN_DATA)", file=sys.stderr)
        return "## CNN embeddings and GeM descriptors\n\nNot run: the real data is missing.\n"
    results = {"gem": gem_figures(ukbench), "embeddings": embedding_figures(hymenoptera)}
    results["machine"] = finish_machine(info)
    results["repeats"] = REPEATS
    atomic_write_json(RESULTS, results)
    return section(results)


def section(results: dict) -> str:
    """The README section of one run's results."""
    gem, embeddings = results["gem"], results["embeddings"]
    rows = []
    for label, figures in (
        (f"GeM descriptors, {gem['n_images']} UKBench photos at 384 px", gem),
        (f"embeddings, {embeddings['n_images']} hymenoptera photos at 224 px", embeddings),
    ):
        torch_s, onnx_s = figures["seconds"]["torch"], figures["seconds"]["onnx"]
        rows.append(
            f"| {label} | {format_spread(torch_s, ' s')} | {format_spread(onnx_s, ' s')} | "
            f"**{format_spread(figures['speedup_onnx_over_torch'], 'x')}** | "
            f"{figures['max_abs_difference']:.1e} |"
        )
    return "\n".join(
        [
            "## CNN embeddings and GeM descriptors: PyTorch eager vs ONNX Runtime (CPU)",
            "",
            f"{describe_machine(results['machine'])}; {results['repeats']} interleaved rounds, "
            'no cache, median (min-max). ONNX Runtime is the CPU default (`backend="auto"`).',
            "",
            "| what | PyTorch eager | ONNX Runtime | speed-up | largest difference |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "First one-image GeM call of a process on ONNX Runtime: "
            f"{gem['onnx_first_call_seconds_exporting']:.2f} s with an empty cache (export and "
            f"session), {gem['onnx_first_call_seconds_exported']:.2f} s once the export is on "
            "disk (session only). Embeddings read back from the cache: "
            f"{format_spread(embeddings['cached_seconds'], ' s')} for "
            f"{embeddings['n_images']} photos.",
        ]
    )


if __name__ == "__main__":
    print(main())
