"""COLMAP's vocabulary tree and imagelearn's index side by side, on the same UKBench photos.

Run: ``python -m bench.run_all colmap`` (or ``python -m bench.bench_colmap``). Writes
``bench/results/colmap.json`` and returns a Markdown table.

In one run, on the first ``$BENCH_COLMAP_IMAGES`` UKBench photos (default all 500, rounded
down to whole objects of 4), every image a query as in UKBench's protocol:

* COLMAP (Debian's ``colmap`` package, installed with ``apt-get`` when missing): CPU SIFT
  extraction (``feature_extractor``), vocabulary training (``vocab_tree_builder``, flat
  k-means over every database descriptor into ``$BENCH_COLMAP_WORDS`` words, default 10,000,
  like imagelearn's 10 x 4 tree), indexing and retrieval (``vocab_tree_retriever``), plain and
  with COLMAP's spatial verification (vote-and-verify) of the top 20. Its per-query time is
  the one it prints: features are read from its database, not extracted from the photo.
* imagelearn: ``build_index`` with :data:`bench.bench_index.UKBENCH_PARAMS` (local features;
  local and global for the hybrid path), searched in each mode (local, verified, hybrid); a
  query's time includes extracting its features from the photo.

Both sides keep at most ``$BENCH_COLMAP_FEATURES`` (default 1000) features per image and use
every core. Each stage runs once (a 500-image COLMAP build takes many minutes), so the load
before and after is recorded with the figures.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from bench.bench_index import UKBENCH_PARAMS, ukbench_paths
from bench.common import describe_machine, finish_machine, machine
from imagelearn.core.bundle import atomic_write_json
from imagelearn.evaluation.ranking import score_rankings
from imagelearn.features import extract_features
from imagelearn.retrieval import Index, build_index, ukbench_ground_truth
from imagelearn.retrieval.evaluation import evaluate_index, resolved

RESULTS = Path(__file__).resolve().parent / "results" / "colmap.json"
IMAGES_VARIABLE = "BENCH_COLMAP_IMAGES"
WORDS_VARIABLE = "BENCH_COLMAP_WORDS"
FEATURES_VARIABLE = "BENCH_COLMAP_FEATURES"
#: Results retrieved per query (N-S counts the top 4).
DEPTH = 10
#: Candidates re-ranked by spatial verification, on both sides.
VERIFY_TOP = 20
#: COLMAP's default k-means branching of the tree that quantises descriptors into words.
COLMAP_BRANCHING = 256
#: COLMAP's default k-means iterations.
COLMAP_ITERATIONS = 11
INSTALL_COMMAND = ("apt-get", "install", "-y", "--no-install-recommends", "colmap")
#: imagelearn's searches: name -> (build, search options), as in ``bench_index``'s UKBench part.
IMAGELEARN_RUNS = {
    "imagelearn local": ("local", {"mode": "local", "verify": False}),
    "imagelearn local + verification": (
        "local",
        {"mode": "local", "verify": True, "verify_top": VERIFY_TOP},
    ),
    "imagelearn hybrid (global shortlist 20, verified)": (
        "local + global",
        {"mode": "hybrid", "shortlist": 20},
    ),
}
#: COLMAP's searches: name -> ``vocab_tree_retriever`` options.
COLMAP_RUNS = {
    "COLMAP vocabulary tree": {"num_images": DEPTH},
    "COLMAP vocabulary tree + vote-and-verify": {
        "num_images": VERIFY_TOP,
        "num_images_after_verification": DEPTH,
    },
}
QUERY_LINE = re.compile(r"^Querying for image (?P<name>.+) \[\d+/\d+\] in (?P<seconds>[0-9.]+)s$")
RESULT_LINE = re.compile(r"^\s+image_id=\d+, image_name=(?P<name>.+), score=\S+$")


@dataclass(frozen=True)
class Settings:
    """The sizes of one run.

    Attributes
    ----------
    images : int
        UKBench photos (a multiple of 4: whole objects).
    visual_words : int
        COLMAP's vocabulary size.
    max_features : int
        Features kept per image, on both sides.
    """

    images: int
    visual_words: int
    max_features: int

    @classmethod
    def from_environment(cls) -> Settings:
        available = len(ukbench_paths())
        images = min(int(os.environ.get(IMAGES_VARIABLE, available)), available) // 4 * 4
        if images < 4:
            raise ValueError(f"${IMAGES_VARIABLE} must be at least 4 (one UKBench object)")
        return cls(
            images=images,
            visual_words=int(os.environ.get(WORDS_VARIABLE, 10_000)),
            max_features=int(os.environ.get(FEATURES_VARIABLE, UKBENCH_PARAMS.max_keypoints)),
        )


class ColmapUnavailable(RuntimeError):
    """COLMAP could not be installed or one of its commands failed (the message says why)."""


def ensure_colmap() -> str:
    """COLMAP's version line, installing Debian's package first when ``colmap`` is missing.

    Raises
    ------
    ColmapUnavailable
        Not installable here (no ``apt-get``, not root, the install failed) or not runnable.
    """
    if shutil.which("colmap") is None:
        if shutil.which("apt-get") is None:
            raise ColmapUnavailable("colmap is not installed and there is no apt-get")
        if os.geteuid() != 0:
            raise ColmapUnavailable("colmap is not installed and installing it needs root")
        print("installing Debian's colmap package", flush=True)
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = subprocess.run(INSTALL_COMMAND, env=environment, capture_output=True, text=True)
        if install.returncode != 0:  # the package lists may be stale or absent
            subprocess.run(("apt-get", "update"), env=environment, capture_output=True)
            install = subprocess.run(
                INSTALL_COMMAND, env=environment, capture_output=True, text=True
            )
        if install.returncode != 0 or shutil.which("colmap") is None:
            raise ColmapUnavailable(
                f"`{' '.join(INSTALL_COMMAND)}` failed: {last_line(install.stderr)}"
            )
    try:
        help_text = subprocess.run(
            ("colmap", "-h"), env=colmap_environment(), capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ColmapUnavailable(f"`colmap -h` did not run: {error}") from error
    lines = help_text.stdout.strip().splitlines()
    if not lines or not lines[0].startswith("COLMAP"):
        raise ColmapUnavailable(f"`colmap -h` printed no version: {last_line(help_text.stderr)}")
    return lines[0].split(" -- ")[0]


def colmap_environment() -> dict[str, str]:
    """The environment COLMAP runs in: Qt without a display."""
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen"}


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "(no output)"


def run_colmap(command: str, log: Path, **options: object) -> tuple[float, str]:
    """Run ``colmap COMMAND --key value ...``; seconds it took and its standard output.

    Its log goes to ``log`` (standard error; by default glog would leave files in ``/tmp``).

    Raises
    ------
    ColmapUnavailable
        A non-zero exit status (the last line of its log in the message).
    """
    arguments = ["colmap", command]
    for key, value in {"log_to_stderr": 1, **options}.items():
        arguments += [f"--{key}", str(value)]
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as stderr:
        finished = subprocess.run(
            arguments, env=colmap_environment(), stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        message = last_line(log.read_text(encoding="utf-8", errors="replace"))
        raise ColmapUnavailable(f"colmap {command} exited {finished.returncode}: {message}")
    return seconds, finished.stdout


def parse_retrieval(output: str) -> dict[str, tuple[list[str], float]]:
    """Rankings and query times from ``colmap vocab_tree_retriever``'s standard output.

    Parameters
    ----------
    output : str
        Lines ``Querying for image NAME [i/n] in 0.066s``, each followed by its results
        ``  image_id=ID, image_name=NAME, score=S``, best first (indexing lines are skipped).

    Returns
    -------
    dict of str to (list of str, float)
        Per query image name: the ranked database image names and the query's seconds.
    """
    rankings: dict[str, tuple[list[str], float]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if query := QUERY_LINE.match(line):
            current = []
            rankings[query["name"]] = (current, float(query["seconds"]))
        elif (result := RESULT_LINE.match(line)) and current is not None:
            current.append(result["name"])
    return rankings


def colmap_side(paths: list[str], settings: Settings, scratch: Path) -> dict:
    """COLMAP's stage times, vocabulary and the scores of each of :data:`COLMAP_RUNS`."""
    images = scratch / "images"
    images.mkdir()
    for path in paths:
        (images / Path(path).name).symlink_to(Path(path).resolve())
    database = scratch / "database.db"
    extraction_seconds, _ = run_colmap(
        "feature_extractor",
        scratch / "feature_extractor.log",
        database_path=database,
        image_path=images,
        **{
            "SiftExtraction.use_gpu": 0,
            "SiftExtraction.max_num_features": settings.max_features,
            "SiftExtraction.max_image_size": UKBENCH_PARAMS.max_side,
        },
    )
    with sqlite3.connect(database) as connection:
        extracted, keypoint_rows = connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(rows), 0) FROM keypoints"
        ).fetchone()
    if extracted != len(paths):
        raise ColmapUnavailable(f"feature_extractor read {extracted} of {len(paths)} images")
    vocabulary_seconds, builder_output = run_colmap(
        "vocab_tree_builder",
        scratch / "vocab_tree_builder.log",
        database_path=database,
        vocab_tree_path=scratch / "tree.bin",
        num_visual_words=settings.visual_words,
        branching=min(COLMAP_BRANCHING, settings.visual_words),
        num_iterations=COLMAP_ITERATIONS,
    )
    trained = re.search(r"Loaded a total of (\d+) descriptors", builder_output)
    words = re.search(r"using (\d+) visual words", builder_output)
    indexing_seconds, _ = run_colmap(
        "vocab_tree_retriever",
        scratch / "indexing.log",
        database_path=database,
        vocab_tree_path=scratch / "tree.bin",
        output_index_path=scratch / "index.bin",
    )
    truths = [resolved(truth) for truth in ukbench_ground_truth(paths)]
    by_name = {Path(truth.query).name: truth.query for truth in truths}
    scores = {}
    for name, options in COLMAP_RUNS.items():
        wall_seconds, output = run_colmap(
            "vocab_tree_retriever",
            scratch / "retrieval.log",
            database_path=database,
            vocab_tree_path=scratch / "index.bin",
            **options,
        )
        results = parse_retrieval(output)
        rankings = [
            [by_name[found] for found in results.get(Path(t.query).name, ([], 0.0))[0]]
            for t in truths
        ]
        milliseconds = [1000.0 * seconds for _, seconds in results.values()]
        scores[name] = {
            **score_rankings(rankings, truths),
            "queries_answered": len(results),
            "median_ms": statistics.median(milliseconds) if milliseconds else float("nan"),
            "p95_ms": float(np.percentile(milliseconds, 95)) if milliseconds else float("nan"),
            "process_seconds": wall_seconds,
        }
        print(f"{name}: N-S {scores[name]['N-S']:.3f}", flush=True)
    return {
        "stages_seconds": {
            "extraction": extraction_seconds,
            "vocabulary": vocabulary_seconds,
            "indexing": indexing_seconds,
        },
        "build_seconds": extraction_seconds + vocabulary_seconds + indexing_seconds,
        "features_per_image": keypoint_rows / len(paths),
        "training_descriptors": int(trained[1]) if trained else None,
        "visual_words": int(words[1]) if words else None,
        "scores": scores,
    }


def imagelearn_side(paths: list[str], settings: Settings, scratch: Path) -> dict:
    """Seconds of feature extraction alone and of each imagelearn build, and the scores of each
    of :data:`IMAGELEARN_RUNS`."""
    params = replace(UKBENCH_PARAMS, max_keypoints=settings.max_features)
    builds = {
        "local": replace(params, global_descriptor=False),
        "local + global": params,
    }
    truths = ukbench_ground_truth(paths)
    report: dict = {"build_seconds": {}, "scores": {}}
    indexes = {}
    # one untimed build of one object first: the process pool, network and kernels warm up
    build_index(paths[:4], scratch / "warm-up", params, cache_dir=False)
    started = time.perf_counter()
    extract_features(paths, params.make_detector(), cache_dir=False)
    report["extraction_seconds"] = time.perf_counter() - started
    for build, build_params in builds.items():
        folder = scratch / build.replace(" ", "").replace("+", "-")
        started = time.perf_counter()
        build_index(paths, folder, build_params, cache_dir=False)
        report["build_seconds"][build] = time.perf_counter() - started
        indexes[build] = Index.open(folder)
    for name, (build, options) in IMAGELEARN_RUNS.items():
        scores = evaluate_index(indexes[build], truths, depth=DEPTH, **options)
        report["scores"][name] = {**scores, "build": build}
        print(f"{name}: N-S {scores['N-S']:.3f}", flush=True)
    info = indexes["local"].info()
    report["features_per_image"] = info["features"] / info["images"]
    report["vocabulary"] = info["vocabulary"]
    return report


def markdown(report: dict) -> str:
    """The README section: one row per method, COLMAP's stages, the settings."""
    settings, colmap = report["settings"], report["colmap"]
    lines = [
        "## colmap: COLMAP's vocabulary tree against imagelearn (`bench_colmap`)",
        "",
        f"UKBench, the first {settings['images']} photos ({settings['images'] // 4} objects), "
        f"every photo a query, N-S over the top 4 (best 4.0); {describe_machine(report['machine'])}. "
        "Times are from one run of each stage; ratios are imagelearn's over COLMAP's plain "
        "vocabulary tree (below 1: imagelearn faster).",
        "",
        "| method | N-S | mAP | build s | build / COLMAP's | median / p95 ms per query "
        "| median query / COLMAP's |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    reference = None
    if "skipped" in colmap:
        lines.append(f"| COLMAP | skipped: {colmap['skipped']} | | | | | |")
    else:
        reference = (colmap["build_seconds"], colmap["scores"]["COLMAP vocabulary tree"])
        for name, s in colmap["scores"].items():
            lines.append(
                f"| {name} | {s['N-S']:.3f} | {s['mAP']:.3f} | {colmap['build_seconds']:.0f} | 1 "
                f"| {s['median_ms']:.0f} / {s['p95_ms']:.0f} | {s['median_ms'] / reference[1]['median_ms']:.2g} |"
            )
    ours = report["imagelearn"]
    for name, s in ours["scores"].items():
        build = ours["build_seconds"][s["build"]]
        build_ratio = f"{build / reference[0]:.2g}" if reference else "-"
        query_ratio = f"{s['median_ms'] / reference[1]['median_ms']:.2g}" if reference else "-"
        lines.append(
            f"| {name} | {s['N-S']:.3f} | {s['mAP']:.3f} | {build:.0f} | {build_ratio} "
            f"| {s['median_ms']:.0f} / {s['p95_ms']:.0f} | {query_ratio} |"
        )
    lines.append("")
    if reference:
        stages = colmap["stages_seconds"]
        ours_rest = ours["build_seconds"]["local"] - ours["extraction_seconds"]
        lines += [
            "| stage (seconds) | COLMAP | imagelearn (local) | imagelearn / COLMAP |",
            "|---|---:|---:|---:|",
            f"| feature extraction | {stages['extraction']:.1f} | {ours['extraction_seconds']:.1f} "
            f"| {ours['extraction_seconds'] / stages['extraction']:.2g} |",
            f"| vocabulary + indexing | {stages['vocabulary'] + stages['indexing']:.1f} "
            f"| {ours_rest:.1f} | {ours_rest / (stages['vocabulary'] + stages['indexing']):.2g} |",
            f"| whole build | {reference[0]:.1f} | {ours['build_seconds']['local']:.1f} "
            f"| {ours['build_seconds']['local'] / reference[0]:.2g} |",
            "",
        ]
        extraction_ms = 1000.0 * stages["extraction"] / settings["images"]
        lines.append(
            f"{report['colmap_version']}, CPU SIFT, {colmap['features_per_image']:.0f} features per "
            f"image: extraction {stages['extraction']:.0f} s, vocabulary {stages['vocabulary']:.0f} s "
            f"(k-means of all {colmap['training_descriptors']} descriptors into "
            f"{colmap['visual_words']} words, branching {min(COLMAP_BRANCHING, settings['visual_words'])}, "
            f"{COLMAP_ITERATIONS} iterations), indexing {stages['indexing']:.0f} s. COLMAP's query "
            "time is its own (features read from its database); its extraction adds "
            f"{extraction_ms:.0f} ms per image, imagelearn's query time includes the query's "
            "extraction. Vote-and-verify re-ranks COLMAP's top "
            f"{VERIFY_TOP}, as imagelearn's verification does."
        )
    lines.append(
        f"imagelearn: `bench_index.UKBENCH_PARAMS` ({ours['vocabulary']}, "
        f"{ours['features_per_image']:.0f} features per image); its extraction was timed alone "
        "(`extract_features`), the rest of its build is the local build less that; the hybrid "
        "row's build adds the global descriptor. "
        f"Sizes: `${IMAGES_VARIABLE}`, `${WORDS_VARIABLE}`, "
        f"`${FEATURES_VARIABLE}` (at most {settings['max_features']} features per image here)."
    )
    return "\n".join(lines) + "\n"


def main() -> str:
    """Run both sides on the same photos; write the results.

    Returns
    -------
    str
        The Markdown section.
    """
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    settings = Settings.from_environment()
    paths = ukbench_paths()[: settings.images]
    report: dict = {"machine": machine(), "settings": asdict(settings)}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        try:
            report["colmap_version"] = ensure_colmap()
            (scratch / "colmap").mkdir()
            report["colmap"] = colmap_side(paths, settings, scratch / "colmap")
        except ColmapUnavailable as reason:
            print(f"COLMAP skipped: {reason}", flush=True)
            report["colmap"] = {"skipped": str(reason)}
        (scratch / "imagelearn").mkdir()
        report["imagelearn"] = imagelearn_side(paths, settings, scratch / "imagelearn")
    report["machine"] = finish_machine(report["machine"])
    atomic_write_json(RESULTS, report)
    return markdown(report)


if __name__ == "__main__":
    print(main())
