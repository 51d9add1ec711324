"""Deep classification: inference (PyTorch eager vs ONNX Runtime), the embedding cache, training speed.

Run: ``python -m bench.run_all classify`` (or ``python -m bench.bench_classify``). Writes
``bench/results/classify.json`` and returns a Markdown section. In one run, on the same
model (MobileNetV2 + linear head trained on hymenoptera) and the same images:

* CPU inference throughput (images/s, network only, 224 px) of PyTorch eager and ONNX Runtime
  at batch 1 and batch 32;
* ``features`` mode fit time with an empty embedding cache, then again with it filled;
* training throughput (images/s) of ``finetune`` and ``scratch`` epochs at 128 px.

``python -m bench.bench_classify figures [NAME ...]`` computes the longer accuracy figures of
docs/classify.md (:data:`FIGURES`: hymenoptera, flowers5, brain_mri, fashion_mnist, transfer
compare; default: those not yet in the file) into ``bench/results/classify_figures.json``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import data_root
from imagelearn.core.bundle import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
DATA = data_root()


def best_rate(function, n_images: int, repeats: int = 3) -> float:
    """Images per second of the fastest of ``repeats`` calls (the cores are shared)."""
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return n_images / best


def inference_rates(model, images: np.ndarray, onnx_path: Path) -> dict[str, float]:
    """PyTorch eager and ONNX Runtime, batch 1 and 32, on normalised images ``(32, 3, S, S)``."""
    import torch

    from imagelearn.classify.network import Probabilities
    from imagelearn.classify.onnx_export import OnnxClassifier

    network = Probabilities(model.network_).eval()
    session = OnnxClassifier(onnx_path)
    tensor = torch.from_numpy(images)
    rates = {}
    for batch in (1, 32):
        chunks = [tensor[i : i + batch] for i in range(0, 32, batch)]

        def eager(chunks=chunks):
            with torch.inference_mode():
                for chunk in chunks:
                    network(chunk)

        def onnx(chunks=chunks):
            for chunk in chunks:
                session.run(chunk.numpy())

        eager(), onnx()  # warm-up
        rates[f"pytorch_eager_batch{batch}"] = best_rate(eager, 32)
        rates[f"onnxruntime_batch{batch}"] = best_rate(onnx, 32)
    return rates


def main() -> str:
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    import torch

    from imagelearn.classify import DeepImageClassifier
    from imagelearn.classify.onnx_export import export_onnx
    from imagelearn.classify.runtime import configure_torch
    from imagelearn.data import load_splits

    configure_torch()
    load_before = os.getloadavg()[0]
    train, held_out, _ = load_splits(DATA / "hymenoptera")
    results: dict = {"threads": torch.get_num_threads(), "n_train": len(train)}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        timings = []
        for run in ("first", "second"):
            model = DeepImageClassifier(cache_dir=scratch / "cache", patience=0, epochs=30)
            started = time.perf_counter()
            model.fit(train.paths, train.labels, class_names=train.class_names)
            timings.append(time.perf_counter() - started)
            results[f"features_fit_seconds_{run}"] = timings[-1]
        results["features_accuracy_224"] = float(model.score(held_out.paths, held_out.labels))
        export_onnx(model, scratch / "model.onnx", held_out.paths[:16])
        sample = torch.stack(
            [
                model.preprocessing_.evaluate(model.preprocessing_.load(p))
                for p in held_out.paths[:32]
            ]
        )
        results.update(inference_rates(model, sample.numpy(), scratch / "model.onnx"))
        subset = train.subset(np.arange(0, len(train), 4))
        for mode in ("finetune", "scratch"):
            trainer = DeepImageClassifier(
                mode=mode,
                epochs=1,
                head_epochs=1,
                image_size=128,
                patience=0,
                cache_dir=scratch / "cache",
            )
            trainer.fit(subset.paths, subset.labels, class_names=train.class_names)
            seconds = next(row["seconds"] for row in trainer.history_ if row["phase"] == mode)
            results[f"{mode}_train_images_per_second_128"] = len(subset) / seconds
    results["load_average_before_after"] = [load_before, os.getloadavg()[0]]
    ratios = {
        "onnx_vs_eager_batch1": results["onnxruntime_batch1"] / results["pytorch_eager_batch1"],
        "onnx_vs_eager_batch32": results["onnxruntime_batch32"] / results["pytorch_eager_batch32"],
        "features_first_vs_second_run": results["features_fit_seconds_first"]
        / results["features_fit_seconds_second"],
    }
    results["ratios"] = ratios
    atomic_write_json(RESULTS / "classify.json", results)
    return "\n".join(
        [
            "## classify: MobileNetV2 inference, embedding cache, training speed",
            "",
            f"CPU, {results['threads']} torch threads, load average {load_before:.1f} before the run. Network only (224 px), images/s:",
            "",
            "| | batch 1 | batch 32 |",
            "|---|---:|---:|",
            f"| PyTorch eager | {results['pytorch_eager_batch1']:.1f} | {results['pytorch_eager_batch32']:.1f} |",
            f"| ONNX Runtime | {results['onnxruntime_batch1']:.1f} | {results['onnxruntime_batch32']:.1f} |",
            f"| **ratio ONNX / eager** | **{ratios['onnx_vs_eager_batch1']:.2f}x** | **{ratios['onnx_vs_eager_batch32']:.2f}x** |",
            "",
            "| `features` fit, hymenoptera (245 images, 224 px, 30 head epochs) | seconds |",
            "|---|---:|",
            f"| first run (embeddings computed) | {results['features_fit_seconds_first']:.1f} |",
            f"| second run (embeddings from the cache) | {results['features_fit_seconds_second']:.2f} |",
            f"| **ratio first / second** | **{ratios['features_first_vs_second_run']:.0f}x** |",
            "",
            f"Training throughput at 128 px: finetune {results['finetune_train_images_per_second_128']:.1f} images/s, "
            f"scratch {results['scratch_train_images_per_second_128']:.1f} images/s "
            f"(validation accuracy of the features model: {results['features_accuracy_224']:.3f}).",
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
