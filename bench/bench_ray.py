"""The Ray engine's overhead: the same work on the local engine and on Ray, on the same cores.

Run: ``python -m bench.run_all ray`` (or ``python -m bench.bench_ray``; ``python -m
bench.bench_ray plan`` reruns only the inputs of ``docs/scale.md``: merge, index sizes per
image, the driver's hashing rate). Writes
``bench/results/ray.json`` and returns a Markdown section. A Ray instance with as many CPUs as
the machine has cores is started in this process; both engines get every core (``n_jobs=-1``:
two loky processes, or two Ray workers). Interleaved rounds (local, ray, local, ...;
``BENCH_REPEATS``, default 3), no cache, each engine warmed up first (its processes started):

* local features: RootSIFT (1000 keypoints, longer side 1024) of ``BENCH_RAY_IMAGES`` UKBench
  photos (default 200), through ``map_features``;
* CNN embedding: GeM descriptors (MobileNetV2, 384 px) of ``BENCH_RAY_GEM_IMAGES`` photos
  (default 100): ONNX Runtime on all cores in one process locally, one single-threaded copy of
  the network per Ray worker;
* index build: ``build_index`` of the ``BENCH_RAY_IMAGES`` photos (a 10 x 3 tree vocabulary,
  local features only) into a fresh directory: batches committed as segments locally, one
  shard per block and one merge on Ray;

then the goal's ratio (Ray's seconds over local's, per round; goal: at most 1.15), the driver's
streaming merge of shards into written segments per million postings (synthetic shards of
1000-feature images over 10^5 words) and its peak memory, and, once, Ray Data's ``map_batches`` with an actor pool on the local
features for the engine's design choice.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from bench import data_root
from bench.common import (
    describe_machine,
    finish_machine,
    format_spread,
    interleaved,
    machine,
    rate_spread,
    ratio_spread,
    setting,
    spread,
    timed,
)
from imagelearn.core.bundle import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "ray.json"
N_IMAGES = setting("BENCH_RAY_IMAGES", 200)
N_GEM_IMAGES = setting("BENCH_RAY_GEM_IMAGES", 100)
REPEATS = setting("BENCH_REPEATS", 3)
ENGINES = ("local", "ray")
GOAL = 1.15
INDEX_VOCABULARY = {"branching": 10, "depth": 3, "n_iter": 4}


def compare(name: str, work, count: int) -> dict:
    """Warm both engines up on ``work``, then time them interleaved: seconds, images/s,
    the per-round ratio ray / local."""
    for engine in ENGINES:
        work(engine)
    print(f"  {name}: warmed up", flush=True)
    seconds, _ = interleaved({engine: partial(work, engine) for engine in ENGINES}, REPEATS)
    figures = {
        "n_images": count,
        "seconds": {engine: spread(values) for engine, values in seconds.items()},
        "images_per_second": {
            engine: rate_spread(values, count) for engine, values in seconds.items()
        },
        "ratio_ray_over_local": ratio_spread(seconds["ray"], seconds["local"]),
    }
    print(f"  {name}: ratio {format_spread(figures['ratio_ray_over_local'], 'x')}", flush=True)
    return figures


def features_work(paths: list[str]):
    from imagelearn.features import make_detector
    from imagelearn.features.extract import map_features

    detector = make_detector("rootsift", max_keypoints=1000, max_side=1024)

    def run(engine: str) -> None:
        result = map_features(paths, detector, n_jobs=-1, cache_dir=False, engine=engine)
        assert len(result.values) == len(paths)

    return run


def embedding_work(paths: list[str]):
    from imagelearn.core.execution import use_engine
    from imagelearn.retrieval.global_descriptors import GeMDescriptor

    describer = GeMDescriptor(cache_dir="")

    def run(engine: str) -> None:
        with use_engine(engine):
            assert len(describer.transform(paths)) == len(paths)

    return run


def index_work(paths: list[str], root: Path):
    from imagelearn.core.execution import use_engine
    from imagelearn.retrieval import IndexParams, build_index

    params = IndexParams(vocabulary_params=INDEX_VOCABULARY, train_images=100)
    count = iter(range(10**6))

    def run(engine: str) -> None:
        directory = root / f"{engine}-{next(count)}"
        with use_engine(engine):
            report = build_index(paths, directory, params, cache_dir=False)
        assert len(report.added) == len(paths)
        shutil.rmtree(directory)

    return run


def merge_figures(n_images: int = 2000, n_features: int = 1000, n_words: int = 100_000) -> dict:
    """Seconds of the driver's streaming merge of synthetic shards (64 images each, on disk)
    into written segments of at most ``SEGMENT_POSTINGS`` postings, per million postings, and
    the merge's peak of traced memory (one untimed run under ``tracemalloc``) against the
    shards' bytes."""
    import tracemalloc

    from imagelearn.retrieval.inverted_file import bag_of_words
    from imagelearn.retrieval.shards import (
        ShardRow,
        _groups,
        _images,
        _segment,
        _write_shard,
        shard_path,
    )
    from imagelearn.retrieval.storage import write_segment
    from imagelearn.retrieval.writer import SEGMENT_POSTINGS

    rng = np.random.default_rng(0)
    idf = np.ones(n_words, np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        directory = Path(root)
        for start in range(0, n_images, 64):
            key = f"s{start:08d}"
            words = [rng.integers(0, n_words, n_features) for _ in range(min(64, n_images - start))]
            bags = [bag_of_words(w, idf) for w in words]
            arrays = {
                "sizes": np.full((len(words), 2), 480, np.int32),
                "keypoint_offsets": np.arange(len(words) + 1, dtype=np.int64) * n_features,
                "keypoints": rng.random((len(words) * n_features, 4), dtype=np.float32),
                "words": np.concatenate(words).astype(np.uint32),
                "bag_offsets": np.concatenate(([0], np.cumsum([len(b) for b, _ in bags]))),
                "bag_words": np.concatenate([b for b, _ in bags]),
                "bag_weights": np.concatenate([v for _, v in bags]),
            }
            table = {"paths": [f"/{key}/{i}" for i in range(len(words))], "sha256": []}
            _write_shard(shard_path(directory, key), {"arrays": arrays, "table": table})
            rows += [ShardRow(key, row) for row in range(len(words))]
        shard_bytes = sum(p.stat().st_size for p in (directory / "shards").iterdir())

        def merge(limit: int) -> tuple[int, int]:
            postings = segments = first = 0
            for part, group in enumerate(_groups(_images(directory, rows), limit)):
                ids = np.arange(first, first + len(group), dtype=np.uint32)
                segment = _segment(f"g000001{part:04d}", ids, group, n_words)
                write_segment(directory, segment)
                postings, segments, first = (
                    postings + len(segment.postings.images),
                    part + 1,
                    first + len(ids),
                )
            shutil.rmtree(directory / "segments")
            return postings, segments

        seconds = []
        for _ in range(REPEATS):
            elapsed, (postings, segments) = timed(lambda: merge(SEGMENT_POSTINGS))
            seconds.append(elapsed)
        small_limit = postings // 8  # the same shards, streamed into 8 segments
        tracemalloc.start()
        merge(small_limit)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "n_images": n_images,
        "n_postings": postings,
        "segment_postings": SEGMENT_POSTINGS,
        "n_segments": segments,
        "seconds": spread(seconds),
        "seconds_per_million_postings": spread(s / postings * 1e6 for s in seconds),
        "shard_bytes": shard_bytes,
        "peak_traced_bytes_eight_segments": peak,
        "peak_over_shard_bytes_eight_segments": round(peak / shard_bytes, 3),
    }


def ray_data_figures(paths: list[str]) -> dict:
    """Ray Data's ``map_batches`` with an actor pool on the local features, against the
    engine's own actors, 2 rounds after a warm-up (the engine's actors stopped meanwhile: both
    need the CPUs)."""
    import pickle

    import ray
    import ray.data

    from imagelearn.core.execution import get_backend
    from imagelearn.features import make_detector
    from imagelearn.features.extract import detect_raw_features, map_features

    detector = make_detector("rootsift", max_keypoints=1000, max_side=1024)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False

    class Detect:
        def __init__(self) -> None:
            self.detect = partial(detect_raw_features, detector=detector)

        def __call__(self, batch: dict) -> dict:
            outcomes = [pickle.dumps(self.detect(path)) for path in batch["path"]]
            return {"outcome": np.array(outcomes, dtype=object)}

    def data_run() -> int:
        dataset = ray.data.from_items([{"path": p} for p in paths]).map_batches(
            Detect, compute=ray.data.ActorPoolStrategy(size=2), batch_size=4, num_cpus=1
        )
        return len(dataset.take_all())

    def engine_run() -> int:
        result = map_features(paths, detector, n_jobs=-1, cache_dir=False, engine="ray")
        get_backend("ray").close()
        return len(result.values)

    get_backend("ray").close()
    data_run()
    seconds, _ = interleaved({"ray_data": data_run, "engine_actors": engine_run}, 2)
    return {
        "n_images": len(paths),
        "seconds": {name: spread(values) for name, values in seconds.items()},
        "note": "both start their actors in each round (the engine's are stopped after each)",
    }


def main() -> str:
    import ray

    info = machine()
    photos = [str(p) for p in sorted((data_root() / "ukbench").glob("*.jpg"))]
    if len(photos) < N_IMAGES:
        print(f"UKBench not found under {data_root()} (set IMAGELEARN_DATA)", file=sys.stderr)
        return "## Ray engine: overhead against the local engine\n\nNot run: no UKBench.\n"
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level=logging.ERROR,
        configure_logging=False,
    )
    from imagelearn.core.execution import get_backend

    results = {"repeats": REPEATS, "goal_ratio": GOAL}
    with tempfile.TemporaryDirectory() as root:
        results["features"] = compare("local features", features_work(photos[:N_IMAGES]), N_IMAGES)
        results["embedding"] = compare(
            "GeM embedding", embedding_work(photos[:N_GEM_IMAGES]), N_GEM_IMAGES
        )
        results["index_build"] = compare(
            "index build", index_work(photos[:N_IMAGES], Path(root)), N_IMAGES
        )
    results["merge"] = merge_figures()
    results["sizes"] = size_figures(photos[:300])
    results["hashing"] = hash_figures(photos)
    results["ray_data"] = ray_data_figures(photos[:N_GEM_IMAGES])
    get_backend("ray").close()
    ray.shutdown()
    results["machine"] = finish_machine(info)
    atomic_write_json(RESULTS, results)
    return section(results)


def section(results: dict) -> str:
    """The README section of one run's results."""
    rows = []
    for key, label in (
        ("features", "local features (RootSIFT, 1000 keypoints)"),
        ("embedding", "CNN embedding (GeM, MobileNetV2, 384 px)"),
        ("index_build", "index build (local features, 10 x 3 tree)"),
    ):
        figures = results[key]
        rates = figures["images_per_second"]
        rows.append(
            f"| {label}, {figures['n_images']} photos | {format_spread(rates['local'])} | "
            f"{format_spread(rates['ray'])} | "
            f"**{format_spread(figures['ratio_ray_over_local'], 'x')}** |"
        )
    merge, data = results["merge"], results["ray_data"]
    return "\n".join(
        [
            "## Ray engine: overhead against the local engine on the same cores",
            "",
            f"{describe_machine(results['machine'])}; a Ray instance on this machine with one "
            f"CPU per core, {results['repeats']} interleaved rounds after a warm-up, no cache, "
            f"median (min-max). Goal: Ray's seconds at most {results['goal_ratio']:.2f}x "
            "local's.",
            "",
            "| work | local images/s | Ray images/s | Ray / local seconds |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Merging shards into written segments on the driver: "
            f"{format_spread(merge['seconds_per_million_postings'], ' s')} per million postings "
            f"({merge['n_postings']:,} postings of {merge['n_images']} synthetic images); "
            f"streamed into 8 segments, the merge's peak memory is "
            f"{merge['peak_over_shard_bytes_eight_segments']:.2f}x the shards' bytes. "
            f"Ray Data `map_batches` with an actor pool on the local features of "
            f"{data['n_images']} photos: {format_spread(data['seconds']['ray_data'], ' s')} "
            f"against {format_spread(data['seconds']['engine_actors'], ' s')} for the engine's "
            "own actors, both starting their actors each round.",
        ]
    )


def size_figures(paths: list[str]) -> dict:
    """Bytes per image of each file kind of an index of ``paths`` built with the defaults,
    global descriptors and tags (``Index.info()`` and the files), for ``docs/scale.md``."""
    import sqlite3

    from imagelearn.retrieval import Index, IndexParams, build_index

    params = IndexParams(global_descriptor=True, tags=True, train_images=len(paths))
    with tempfile.TemporaryDirectory() as root:
        directory = Path(root) / "index"
        build_index(paths, directory, params, cache_dir=False)
        with Index.open(directory) as index:
            info = index.info()
        files: dict[str, int] = {}
        for path in directory.rglob("*"):
            if path.is_file():
                name = f"segments/{path.name}" if "segments" in path.parts else path.name
                files[name] = files.get(name, 0) + path.stat().st_size
        with sqlite3.connect(directory / "catalogue.sqlite") as connection:
            tag_rows = connection.execute("SELECT count(*) FROM tags").fetchone()[0]
    n_images = info["images"]
    return {
        "info": {key: value for key, value in info.items() if key != "path"},
        "bytes": files,
        "bytes_per_image": {name: round(size / n_images, 1) for name, size in files.items()},
        "tag_rows_per_image": round(tag_rows / n_images, 2),
    }


def hash_figures(paths: list[str]) -> dict:
    """The driver's SHA-256 of whole files (as ``IndexWriter.add`` hashes them), after one
    pass that brings the files into the page cache."""
    from imagelearn.retrieval.writer import file_sha256

    for path in paths:
        file_sha256(path)
    size = sum(Path(path).stat().st_size for path in paths)
    seconds, _ = timed(lambda: [file_sha256(path) for path in paths])
    return {
        "n_files": len(paths),
        "bytes": size,
        "seconds": round(seconds, 4),
        "megabytes_per_second": round(size / seconds / 1e6, 1),
    }


def plan_inputs() -> None:
    """Rerun the figures ``docs/scale.md`` derives from (``python -m bench.bench_ray plan``):
    the merge, index sizes per image and the driver's hashing rate, into ``ray.json``."""
    import json

    photos = [str(p) for p in sorted((data_root() / "ukbench").glob("*.jpg"))]
    results = json.loads(RESULTS.read_text())
    load = [round(x, 2) for x in os.getloadavg()]
    results["merge"] = {**merge_figures(), "load_average_before": load}
    results["sizes"] = {**size_figures(photos[:300]), "load_average_before": load}
    results["hashing"] = {**hash_figures(photos), "load_average_before": load}
    atomic_write_json(RESULTS, results)
    print(json.dumps({key: results[key] for key in ("merge", "sizes", "hashing")}, indent=1))


if __name__ == "__main__":
    plan_inputs() if sys.argv[1:] == ["plan"] else print(main())
