"""Deep classification: inference (PyTorch eager vs ONNX Runtime), the embedding cache, training speed.

Run: ``python -m bench.run_all classify`` (or ``python -m bench.bench_classify``). Writes
``bench/results/classify.json`` and returns a Markdown section. In one run, on the same
model (MobileNetV2 + linear head trained on hymenoptera) and the same images:

* CPU inference throughput (images/s, network only, 224 px) of PyTorch eager and ONNX Runtime
  at batch 1 and batch 32;
* ``features`` mode fit time with an empty embedding cache, then again with it filled;
* training throughput (images/s) of ``finetune`` and ``scratch`` epochs at 128 px.

Every time is repeated in interleaved rounds (``$BENCH_CLASSIFY_REPEATS``, default 5; the
``features`` fits ``$BENCH_CLASSIFY_CACHE_REPEATS``, default 3) and reported as median
(min-max); ``$BENCH_CLASSIFY_IMAGES`` trains on fewer images (a quick check).

``python -m bench.bench_classify figures [NAME ...]`` computes the longer accuracy figures of
docs/classify.md (:data:`FIGURES`: hymenoptera, flowers5, brain_mri, fashion_mnist, transfer
compare; default: those not yet in the file) into ``bench/results/classify_figures.json``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from bench import data_root
from bench.common import (
    REPEATS,
    Directories,
    describe_machine,
    format_spread,
    interleaved,
    machine,
    rate_spread,
    ratio_spread,
    rounds,
    setting,
    spread,
    write_results,
)
from imagelearn.core.bundle import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
DATA = data_root()
BATCHES = (1, 32)
TRAINING_MODES = ("finetune", "scratch")
#: Normalised images each inference pass runs through the network.
INFERENCE_IMAGES = 32
#: Rounds of the ``features`` fits (each first fit computes every embedding: the longest figure).
CACHE_REPEATS = 3
#: Training images of hymenoptera used (default: all 245).
IMAGES_VARIABLE = "BENCH_CLASSIFY_IMAGES"


def inference_seconds(
    model, images: np.ndarray, onnx_path: Path, repeats: int
) -> dict[str, list[float]]:
    """Seconds per pass over ``images`` ``(N, 3, S, S)`` (normalised) of PyTorch eager and ONNX
    Runtime at batch 1 and 32, interleaved; keys ``pytorch_eager_batch1``, ``onnxruntime_batch1``..."""
    import torch

    from imagelearn.classify.network import Probabilities
    from imagelearn.classify.onnx_export import OnnxClassifier

    network = Probabilities(model.network_).eval()
    session = OnnxClassifier(onnx_path)
    tensor = torch.from_numpy(images)
    seconds = {}
    for batch in BATCHES:
        chunks = [tensor[i : i + batch] for i in range(0, len(tensor), batch)]

        def eager(chunks=chunks):
            with torch.inference_mode():
                for chunk in chunks:
                    network(chunk)

        def onnx(chunks=chunks):
            for chunk in chunks:
                session.run(chunk.numpy())

        eager(), onnx()  # warm-up
        timings, _ = interleaved(
            {f"pytorch_eager_batch{batch}": eager, f"onnxruntime_batch{batch}": onnx}, repeats
        )
        seconds |= timings
    return seconds


def cache_seconds(train, scratch: Path, repeats: int) -> tuple[dict[str, list[float]], object]:
    """``features`` fit seconds with an empty embedding cache (``first``), then with it filled
    (``second``), interleaved; and the first model fitted."""
    from imagelearn.classify import DeepImageClassifier

    caches = Directories(scratch)

    def fit(cache_dir: Path):
        model = DeepImageClassifier(cache_dir=cache_dir, patience=0, epochs=30)
        return model.fit(train.paths, train.labels, class_names=train.class_names)

    seconds, models = interleaved(
        {"first": lambda: fit(caches.fresh()), "second": lambda: fit(caches.latest)}, repeats
    )
    return seconds, models["first"]


def training_seconds(subset, class_names, cache_dir: Path, repeats: int) -> dict[str, list[float]]:
    """Seconds of one ``finetune`` and one ``scratch`` epoch at 128 px (the phase alone), interleaved."""
    from imagelearn.classify import DeepImageClassifier

    def epoch(mode: str) -> float:
        trainer = DeepImageClassifier(
            mode=mode, epochs=1, head_epochs=1, image_size=128, patience=0, cache_dir=cache_dir
        )
        trainer.fit(subset.paths, subset.labels, class_names=class_names)
        return next(row["seconds"] for row in trainer.history_ if row["phase"] == mode)

    return rounds({mode: partial(epoch, mode) for mode in TRAINING_MODES}, repeats)


def main() -> str:
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    import torch

    from imagelearn.classify.onnx_export import export_onnx
    from imagelearn.classify.runtime import configure_torch
    from imagelearn.data import load_splits

    configure_torch()
    info = machine()
    repeats = setting("BENCH_CLASSIFY_REPEATS", REPEATS)
    cache_repeats = setting("BENCH_CLASSIFY_CACHE_REPEATS", CACHE_REPEATS)
    train, held_out, _ = load_splits(DATA / "hymenoptera")
    n_train = min(len(train), setting(IMAGES_VARIABLE, len(train)))
    train = train.subset(
        np.linspace(0, len(train) - 1, n_train).round().astype(int)
    )  # both classes
    results: dict = {
        "threads": torch.get_num_threads(),
        "n_train": len(train),
        "repeats": repeats,
        "cache_repeats": cache_repeats,
    }
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        fits, model = cache_seconds(train, scratch / "caches", cache_repeats)
        results["features_fit_seconds"] = {run: spread(values) for run, values in fits.items()}
        results["features_accuracy_224"] = float(model.score(held_out.paths, held_out.labels))
        export_onnx(model, scratch / "model.onnx", held_out.paths[:16])
        sample = torch.stack(
            [
                model.preprocessing_.evaluate(model.preprocessing_.load(p))
                for p in held_out.paths[:INFERENCE_IMAGES]
            ]
        )
        inference = inference_seconds(model, sample.numpy(), scratch / "model.onnx", repeats)
        results["inference_images"] = len(sample)
        results["inference_images_per_second"] = {
            name: rate_spread(values, len(sample)) for name, values in inference.items()
        }
        subset = train.subset(np.arange(0, len(train), 4))
        epochs = training_seconds(
            subset, train.class_names, scratch / "caches" / "training", repeats
        )
        results["train_images_per_second_128"] = {
            mode: rate_spread(values, len(subset)) for mode, values in epochs.items()
        }
    results["ratios"] = {
        f"onnx_vs_eager_batch{batch}": ratio_spread(
            inference[f"pytorch_eager_batch{batch}"], inference[f"onnxruntime_batch{batch}"]
        )
        for batch in BATCHES
    } | {"features_first_vs_second_run": ratio_spread(fits["first"], fits["second"])}
    return markdown(write_results(RESULTS / "classify.json", results, info))


def markdown(results: dict) -> str:
    """The README section of :func:`main`'s results: median (min-max) of every figure."""
    rates, ratios = results["inference_images_per_second"], results["ratios"]
    fits, training = results["features_fit_seconds"], results["train_images_per_second_128"]

    def row(label: str, prefix: str) -> str:
        cells = " | ".join(format_spread(rates[f"{prefix}_batch{b}"], digits=1) for b in BATCHES)
        return f"| {label} | {cells} |"

    ratio_cells = " | ".join(
        f"**{format_spread(ratios[f'onnx_vs_eager_batch{b}'], 'x')}**" for b in BATCHES
    )
    return "\n".join(
        [
            "## classify: MobileNetV2 inference, embedding cache, training speed",
            "",
            f"CPU, {results['threads']} torch threads; {describe_machine(results['machine'])}. "
            f"Median (min-max) over {results['repeats']} interleaved rounds ({results['cache_repeats']} "
            "for the `features` fits); ratios taken within each round. Network only (224 px, "
            f"{results['inference_images']} images), images/s:",
            "",
            "| | " + " | ".join(f"batch {b}" for b in BATCHES) + " |",
            "|---|" + "---:|" * len(BATCHES),
            row("PyTorch eager", "pytorch_eager"),
            row("ONNX Runtime", "onnxruntime"),
            f"| **ratio ONNX / eager** | {ratio_cells} |",
            "",
            f"| `features` fit, hymenoptera ({results['n_train']} images, 224 px, 30 head epochs) | seconds |",
            "|---|---:|",
            f"| first run (embeddings computed) | {format_spread(fits['first'], digits=1)} |",
            f"| second run (embeddings from the cache) | {format_spread(fits['second'])} |",
            f"| **ratio first / second** | **{format_spread(ratios['features_first_vs_second_run'], 'x', 0)}** |",
            "",
            f"Training throughput at 128 px: finetune {format_spread(training['finetune'], digits=1)} images/s, "
            f"scratch {format_spread(training['scratch'], digits=1)} images/s "
            f"(validation accuracy of the features model: {results['features_accuracy_224']:.3f}).",
            "Goals: ONNX Runtime >= 1.5x eager, second `features` run >= 20x faster than the first "
            "(the minimum over the rounds).",
        ]
    )


def _split_run(source: str, **params) -> dict:
    """Train on a seeded 70/30 split (or the given one) and score the held-out images."""
    from imagelearn.classify import DeepImageClassifier
    from imagelearn.data import load_splits
    from imagelearn.evaluation import classification_metrics

    train, held_out, how = load_splits(DATA / source, test_size=0.3, random_state=0)
    model = DeepImageClassifier(**params)
    started = time.perf_counter()
    model.fit(
        train.paths,
        train.labels,
        validation=(held_out.paths, held_out.labels),
        class_names=train.class_names,
    )
    seconds = time.perf_counter() - started
    metrics = classification_metrics(
        held_out.labels, model.predict(held_out.paths), train.class_names
    )
    keys = ("accuracy", "macro_f1", "n_images", "sensitivity", "specificity")
    return {key: metrics[key] for key in keys if key in metrics} | {
        "split": how, "fit_seconds": round(seconds, 1), "epochs_run": len(model.history_), "params": params,
    }  # fmt: skip


def _fashion_mnist(n_train: int = 20000) -> dict:
    """The small CNN from scratch on the first ``n_train`` training images, 3 epochs."""
    from imagelearn.classify import DeepImageClassifier
    from imagelearn.data.idx import load_fashion_mnist

    train_images, train_labels = load_fashion_mnist(DATA / "fashion_mnist", "train")
    test_images, test_labels = load_fashion_mnist(DATA / "fashion_mnist", "test")
    model = DeepImageClassifier(
        backbone="small_cnn",
        mode="scratch",
        epochs=3,
        image_size=28,
        augment=False,
        patience=0,
        cache_dir="",
        learning_rate=3e-3,
    )
    started = time.perf_counter()
    model.fit(train_images[:n_train], train_labels[:n_train])
    seconds = time.perf_counter() - started
    return {
        "accuracy": float(model.score(test_images, test_labels)),
        "n_train": min(n_train, len(train_labels)),
        "n_test": len(test_labels),
        "epochs": 3,
        "fit_seconds": round(seconds, 1),
    }


def _transfer_sample() -> dict:
    from imagelearn.classify import compare_transfer

    with tempfile.TemporaryDirectory() as scratch:
        rows = ["path,label"]
        for label in ("daisy", "dandelion", "rose", "sunflower", "tulip"):
            rows += [f"{p},{label}" for p in sorted((DATA / "flowers5" / label).glob("*.jpg"))[:20]]
        (Path(scratch) / "sample.csv").write_text("\n".join(rows) + "\n")
        started = time.perf_counter()
        report = compare_transfer(
            Path(scratch) / "sample.csv",
            epochs=5,
            image_size=96,
            out=RESULTS / "transfer_flowers5_sample",
            overwrite=True,  # a rerun replaces the figure
        )
        return {
            "seconds": round(time.perf_counter() - started, 1),
            "table": report.table(),
            "arms": report.as_dict()["arms"],
        }


#: The accuracy figures of docs/classify.md (slow: minutes to tens of minutes each on 2 shared cores).
FIGURES = {
    "hymenoptera_features_224": lambda: _split_run("hymenoptera"),
    "hymenoptera_features_128_10epochs": lambda: _split_run(
        "hymenoptera", image_size=128, epochs=10, patience=0
    ),
    "hymenoptera_scratch_128_10epochs": lambda: _split_run(
        "hymenoptera", mode="scratch", image_size=128, epochs=10, patience=0
    ),
    "brain_mri_features_224": lambda: _split_run("brain_mri"),
    "brain_mri_finetune_128": lambda: _split_run(
        "brain_mri", mode="finetune", image_size=128, epochs=4
    ),
    "flowers5_features_128": lambda: _split_run("flowers5", image_size=128),
    "flowers5_features_224": lambda: _split_run("flowers5"),
    "flowers5_finetune_128": lambda: _split_run(
        "flowers5", mode="finetune", image_size=128, epochs=4
    ),
    "fashion_mnist_small_cnn": _fashion_mnist,
    "fashion_mnist_small_cnn_60k": lambda: _fashion_mnist(60000),
    "transfer_flowers5_sample": _transfer_sample,
}


def figures(names: list[str]) -> None:
    """Compute the named figures (default: all missing) into ``results/classify_figures.json``."""
    import json

    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    from imagelearn.classify.runtime import configure_torch

    configure_torch()
    path = RESULTS / "classify_figures.json"
    for name in names or list(FIGURES):
        done = json.loads(path.read_text()) if path.exists() else {}
        if name in done and not names:
            continue
        result = FIGURES[name]()
        done = (
            json.loads(path.read_text()) if path.exists() else {}
        )  # other runs may have written meanwhile
        atomic_write_json(path, done | {name: result})
        print(name, result, flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["figures"]:
        figures(sys.argv[2:])
    else:
        print(main())
