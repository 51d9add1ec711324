"""Clustering 10k to 100k images: peak memory and time of ``ImageClusterer`` against scikit-learn.

Run: ``python -m bench.run_all cluster`` (or ``python -m bench.bench_cluster``). Writes
``bench/results/cluster.json`` and returns a Markdown section.

Data: Fashion-MNIST (70,000 real 28 x 28 photos of clothes, 10 classes). Each image is
described by its pixels reduced by PCA to 64 dimensions (fitted on the 70k real images;
computed once, outside every timing). N = 10k and 30k are random subsets of the real images;
N = 100k is all 70k real images plus 30k horizontally flipped copies of randomly chosen ones
(label kept).

Each run is a fresh process (``spawn``) that loads the descriptors, imports what it needs and
then clusters; its peak memory is the peak resident set size of that process (``VmHWM``; not
``ru_maxrss``, which Linux carries over from the parent through fork + exec), so it includes
the interpreter, the libraries and the data (the level before clustering is recorded too).
imagelearn's methods, as implemented (``ImageClusterer`` with its large-N strategies), are run
side by side with what a user would pick instead: scikit-learn's ``KMeans``,
``AgglomerativeClustering(linkage="ward")`` and ``HDBSCAN`` on the same descriptors. Ward in
scikit-learn holds the condensed n x n distance matrix (n(n-1)/2 float64) twice (SciPy's
``pdist`` result and the working copy of its nearest-neighbour chain: measured, to within
1%, at 10k and 30k); it is run only where that fits ``WARD_BUDGET_GIB`` and its need is
computed, not run, elsewhere. Quality is
NMI / ARI against the Fashion-MNIST classes (HDBSCAN noise counts as one cluster).

Each imagelearn / alternative pair runs in interleaved rounds (a fresh process each):
``REPEATS`` rounds (``$BENCH_REPEATS``, default 5) where they fit ``$BENCH_CLUSTER_PAIR_SECONDS``
(default 60), else fewer, at least ``$BENCH_CLUSTER_MIN_REPEATS`` (default 1: the minutes-long
pairs, no goal among them); times and peaks are median (min-max) over the rounds, quality
comes from the first (it is deterministic). ``$BENCH_CLUSTER_SIZES`` (comma-separated) runs
other sizes, e.g. ``2000,5000`` for a quick check.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from bench import data_root
from bench.common import (
    REPEATS,
    budgeted_rounds,
    describe_machine,
    finish_machine,
    format_rounds,
    machine,
    merge_rounds,
    ratio_spread,
    setting,
    write_results,
)
from imagelearn.core.bundle import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "cluster.json"
DATA = data_root()
SIZES = (10_000, 30_000, 100_000)
N_FLIPPED = 30_000
N_COMPONENTS = 64
N_CLUSTERS = 10
MIN_CLUSTER_SIZE = 100
WARD_BUDGET_GIB = 8.0
#: a run is not started when its time, extrapolated as n^2 from the previous size, exceeds this
RUN_LIMIT_S = 420
#: Seconds of rounds each imagelearn / alternative pair may take (``$BENCH_CLUSTER_PAIR_SECONDS``):
#: fast pairs get ``REPEATS`` rounds, minutes-long ones fewer, never below ``MIN_REPEATS``.
PAIR_BUDGET_S = 60
MIN_REPEATS = 1
IMPLEMENTATIONS = ("imagelearn", "alternative")
#: The figures of a run that vary between rounds (the others, quality included, do not).
MEASURES = ("seconds", "peak_rss_gib")
SEED = 0
GIB = 2**30
ALGORITHMS = {
    "kmeans": ("k-means, k=10", "scikit-learn KMeans"),
    "ward": ("Ward, k=10", "scikit-learn AgglomerativeClustering"),
    "hdbscan": (f"HDBSCAN, min_cluster_size={MIN_CLUSTER_SIZE}", "scikit-learn HDBSCAN"),
}


# ---------------------------------------------------------------- data


def fashion_mnist_descriptors(folder: Path) -> dict:
    """Write ``vectors.npy`` (100k, 64) float32 and ``labels.npy`` into ``folder``; returns facts."""
    from sklearn.decomposition import PCA

    from imagelearn.data.idx import load_fashion_mnist

    start = time.perf_counter()
    parts = [load_fashion_mnist(DATA / "fashion_mnist", split) for split in ("train", "test")]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(images))  # subsets of the first N rows are random real images
    flipped = rng.choice(len(images), N_FLIPPED, replace=False)
    images = np.concatenate([images[order], images[flipped][:, :, ::-1]])
    labels = np.concatenate([labels[order], labels[flipped]])
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255
    real = len(order)
    pca = PCA(n_components=N_COMPONENTS, random_state=SEED).fit(pixels[:real])
    vectors = pca.transform(pixels).astype(np.float32)
    np.save(folder / "vectors.npy", vectors)
    np.save(folder / "labels.npy", labels)
    return {
        "real_images": real,
        "flipped_copies": N_FLIPPED,
        "descriptor": f"pixels / 255, PCA to {N_COMPONENTS} dims (fitted on the real images)",
        "explained_variance": round(float(pca.explained_variance_ratio_.sum()), 3),
        "descriptor_seconds": round(time.perf_counter() - start, 2),
    }


# ---------------------------------------------------------------- one run in a fresh process


def _fit_predict(algorithm: str, implementation: str, vectors: np.ndarray) -> np.ndarray:
    if implementation == "imagelearn":
        from imagelearn.cluster import ImageClusterer

        method = {"kmeans": "kmeans", "ward": "agglomerative", "hdbscan": "hdbscan"}[algorithm]
        model = ImageClusterer(
            method=method,
            n_clusters=N_CLUSTERS,
            min_cluster_size=MIN_CLUSTER_SIZE,
            random_state=SEED,
        )
        return model.fit(vectors).labels_
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans

    model = {
        "kmeans": lambda: KMeans(n_clusters=N_CLUSTERS, random_state=SEED),
        "ward": lambda: AgglomerativeClustering(n_clusters=N_CLUSTERS, linkage="ward"),
        "hdbscan": lambda: HDBSCAN(min_cluster_size=MIN_CLUSTER_SIZE, copy=True),
    }[algorithm]()
    return model.fit_predict(vectors)


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM``), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _describe_child(connection, folder: str) -> None:
    connection.send(fashion_mnist_descriptors(Path(folder)))
    connection.close()


def _cluster_child(connection, folder: str, algorithm: str, implementation: str, n: int) -> None:
    """Runs in a fresh process: load, import, cluster, send back seconds, peak RSS and quality."""
    os.environ["IMAGELEARN_QUIET"] = "1"
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    if implementation == "imagelearn":
        import imagelearn.cluster  # noqa: F401  (imported before the baseline, like sklearn)
    else:
        import sklearn.cluster  # noqa: F401

    vectors = np.ascontiguousarray(np.load(Path(folder) / "vectors.npy")[:n])
    truth = np.load(Path(folder) / "labels.npy")[:n]
    baseline = peak_rss_bytes()
    start = time.perf_counter()
    labels = _fit_predict(algorithm, implementation, vectors)
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    connection.send(
        {
            "seconds": round(seconds, 2),
            "peak_rss_gib": round(peak / GIB, 3),
            "baseline_rss_gib": round(baseline / GIB, 3),
            "nmi": round(float(normalized_mutual_info_score(truth, labels)), 3),
            "ari": round(float(adjusted_rand_score(truth, labels)), 3),
            "clusters": len(np.unique(labels[labels >= 0])),
            "noise": round(float(np.mean(labels < 0)), 3),
        }
    )
    connection.close()


def in_fresh_process(target, *arguments, timeout: float = 2 * RUN_LIMIT_S) -> dict:
    """``target(connection, *arguments)`` in a spawned process; ``{"failed": ...}`` when it dies or overruns."""
    context = get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(sender, *arguments))
    process.start()
    sender.close()
    try:
        if receiver.poll(timeout):
            return receiver.recv()
        return {"failed": f"stopped: no result after {timeout:.0f} s"}
    except EOFError:
        process.join()
        return {"failed": f"the process died (exit code {process.exitcode}; out of memory?)"}
    finally:
        if process.is_alive():
            process.kill()
        process.join()


def ward_matrix_gib(n: int) -> float:
    """Memory scikit-learn's Ward (SciPy) needs for n points: two condensed float64 distance matrices."""
    return 2 * n * (n - 1) / 2 * 8 / GIB


# ---------------------------------------------------------------- report


def _cell(run: dict, key: str, digits: int) -> str:
    """The median (min-max) of a run's figure, its single value where it ran once."""
    if key not in run:
        return "-"
    figure = run[key]
    if key == "seconds" and figure["median"] < 10:
        digits = 2
    return format_rounds(figure, digits=digits) + ("\u2020" if run.get("separate") else "")


def _ratio(row: dict, key: str) -> str:
    ratio = row.get("ratios", {}).get(key)
    if ratio is None:
        return "-"
    return format_rounds(ratio, "x")


def _quality(run: dict, key: str) -> str:
    return f"{run[key]:.3f}" if key in run else "-"


def _groups(run: dict) -> str:
    if "clusters" not in run:
        return "-"
    noise = f" ({run['noise']:.0%} noise)" if run.get("noise") else ""
    return f"{run['clusters']}{noise}"


def markdown(results: dict) -> str:
    facts = results["data"]
    largest = results["sizes"][-1]
    lines = [
        "## Clustering 10k to 100k images: memory and time",
        "",
        f"Fashion-MNIST photos (28 x 28, 10 classes), each described by its pixels reduced by "
        f"PCA to {N_COMPONENTS} dimensions (computed once, {facts['descriptor_seconds']:.1f} s "
        "for 100k, outside the timings). 10k and 30k: random real images; **100k: the 70k real "
        f"images plus {facts['flipped_copies']:,} horizontally flipped copies** of random ones. "
        "Each run is a fresh process; peak memory is its peak resident set size (`VmHWM`: "
        "interpreter, libraries and data included, about "
        f"{results['baseline_rss_gib']:.2f} GiB before clustering). "
        f"{describe_machine(results['machine'])}. Each pair runs in interleaved rounds "
        f"(imagelearn, alternative, imagelearn, ...): {results['repeats']} rounds where a round "
        f"takes under {results['pair_budget_s'] / results['repeats']:.0f} s, else as many as fit "
        f"{results['pair_budget_s']:.0f} s (at least {results['min_repeats']}; the rounds column). "
        "Times and peaks: median (min-max) over the rounds; speed-up and memory saving: the "
        "alternative's figure divided by imagelearn's in the same round (above 1: imagelearn is "
        "faster / smaller). "
        "Quality (deterministic: from the first round): NMI and ARI against the classes "
        "(HDBSCAN noise counts as one cluster). "
        "imagelearn L2-normalises the vectors before clustering; the alternatives get them as "
        "they are. scikit-learn's `KMeans` runs with its defaults (one k-means++ start, up to "
        "300 iterations), imagelearn's k-means keeps the best of 3 FAISS runs of 25 iterations. "
        "imagelearn's Ward above 5,000 images is Ward on 5,000 k-means micro-clusters (memory "
        "grows with n, not n^2); its HDBSCAN is scikit-learn's on the normalised vectors, exact up "
        "to 20,000 images; beyond, it runs on a seeded sample of 20,000 and every other image "
        "takes the label of its nearest sampled image, because the exact spanning tree costs n^2 "
        "time (Prim's over all pairs, on one core: about 13 minutes at 100k).",
        "",
        "| images | algorithm | rounds | imagelearn s | alternative s | speed-up "
        "| imagelearn peak GiB | alternative peak GiB | memory saving "
        "| NMI imagelearn / alt. | ARI imagelearn / alt. | clusters imagelearn / alt. |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    notes = []
    for row in results["runs"]:
        ours, alternative = row["imagelearn"], row["alternative"]
        for name, run in ((row["algorithm_name"], ours), (row["alternative_name"], alternative)):
            if run.get("separate"):
                notes.append(
                    f"\u2020 {row['n']:,} images, {name}: not run here ({run['skipped_here']}); "
                    f"measured once on {run['date']} by `{run['command']}` "
                    f"({describe_machine(run['machine'])})."
                )
            elif run.get("skipped") or run.get("failed"):
                notes.append(f"{row['n']:,} images, {name}: {run.get('skipped') or run['failed']}.")
        lines.append(
            f"| {row['n']:,} | {row['algorithm_name']} vs {row['alternative_name']} "
            f"| {row['rounds']} "
            f"| {_cell(ours, 'seconds', 1)} | {_cell(alternative, 'seconds', 1)} "
            f"| {_ratio(row, 'seconds')} "
            f"| {_cell(ours, 'peak_rss_gib', 2)} | {_cell(alternative, 'peak_rss_gib', 2)} "
            f"| {_ratio(row, 'peak_rss_gib')} "
            f"| {_quality(ours, 'nmi')} / {_quality(alternative, 'nmi')} "
            f"| {_quality(ours, 'ari')} / {_quality(alternative, 'ari')} "
            f"| {_groups(ours)} / {_groups(alternative)} |"
        )
    lines += ["", *(f"- {note}" for note in notes)] if notes else []
    goal = results["goal"]
    verdict = "held" if goal["held"] else "NOT held"
    if goal["unmeasured"]:
        verdict = f"not verified (no {largest:,}-image figure for {', '.join(goal['unmeasured'])})"
    lines += [
        "",
        f"Goal (issue 5: 100k images cluster within 24 GiB, no n x n matrix): **{verdict}**: "
        f"at {largest:,} images the largest imagelearn peak is {goal['largest_peak_gib']:.2f} GiB "
        f"({goal['largest_peak_method']}); scikit-learn's Ward would need "
        f"{ward_matrix_gib(largest):.0f} GiB for its distance matrices alone. Slowest "
        f"imagelearn method at {largest:,} images: {goal['slowest_method']} "
        f"({goal['slowest_seconds']:.0f} s, median).",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def _skip_reason(
    algorithm: str, implementation: str, n: int, previous: dict[tuple[str, str], tuple[int, float]]
) -> str | None:
    """Why a run is not started here: over the Ward memory budget, or too slow for this benchmark."""
    if implementation == "alternative" and algorithm == "ward":
        need = ward_matrix_gib(n)
        if need > WARD_BUDGET_GIB:
            return (
                f"not run: needs {need:.1f} GiB for two copies of the condensed n x n "
                f"distance matrix alone (budget {WARD_BUDGET_GIB:g} GiB; at the sizes run, "
                "its peak minus its level before clustering matches that computation)"
            )
    if (implementation, algorithm) in previous:
        last_n, last_s = previous[(implementation, algorithm)]
        from imagelearn.cluster import ImageClusterer

        # imagelearn's HDBSCAN fits a sample of max_hdbscan_points: beyond it, time grows as n
        sampled = implementation == "imagelearn" and algorithm == "hdbscan"
        power = 1 if sampled and last_n >= ImageClusterer().max_hdbscan_points else 2
        expected = last_s * (n / last_n) ** power
        if expected > RUN_LIMIT_S:
            return (
                f"about {expected / 60:.0f} min expected: {last_s:.0f} s at {last_n:,}, "
                f"time grows as n{'' if power == 1 else '^2'}"
            )
    return None


def _stored() -> dict:
    return json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}


def pair_ratios(row: dict) -> dict:
    """Per-round ratios alternative / imagelearn of seconds and peak memory, where both ran."""
    ours, alternative = row["imagelearn"], row["alternative"]
    if "runs" not in ours or "runs" not in alternative or ours.get("separate"):
        return {}
    if alternative.get("separate"):
        return {}
    return {key: ratio_spread(alternative[key]["values"], ours[key]["values"]) for key in MEASURES}


def separate_run(algorithm: str, n: int, implementation: str) -> dict:
    """One run too slow for ``main`` (e.g. HDBSCAN at 100k), stored in the results for ``main`` to show.

    ``python -m bench.bench_cluster --separate hdbscan 100000 imagelearn``.
    """
    info = machine()
    with tempfile.TemporaryDirectory() as scratch:
        in_fresh_process(_describe_child, scratch)
        print(f"-- {n:,} {algorithm} {implementation}", flush=True)
        result = merge_rounds(
            [in_fresh_process(_cluster_child, scratch, algorithm, implementation, n, timeout=3600)],
            MEASURES,
        )
    result |= {
        "machine": finish_machine(info),
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python -m bench.bench_cluster --separate {algorithm} {n} {implementation}",
    }
    stored = _stored()
    stored.setdefault("separate_runs", {})[f"{algorithm}/{n}/{implementation}"] = result
    atomic_write_json(RESULTS, stored)
    return result


def main() -> str:
    info = machine()
    pair_budget_s = setting("BENCH_CLUSTER_PAIR_SECONDS", PAIR_BUDGET_S)
    min_repeats = setting("BENCH_CLUSTER_MIN_REPEATS", MIN_REPEATS)
    sizes = [
        int(n) for n in os.environ.get("BENCH_CLUSTER_SIZES", ",".join(map(str, SIZES))).split(",")
    ]
    # separate runs of the results' current format (one machine record each)
    separate = {
        key: run
        for key, run in _stored().get("separate_runs", {}).items()
        if "machine" in run and "runs" in run
    }
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        facts = in_fresh_process(_describe_child, scratch)  # keeps this process small
        previous: dict[tuple[str, str], tuple[int, float]] = {}
        for n in sizes:
            for algorithm, (algorithm_name, alternative_name) in ALGORITHMS.items():
                row = {
                    "n": n,
                    "algorithm": algorithm,
                    "algorithm_name": algorithm_name,
                    "alternative_name": alternative_name,
                }
                print(f"-- {n:,} {algorithm}", flush=True)
                measured = {}
                for implementation in IMPLEMENTATIONS:
                    skip = _skip_reason(algorithm, implementation, n, previous)
                    if skip is None:
                        measured[implementation] = partial(
                            in_fresh_process, _cluster_child, scratch, algorithm, implementation, n
                        )
                    elif f"{algorithm}/{n}/{implementation}" in separate:
                        row[implementation] = separate[f"{algorithm}/{n}/{implementation}"] | {
                            "separate": True,
                            "skipped_here": skip,
                        }
                    else:
                        row[implementation] = {
                            "skipped": skip if skip.startswith("not run") else f"not run: {skip}"
                        }
                row["rounds"] = 0
                if measured:
                    rounds_run = budgeted_rounds(measured, pair_budget_s, min_repeats)
                    row["rounds"] = len(next(iter(rounds_run.values())))
                    row |= {
                        name: merge_rounds(values, MEASURES) for name, values in rounds_run.items()
                    }
                for implementation in measured:
                    if "seconds" in row[implementation]:
                        median = row[implementation]["seconds"]["median"]
                        previous[(implementation, algorithm)] = (n, median)
                row["ratios"] = pair_ratios(row)
                print(f"   {row}", flush=True)
                runs.append(row)
    largest = [row for row in runs if row["n"] == sizes[-1]]
    measured_peaks = [
        (row["imagelearn"]["peak_rss_gib"]["max"], row["algorithm_name"])
        for row in largest
        if "peak_rss_gib" in row["imagelearn"]
    ]
    unmeasured = [
        row["algorithm_name"] for row in largest if "peak_rss_gib" not in row["imagelearn"]
    ]
    slowest_seconds, slowest_method = max(
        (
            (row["imagelearn"]["seconds"]["median"], row["algorithm_name"])
            for row in largest
            if "seconds" in row["imagelearn"]
        ),
        default=(float("nan"), "-"),
    )
    largest_peak, largest_method = max(measured_peaks) if measured_peaks else (float("nan"), "-")
    results = {
        "data": facts,
        "sizes": sizes,
        "n_clusters": N_CLUSTERS,
        "min_cluster_size": MIN_CLUSTER_SIZE,
        "repeats": REPEATS,
        "pair_budget_s": pair_budget_s,
        "min_repeats": min_repeats,
        "ward_budget_gib": WARD_BUDGET_GIB,
        "ward_matrix_gib": {str(n): round(ward_matrix_gib(n), 2) for n in sizes},
        "ward_measured_above_baseline_gib": {
            str(row["n"]): round(
                row["alternative"]["peak_rss_gib"]["median"]
                - row["alternative"]["baseline_rss_gib"],
                2,
            )
            for row in runs
            if row["algorithm"] == "ward" and "peak_rss_gib" in row["alternative"]
        },
        "baseline_rss_gib": min(row["imagelearn"].get("baseline_rss_gib", np.inf) for row in runs),
        "runs": runs,
        "separate_runs": separate,
        "goal": {
            "held": bool(measured_peaks) and not unmeasured and largest_peak <= 24,
            "largest_peak_gib": largest_peak,
            "largest_peak_method": largest_method,
            "unmeasured": unmeasured,
            "slowest_method": slowest_method,
            "slowest_seconds": slowest_seconds,
        },
    }
    return markdown(write_results(RESULTS, results, info))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--separate":
        print(separate_run(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    else:
        print(main())
