"""Pixel classification: tiled streaming against whole-image prediction, and real-data figures.

Run: ``python -m bench.run_all segment`` or ``python -m bench.bench_segment [--size 20000]``.
Writes ``bench/results/segment.json`` and returns Markdown tables.

1. Throughput and peak memory on a large mosaic of real Dubai aerial tiles, stored as an
   uncompressed TIFF: ``PixelClassifier.predict`` (memory-mapped input, tiles with a halo,
   memory-mapped class map) against what a user would write instead: the same features
   for the whole image at once and scikit-learn's ``RandomForestClassifier.predict`` on the
   ``(H*W, F)`` stack, with the same forest (same samples, same seed). The whole-stack run
   is skipped where its measured memory per pixel says it would exceed ``memory_budget_gib``
   (the cores and memory are shared); the table says where it would fail.
2. EM membranes (ISBI 2012): train on scribbles from 5 slices, predict the other 25.
3. Dubai land cover: train on scribbles from 8 tiles, predict the other 64; clusters too.

Each measured run is a fresh process; peak memory is its anonymous resident memory
(RssAnon, sampled every 20 ms: heap, not the page cache of memory-mapped files) and its
``ru_maxrss``. Tiled and whole runs alternate in interleaved rounds, as many as fit
``$BENCH_SEGMENT_PAIR_SECONDS`` per side (5 at most): median (min-max) over the rounds. The
accuracy figures (2, 3) are deterministic and computed once. ``main``'s docstring lists the
environment variables that shrink a run for a quick check.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from bench import data_root
from bench.common import (
    REPEATS,
    budgeted_rounds,
    describe_machine,
    format_rounds,
    machine,
    merge_rounds,
    rate_spread,
    ratio_spread,
    setting,
    write_results,
)
from imagelearn.segment import (
    PixelClassifier,
    PixelClusterer,
    PixelFeatures,
    accuracy_report,
    class_areas,
    cluster_agreement,
    read_raster,
    simulate_scribbles,
)
from imagelearn.segment.reference_data import (
    DUBAI_CLASSES,
    EM_CLASSES,
    dubai_tiles,
    load_dubai_tile,
    load_em_slice,
)

RESULTS = Path(__file__).resolve().parent / "results" / "segment.json"
DATA = data_root()
MIB = 2**20
TREES = 50
SEED = 0
#: Seconds of interleaved rounds per throughput side (``$BENCH_SEGMENT_PAIR_SECONDS``).
PAIR_BUDGET_S = 90
#: The figures of a prediction run that vary between rounds.
MEASURES = ("seconds", "peak_anon_mib", "max_rss_mib")


# ---------------------------------------------------------------- measuring in a fresh process


def _rss_anon_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _measured(function, *arguments) -> dict:
    """Run ``function(*arguments)`` here, sampling memory; returns seconds and peaks."""
    baseline = _rss_anon_mib()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_anon_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    extra = function(*arguments)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return {
        "seconds": seconds,
        "peak_anon_mib": max(peak[0], _rss_anon_mib()),
        "baseline_anon_mib": baseline,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **(extra or {}),
    }


def in_fresh_process(function, *arguments) -> dict:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        try:
            return pool.submit(_measured, function, *arguments).result()
        except (MemoryError, BrokenProcessPool) as error:
            return {"failed": f"{type(error).__name__}: {error}"}


def predict_tiled(model_dir: str, image_path: str, out_path: str, tile_size: int) -> dict:
    os.environ["IMAGELEARN_QUIET"] = "1"
    model = PixelClassifier.load(model_dir)
    model.tile_size = tile_size
    model.predict(read_raster(image_path, max_pixels=None), out=out_path)
    return {}


def predict_whole(samples_path: str, image_path: str, out_path: str) -> dict:
    """The alternative: whole-image features, scikit-learn's forest on the full stack."""
    from sklearn.ensemble import RandomForestClassifier

    samples = np.load(samples_path)
    forest = RandomForestClassifier(n_estimators=TREES, n_jobs=-1, random_state=SEED)
    forest.fit(samples["features"], samples["labels"])
    image = np.asarray(read_raster(image_path, max_pixels=None))
    stack = PixelFeatures().transform(image)
    labels = forest.predict(stack.reshape(-1, stack.shape[2])).reshape(image.shape[:2])
    np.save(out_path, (labels + 1).astype(np.uint8))
    return {}


# ---------------------------------------------------------------- data


def dubai_training(max_side: int, pixels_per_tile: int):
    tiles = dubai_tiles(DATA / "dubai_landcover")
    train = [load_dubai_tile(path, max_side) for path in tiles[::9]]
    masks = [
        simulate_scribbles(truth, pixels_per_tile, random_state=number)
        for number, (_, truth) in enumerate(train)
    ]
    return tiles, train, masks


def write_mosaic(path: Path, size: int, sources: list[np.ndarray]) -> None:
    """An uncompressed ``size`` x ``size`` RGB TIFF tiled with real images, written in strips."""
    import tifffile

    mosaic = tifffile.memmap(path, shape=(size, size, 3), dtype=np.uint8, photometric="rgb")
    patch = 512
    number = 0
    for top in range(0, size, patch):
        for left in range(0, size, patch):
            source = sources[number % len(sources)]
            height, width = min(patch, size - top), min(patch, size - left)
            mosaic[top : top + height, left : left + width] = source[:height, :width]
            number += 1
        mosaic.flush()
    del mosaic


def throughput(
    size: int,
    alternative_sizes: list[int],
    memory_budget_gib: float,
    tile_size: int,
    scratch: Path,
    budget_s: float,
) -> list[dict]:
    """Tiled against whole-image prediction at each side, in interleaved rounds (a fresh
    process each) as many as fit ``budget_s`` per side (:func:`bench.common.budgeted_rounds`)."""
    tiles, train, masks = dubai_training(512, 40)
    model = PixelClassifier(classifier_params={"n_estimators": TREES}, random_state=SEED).fit(
        [image for image, _ in train], masks, list(DUBAI_CLASSES)
    )
    model.save(scratch / "model")
    # The alternative's forest gets the same samples in the same order (per class), so the same trees.
    features = [model.features_.transform(image) for image, _ in train]
    stacked = np.concatenate([stack[mask > 0] for stack, mask in zip(features, masks, strict=True)])
    labels = np.concatenate([mask[mask > 0] for mask in masks])
    order = np.argsort(labels, kind="stable")
    np.savez(
        scratch / "samples.npz",
        features=stacked[order],
        labels=np.searchsorted(model.classes_, labels[order]),
    )
    sources = [np.asarray(read_raster(path, max_side=800))[:512, :512] for path in tiles[1::5]]
    sources = [source for source in sources if source.shape[:2] == (512, 512)]
    rows = []
    bytes_per_pixel = None
    for side in sorted({*alternative_sizes, size}):
        image_path = scratch / f"mosaic{side}.tif"
        write_mosaic(image_path, side, sources)
        tiled_out = scratch / "tiled.npy"
        row = {"side": side, "megapixels": side * side / 1e6}
        methods = {
            "tiled": partial(
                in_fresh_process,
                predict_tiled,
                str(scratch / "model"),
                str(image_path),
                str(tiled_out),
                tile_size,
            )
        }
        needed = None if bytes_per_pixel is None else bytes_per_pixel * side * side / 2**30
        if needed is not None and needed > memory_budget_gib:
            row["whole"] = {
                "skipped": f"needs ~{needed:.0f} GiB (budget {memory_budget_gib:g} GiB)"
            }
        else:
            methods["whole"] = partial(
                in_fresh_process,
                predict_whole,
                str(scratch / "samples.npz"),
                str(image_path),
                str(scratch / "whole.npy"),
            )
        measured = budgeted_rounds(methods, budget_s)
        row["rounds"] = len(measured["tiled"])
        row |= {name: merge_rounds(runs, MEASURES) for name, runs in measured.items()}
        if "seconds" in row["whole"] and "seconds" in row["tiled"]:
            whole = row["whole"]
            bytes_per_pixel = (
                (whole["peak_anon_mib"]["median"] - whole["baseline_anon_mib"])
                * MIB
                / (side * side)
            )
            same = np.load(scratch / "whole.npy") == np.load(tiled_out, mmap_mode="r")
            row["agreement"] = float(np.mean(same))
            row["whole_over_tiled"] = {
                key: ratio_spread(
                    [run[key] for run in measured["whole"]], [run[key] for run in measured["tiled"]]
                )
                for key in ("seconds", "peak_anon_mib")
            }
        row["whole_bytes_per_pixel"] = bytes_per_pixel
        rows.append(row)
        image_path.unlink()
        print(f"  {side}x{side}: {row}", flush=True)
    return rows


#: Backbone of the optional CNN pixel features compared in the EM and Dubai figures.
CNN_BACKBONE = "mobilenet_v2"


def em_membranes(classifiers: tuple[str, ...]) -> list[dict]:
    root = DATA / "em_membranes"
    slices = [load_em_slice(root, f"{index}.png") for index in range(30)]
    train, test = slices[:5], slices[5:]
    reference = np.stack([truth for _, truth in test])
    rows = [
        {"setting": "all pixels 'interior'", **_em_scores(reference, np.full_like(reference, 2))}
    ]
    for membrane_pixels, names in ((400, classifiers), (1200, ("random_forest",))):
        masks = [
            np.where(
                truth == 1, simulate_scribbles(truth, membrane_pixels // 5, random_state=number), 0
            )
            + np.where(
                truth == 2,
                simulate_scribbles(truth, 3 * membrane_pixels // 5, random_state=number + 50),
                0,
            )
            for number, (_, truth) in enumerate(train)
        ]
        settings = [(name, name, None) for name in names]
        if membrane_pixels == 400:
            settings.append(
                (f"random_forest + {CNN_BACKBONE} features", "random_forest", CNN_BACKBONE)
            )
        for label, name, cnn in settings:
            start = time.perf_counter()
            model = PixelClassifier(
                features=PixelFeatures(cnn=cnn),
                classifier=name,
                classifier_params={"n_estimators": TREES} if name == "random_forest" else {},
            )
            model.fit([image for image, _ in train], masks, EM_CLASSES)
            mapped = np.stack([model.predict(image) for image, _ in test])
            rows.append(
                {
                    "setting": label,
                    "labelled_pixels": model.n_samples_per_class_,
                    "fit_predict_seconds_one_run": time.perf_counter() - start,
                    **_em_scores(reference, mapped),
                }
            )
            print(f"  EM {rows[-1]}", flush=True)
    return rows


def _em_scores(reference: np.ndarray, mapped: np.ndarray) -> dict:
    report = accuracy_report(reference, mapped, EM_CLASSES)
    return {
        "accuracy": report["accuracy"],
        "membrane_f1": report["f1"]["membrane"],
        "membrane_iou": report["iou"]["membrane"],
    }


def dubai(max_side: int) -> dict:
    tiles, train, masks = dubai_training(max_side, 40)
    names = list(DUBAI_CLASSES)
    model, cnn_model = (
        PixelClassifier(
            features=PixelFeatures(cnn=cnn), classifier_params={"n_estimators": TREES}
        ).fit([image for image, _ in train], masks, names)
        for cnn in (None, CNN_BACKBONE)
    )
    test_paths = [path for path in tiles if path not in tiles[::9]]
    references, mapped, cnn_mapped = [], [], []
    agreements = {method: [] for method in ("kmeans", "isodata")}
    for number, path in enumerate(test_paths):
        image, truth = load_dubai_tile(path, max_side)
        references.append(truth.ravel())
        mapped.append(model.predict(image).ravel())
        cnn_mapped.append(cnn_model.predict(image).ravel())
        if number % 8 == 0:
            for method in agreements:
                clusters = PixelClusterer(
                    n_clusters=5, method=method, random_state=SEED
                ).fit_predict(image)
                agreements[method].append(cluster_agreement(clusters, truth))
    reference, prediction = np.concatenate(references), np.concatenate(mapped)
    report = accuracy_report(reference, prediction, names)
    cnn_report = accuracy_report(reference, np.concatenate(cnn_mapped), names)
    counts = np.bincount(reference[reference > 0], minlength=len(names) + 1)
    labelled = reference > 0
    return {
        "max_side": max_side,
        "train_tiles": len(tiles[::9]),
        "test_tiles": len(test_paths),
        "labelled_pixels": model.n_samples_per_class_,
        "majority_baseline": float(counts.max() / counts.sum()),
        "report": report,
        "with_cnn_features": {
            "backbone": CNN_BACKBONE,
            "accuracy": cnn_report["accuracy"],
            "kappa": cnn_report["kappa"],
        },
        "areas_predicted": class_areas(prediction[labelled][None, :], names),
        "areas_reference": class_areas(reference[labelled][None, :], names),
        "clusters": {
            method: {
                key: float(np.mean([item[key] for item in items]))
                for key in (
                    "purity",
                    "majority_baseline",
                    "adjusted_rand",
                    "normalized_mutual_info",
                )
            }
            | {"tiles": len(items)}
            for method, items in agreements.items()
        },
    }


# ---------------------------------------------------------------- report


def markdown(results: dict) -> str:
    lines = ["## Pixel classification (`imagelearn segment`)", ""]
    lines += [
        f"Random forest ({TREES} trees), features `PixelFeatures()` (sigmas 1, 2, 4, 8, Lab, texture: "
        f"{results['n_features']} per pixel). Tiled = `PixelClassifier.predict` (tile {results['tile_size']}, "
        "memory-mapped TIFF in, memory-mapped class map out); whole = features of the whole image + "
        "scikit-learn `RandomForestClassifier.predict` on the stack (same forest).",
        "",
        f"Each side: interleaved rounds (tiled, whole, tiled, ...; a fresh process each), "
        f"{REPEATS} where they fit {results['pair_budget_s']:.0f} s, else fewer (the rounds "
        "column); median (min-max) over the rounds, ratios within each round.",
        "",
        "| image | rounds | tiled MP/s | whole MP/s | tiled peak MiB | whole peak MiB | memory ratio whole/tiled | same labels |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["throughput"]:
        tiled, whole = row["tiled"], row["whole"]
        megapixels = row["megapixels"]
        cells = [f"{row['side']}x{row['side']} ({megapixels:.1f} MP)", str(row["rounds"])]
        for run in (tiled, whole):
            cells.append(
                format_rounds(rate_spread(run["seconds"]["values"], megapixels), digits=3)
                if "seconds" in run
                else run.get("failed", "-")
            )
        cells.append(format_rounds(tiled["peak_anon_mib"], digits=0) if "seconds" in tiled else "-")
        cells.append(
            format_rounds(whole["peak_anon_mib"], digits=0)
            if "seconds" in whole
            else whole.get("skipped") or whole["failed"]
        )
        ratios = row.get("whole_over_tiled")
        cells.append(format_rounds(ratios["peak_anon_mib"], "x", 1) if ratios else "-")
        cells.append(f"{100 * row['agreement']:.2f}%" if "agreement" in row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "EM membranes (train: scribbles on slices 0-4; test: the other 25 slices, 6.6 MP):",
        "",
    ]
    lines += [
        "| classifier | labelled px (membrane / interior) | pixel accuracy | membrane F1 | membrane IoU |",
        "|---|---|---|---|---|",
    ]
    for row in results["em"]:
        pixels = row.get("labelled_pixels")
        pixel_text = f"{pixels['membrane']} / {pixels['interior']}" if pixels else "-"
        lines.append(
            f"| {row['setting']} | {pixel_text} | {row['accuracy']:.3f} | {row['membrane_f1']:.3f} | {row['membrane_iou']:.3f} |"
        )
    land = results["dubai"]
    report = land["report"]
    lines += [
        "",
        f"Dubai land cover (max side {land['max_side']}; train: scribbles on {land['train_tiles']} tiles, "
        f"{sum(land['labelled_pixels'].values())} labelled px; test: {land['test_tiles']} tiles, "
        f"{report['n_pixels']} px): overall accuracy {report['accuracy']:.3f} (majority class "
        f"{land['majority_baseline']:.3f}), kappa {report['kappa']:.3f}"
        + (
            f"; with {land['with_cnn_features']['backbone']} CNN features added: "
            f"{land['with_cnn_features']['accuracy']:.3f}, kappa {land['with_cnn_features']['kappa']:.3f}."
            if "with_cnn_features" in land
            else "."
        ),
        "",
        "| class | producer's acc. | user's acc. | area predicted % | area reference % |",
        "|---|---|---|---|---|",
    ]
    for index, name in enumerate(report["classes"]):
        lines.append(
            f"| {name} | {report['producers_accuracy'][name] or 0:.3f} | {report['users_accuracy'][name] or 0:.3f} | "
            f"{land['areas_predicted'][index]['percent']:.1f} | {land['areas_reference'][index]['percent']:.1f} |"
        )
    lines += [
        "",
        "Unsupervised clusters (k = 5, Lab at sigma 1) against the Dubai classes, mean over tiles:",
        "",
    ]
    lines += ["| method | purity | majority class | adjusted Rand | NMI |", "|---|---|---|---|---|"]
    for method, scores in land["clusters"].items():
        lines.append(
            f"| {method} | {scores['purity']:.3f} | {scores['majority_baseline']:.3f} | "
            f"{scores['adjusted_rand']:.3f} | {scores['normalized_mutual_info']:.3f} |"
        )
    lines.append("")
    lines.append(f"{describe_machine(results['machine'])}.")
    return "\n".join(lines) + "\n"


def main(
    size: int | None = None,
    alternative_sizes: tuple[int, ...] | None = None,
    memory_budget_gib: float = 6.0,
    tile_size: int = 1024,
    em_classifiers: tuple[str, ...] | None = None,
    dubai_side: int | None = None,
    budget_s: float | None = None,
) -> str:
    """Run the three parts. Defaults from the environment (a quick check sets them small):

    - ``alternative_sizes``: mosaic sides where the whole-image alternative runs too,
      ``$BENCH_SEGMENT_SIDES`` (comma-separated, default 512,1024,2048); ``size``: the largest
      mosaic side (default: their largest);
    - ``em_classifiers``: ``$BENCH_SEGMENT_EM_CLASSIFIERS`` (default random_forest,svm,mlp);
    - ``dubai_side``: longer side of the Dubai tiles, ``$BENCH_SEGMENT_DUBAI_SIDE`` (512);
    - ``budget_s``: seconds of rounds per throughput side, ``$BENCH_SEGMENT_PAIR_SECONDS``
      (:data:`PAIR_BUDGET_S`).
    """
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    info = machine()
    if alternative_sizes is None:
        sides = os.environ.get("BENCH_SEGMENT_SIDES", "512,1024,2048")
        alternative_sizes = tuple(int(side) for side in sides.split(","))
    size = max(alternative_sizes) if size is None else size
    if em_classifiers is None:
        names = os.environ.get("BENCH_SEGMENT_EM_CLASSIFIERS", "random_forest,svm,mlp")
        em_classifiers = tuple(names.split(","))
    dubai_side = setting("BENCH_SEGMENT_DUBAI_SIDE", 512) if dubai_side is None else dubai_side
    if budget_s is None:
        budget_s = setting("BENCH_SEGMENT_PAIR_SECONDS", PAIR_BUDGET_S)
    results = {
        "pair_budget_s": budget_s,
        "repeats": REPEATS,
        "tile_size": tile_size,
        "n_features": len(PixelFeatures().feature_names(np.zeros((1, 1, 3), np.uint8))),
        "trees": TREES,
    }
    with tempfile.TemporaryDirectory(prefix="bench-segment-") as scratch:
        print("throughput", flush=True)
        results["throughput"] = throughput(
            size, list(alternative_sizes), memory_budget_gib, tile_size, Path(scratch), budget_s
        )
    print("EM membranes", flush=True)
    results["em"] = em_membranes(em_classifiers)
    print("Dubai", flush=True)
    results["dubai"] = dubai(dubai_side)
    return markdown(write_results(RESULTS, results, info))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size",
        type=int,
        help="side of the largest mosaic (default: the largest of $BENCH_SEGMENT_SIDES; "
        "20000 for the big run)",
    )
    parser.add_argument(
        "--memory-budget", type=float, default=6.0, help="GiB the whole-stack alternative may use"
    )
    parser.add_argument("--tile-size", type=int, default=1024)
    options = parser.parse_args()
    from bench.run_all import write_sections

    section = main(
        options.size, memory_budget_gib=options.memory_budget, tile_size=options.tile_size
    )
    print(section)
    write_sections({"segment": section})
