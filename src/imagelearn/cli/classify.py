"""``imagelearn classify train | predict | evaluate | export | backbones``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from imagelearn.cli.arguments import (
    add_backbone_options,
    add_cache_dir,
    add_evaluation_arguments,
    add_output_dir,
    add_prediction_arguments,
    add_source,
    add_split_options,
    add_strict,
    add_verbs,
    json_text,
    write_output,
)

log = logging.getLogger(__name__)

MODES = ("features", "finetune", "scratch")

#: Help of the model that ``predict`` and ``evaluate`` read.
MODEL_HELP = "a run directory, or an .onnx file with --backend onnx"


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs(
        subparsers, "classify", help="deep image classification (torchvision backbones)"
    )

    train = verbs.add_parser(
        "train", help="train a classifier on a collection; writes a run directory"
    )
    add_source(train)
    add_output_dir(train, "run directory (model, metrics, plots)", default="runs/classify")
    train.add_argument(
        "--mode",
        choices=MODES,
        default="features",
        help="frozen features + linear head (default), finetune, or scratch",
    )
    add_backbone_options(train, training=True)
    train.add_argument(
        "--init", default=None, help="a run directory whose trained backbone starts this model"
    )
    train.add_argument(
        "--epochs", type=int, default=None, help="default: features 30, finetune 6, scratch 15"
    )
    train.add_argument(
        "--head-epochs", type=int, default=10, help="finetune: head epochs before unfreezing"
    )
    train.add_argument("--lr", type=float, default=None, help="head learning rate (default 1e-3)")
    train.add_argument(
        "--unfreeze",
        type=float,
        default=0.5,
        help="finetune: fraction of top backbone stages trained",
    )
    train.add_argument(
        "--patience", type=int, default=5, help="early-stopping patience in epochs (0: off)"
    )
    train.add_argument("--no-augment", action="store_true", help="no random crops and flips")
    train.add_argument(
        "--no-class-weights",
        action="store_true",
        help="do not weight the loss by inverse class frequency",
    )
    add_split_options(train)
    train.add_argument(
        "--resume", action="store_true", help="continue the run checkpointed in --out"
    )
    _common(train)
    train.set_defaults(handler=run_train)

    predict = verbs.add_parser("predict", help="top-k classes of images")
    add_prediction_arguments(predict, MODEL_HELP)
    predict.add_argument("--topk", type=int, default=3)
    _backend(predict)
    _common(predict)
    predict.set_defaults(handler=run_predict)

    evaluate = verbs.add_parser(
        "evaluate", help="metrics, confusion matrix and misclassified images on labelled data"
    )
    add_evaluation_arguments(
        evaluate,
        MODEL_HELP,
        "source",
        "class folders (or a split folder: test/ then val/ is used) or a CSV",
    )
    _backend(evaluate)
    _common(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    export = verbs.add_parser(
        "export", help="export to ONNX, checked against PyTorch on real images"
    )
    export.add_argument("model", help="a run directory")
    export.add_argument("--onnx", default=None, help="output file (default: MODEL/model.onnx)")
    export.add_argument(
        "--check",
        nargs="*",
        default=None,
        help="images or folders to check on (default: the run's own)",
    )
    export.set_defaults(handler=run_export)

    backbones = verbs.add_parser("backbones", help="list the registered backbones")
    backbones.set_defaults(handler=run_backbones)


def _common(parser: argparse.ArgumentParser) -> None:
    add_strict(parser)
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1... (default: the GPU when there is one)"
    )
    add_cache_dir(parser)


def _backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="PyTorch, or ONNX Runtime (needs an export)",
    )


def _held_out_splits(source: Path, test_size: float, seed: int):
    """Training, validation (early stopping) and test (metrics) sets; validation may be the test set."""
    from imagelearn.data import load_dataset, load_splits

    train, held_out, how = load_splits(source, test_size, seed)
    if how == "given:test" and (source / "val").is_dir():
        return train, load_dataset(source / "val", train.class_names), held_out, "given:val+test"
    return train, held_out, held_out, how


def run_train(arguments: argparse.Namespace) -> int:
    from imagelearn.classify import DeepImageClassifier
    from imagelearn.classify.training import history_csv, plot_curves

    source, out = Path(arguments.source), Path(arguments.out)
    train, validation, test, how = _held_out_splits(source, arguments.test_size, arguments.random_state)
    model = DeepImageClassifier(
        backbone=arguments.backbone,
        weights=arguments.weights,
        mode=arguments.mode,
        epochs=arguments.epochs,
        head_epochs=arguments.head_epochs,
        batch_size=arguments.batch_size,
        learning_rate=arguments.lr,
        image_size=arguments.image_size,
        init=arguments.init,
        class_weight=None if arguments.no_class_weights else "balanced",
        patience=arguments.patience,
        unfreeze=arguments.unfreeze,
        augment=not arguments.no_augment,
        seed=arguments.random_state,
        device=arguments.device,
        cache_dir=arguments.cache_dir,
        checkpoint_dir=out,
        resume=arguments.resume,
        strict=arguments.strict,
    )
    log.info(
        "training %s (%s) on %d images, %d classes; held out: %s",
        arguments.mode,
        arguments.backbone,
        len(train),
        len(train.class_names),
        how,
    )
    started = time.perf_counter()
    model.fit(
        train.paths,
        train.labels,
        validation=(validation.paths, validation.labels),
        class_names=train.class_names,
    )
    fit_seconds = time.perf_counter() - started
    model.save(out, files={"history.csv": history_csv(model.history_).encode()})
    plot_curves(model.history_, out / "curves.png", f"{arguments.mode} / {model.backbone_name_}")
    prediction = model.predict_images(test.paths)
    extra = {
        "split": how,
        "mode": arguments.mode,
        "backbone": model.backbone_name_,
        "n_train": len(train),
        "fit_seconds": round(fit_seconds, 2),
        "skipped": [
            {"path": path, "reason": reason}
            for path, reason in model.skipped_ + prediction.failures
        ],
    }
    metrics = _write_evaluation(out, test, prediction, extra)
    print(
        f"{_accuracy(metrics, 'held-out images')}; {len(extra['skipped'])} unreadable skipped; fit {fit_seconds:.1f} s; run in {out}"
    )
    return 0


def _write_evaluation(out: Path, dataset, prediction, extra: dict) -> dict:
    """Metrics and plots of ``prediction`` on the labelled ``dataset``, written into ``out``."""
    from imagelearn.evaluation import write_evaluation

    return write_evaluation(
        out,
        [dataset.paths[i] for i in prediction.kept],
        dataset.labels[prediction.kept],
        prediction.probabilities.argmax(1),
        dataset.class_names,
        extra,
    )


def _accuracy(metrics: dict, images: str) -> str:
    """``accuracy A on N IMAGES``, with sensitivity and specificity when there are two classes."""
    summary = f"accuracy {metrics['accuracy']:.3f} on {metrics['n_images']} {images}"
    if "sensitivity" in metrics:
        summary += (
            f", sensitivity {metrics['sensitivity']:.3f}, specificity {metrics['specificity']:.3f}"
        )
    return summary


def _image_list(items: list[str]) -> list[Path]:
    from imagelearn.data import find_images

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        paths.extend(find_images(path) if path.is_dir() else [path])
    return paths


def _predictor(arguments: argparse.Namespace):
    """Something with ``class_names_`` and ``predict_images(images, strict)``."""
    model = Path(arguments.model)
    if arguments.backend == "onnx":
        from imagelearn.classify.onnx_export import OnnxClassifier

        return OnnxClassifier(model / "model.onnx" if model.is_dir() else model)
    from imagelearn.classify import DeepImageClassifier

    classifier = DeepImageClassifier.load(model, device=arguments.device)
    return classifier.set_params(cache_dir=arguments.cache_dir)


def run_predict(arguments: argparse.Namespace) -> int:
    import csv
    import io

    import numpy as np

    paths = _image_list(arguments.images)
    if not paths:
        raise FileNotFoundError(f"no images in {' '.join(arguments.images)}")
    predictor = _predictor(arguments)
    prediction = predictor.predict_images(paths, strict=arguments.strict)
    k = max(1, min(arguments.topk, len(predictor.class_names_)))
    rows = []
    for row_index, image_index in enumerate(prediction.kept):
        order = np.argsort(-prediction.probabilities[row_index], kind="stable")[:k]
        rows.append({
            "path": str(paths[image_index]),
            "top": [(predictor.class_names_[c], float(prediction.probabilities[row_index, c])) for c in order],
            "error": "",
        })  # fmt: skip
    rows += [{"path": path, "top": [], "error": reason} for path, reason in prediction.failures]
    if arguments.format == "json":
        payload = [
            {
                "path": row["path"],
                "predictions": [
                    {"label": label, "probability": round(p, 6)} for label, p in row["top"]
                ],
            }
            | ({"error": row["error"]} if row["error"] else {})
            for row in rows
        ]
        text = json_text(payload)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(
            [
                "path",
                *[
                    f"{name}_{rank}"
                    for rank in range(1, k + 1)
                    for name in ("label", "probability")
                ],
                "error",
            ]
        )
        for row in rows:
            cells = [value for label, p in row["top"] for value in (label, f"{p:.6f}")]
            writer.writerow([row["path"], *cells, *[""] * (2 * k - len(cells)), row["error"]])
        text = buffer.getvalue()
    write_output(text, arguments.output)
    return 0 if len(prediction.kept) else 1


def run_evaluate(arguments: argparse.Namespace) -> int:
    from imagelearn.data import load_dataset
    from imagelearn.data.collection import SPLIT_NAMES

    predictor = _predictor(arguments)
    source = Path(arguments.source)
    split = next(
        (source / name for name in reversed(SPLIT_NAMES) if (source / name).is_dir()), source
    )
    dataset = load_dataset(split, predictor.class_names_)
    dataset.require_classes(1, split)
    started = time.perf_counter()
    prediction = predictor.predict_images(dataset.paths, strict=arguments.strict)
    seconds = time.perf_counter() - started
    out = (
        Path(arguments.out)
        if arguments.out
        else (
            Path(arguments.model)
            if Path(arguments.model).is_dir()
            else Path(arguments.model).parent
        )
        / "evaluation"
    )
    metrics = _write_evaluation(
        out,
        dataset,
        prediction,
        {
            "source": str(split),
            "backend": arguments.backend,
            "predict_seconds": round(seconds, 2),
            "skipped": [{"path": path, "reason": reason} for path, reason in prediction.failures],
        },
    )
    print(
        f"{_accuracy(metrics, 'images')}; {len(prediction.failures)} unreadable skipped; report in {out}"
    )
    return 0


def run_export(arguments: argparse.Namespace) -> int:
    import csv

    from imagelearn.classify import DeepImageClassifier
    from imagelearn.classify.onnx_export import export_onnx

    model_dir = Path(arguments.model)
    model = DeepImageClassifier.load(model_dir)
    if arguments.check is not None:
        check_images = _image_list(arguments.check)
    else:  # the run's held-out images it got wrong, then a few it was trained on
        check_images = []
        misclassified = model_dir / "misclassified.csv"
        if misclassified.is_file():
            with misclassified.open(newline="", encoding="utf-8") as stream:
                check_images = [Path(row["path"]) for row in csv.DictReader(stream)]
        check_images = [
            path
            for path in check_images + [Path(p) for p in model.example_images_]
            if path.is_file()
        ][:32]
    target = Path(arguments.onnx) if arguments.onnx else model_dir / "model.onnx"
    check = export_onnx(model, target, check_images)
    print(
        f"wrote {target}; checked on {check.n_images} images: same top-1 {check.same_top1}, "
        f"max probability difference {check.max_probability_difference:.1e}"
    )
    return 0


def run_backbones(arguments: argparse.Namespace) -> int:
    from imagelearn.classify import BACKBONES, DEFAULT_BACKBONE
    from imagelearn.classify.weights import offline_candidates

    for name, spec in sorted(BACKBONES.items()):
        weights = spec.weights or spec.weights_file or "none (train from scratch)"
        offline = " [offline weights installed]" if offline_candidates(spec) else ""
        default = " (default)" if name == DEFAULT_BACKBONE else ""
        print(f"{name}{default}: {weights}{offline}")
    return 0
