"""``imagelearn classify train | predict | evaluate | export | backbones``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from imagelearn.cli.arguments import (
    add_alias,
    add_backbone_options,
    add_cache_dir,
    add_engine,
    add_evaluation_arguments,
    add_output_dir,
    add_overwrite,
    add_prediction_arguments,
    add_source,
    add_split_options,
    add_strict,
    add_verbs,
    json_text,
    write_output,
)

if TYPE_CHECKING:
    from imagelearn.evaluation.result import EvaluationResult

#: :data:`imagelearn.classify.classifier.MODES`, copied: importing it imports torch.
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
    add_output_dir(
        train,
        "run directory: model, metrics, plots (default: %(default)s)",
        default="runs/classify",
    )
    add_overwrite(train)
    train.add_argument(
        "--mode",
        choices=MODES,
        default="features",
        help="frozen features + linear head, finetune, or scratch (default: %(default)s)",
    )
    add_backbone_options(train, training=True)
    train.add_argument(
        "--init", default=None, help="a run directory whose trained backbone starts this model"
    )
    train.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs (default: features 30, finetune 6, scratch 15)",
    )
    train.add_argument(
        "--head-epochs",
        type=int,
        default=10,
        help="finetune: head epochs before unfreezing (default: %(default)s)",
    )
    train.add_argument(
        "--learning-rate", type=float, default=None, help="head learning rate (default: 1e-3)"
    )
    add_alias(train, "--lr", "learning_rate", type=float)
    train.add_argument(
        "--unfreeze",
        type=float,
        default=0.5,
        help="finetune: fraction of top backbone stages trained (default: %(default)s)",
    )
    train.add_argument(
        "--patience",
        type=int,
        default=5,
        help="early-stopping patience in epochs, 0: off (default: %(default)s)",
    )
    train.add_argument("--no-augment", action="store_true", help="no random crops and flips")
    train.add_argument(
        "--class-weight",
        choices=("balanced", "none"),
        default="balanced",
        help="weight the loss by inverse class frequency, or not (default: %(default)s)",
    )
    add_alias(train, "--no-class-weights", "class_weight", action="store_const", const="none")
    add_split_options(train)
    train.add_argument(
        "--resume", action="store_true", help="continue the unfinished run checkpointed in --out"
    )
    _common(train)
    train.set_defaults(handler=run_train)

    predict = verbs.add_parser("predict", help="top-k classes of images")
    add_prediction_arguments(predict, MODEL_HELP)
    predict.add_argument(
        "--top-k", type=int, default=3, help="classes per image (default: %(default)s)"
    )
    add_alias(predict, "--topk", "top_k", type=int)
    _backend(predict)
    _common(predict)
    add_engine(predict)
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
        "--check-images",
        nargs="*",
        default=None,
        help="images or folders to check on (default: the run's own)",
    )
    add_alias(export, "--check", "check_images", nargs="*")
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
        help="PyTorch, or ONNX Runtime on an export (default: %(default)s)",
    )


def _accuracy(result: EvaluationResult, images: str) -> str:
    """``accuracy A on N IMAGES``, with sensitivity and specificity when there are two classes."""
    metrics = result.metrics
    summary = f"accuracy {result.accuracy:.3f} on {result.n_images} {images}"
    if "sensitivity" in metrics:
        summary += (
            f", sensitivity {metrics['sensitivity']:.3f}, specificity {metrics['specificity']:.3f}"
        )
    return summary


def run_train(arguments: argparse.Namespace) -> int:
    from imagelearn.classify import DeepImageClassifier
    from imagelearn.classify.runs import train_run

    model = DeepImageClassifier(
        backbone=arguments.backbone,
        weights=arguments.weights,
        mode=arguments.mode,
        epochs=arguments.epochs,
        head_epochs=arguments.head_epochs,
        batch_size=arguments.batch_size,
        learning_rate=arguments.learning_rate,
        image_size=arguments.image_size,
        init=arguments.init,
        class_weight=None if arguments.class_weight == "none" else arguments.class_weight,
        patience=arguments.patience,
        unfreeze=arguments.unfreeze,
        augment=not arguments.no_augment,
        random_state=arguments.random_state,
        device=arguments.device,
        cache_dir=arguments.cache_dir,
        checkpoint_dir=arguments.out,
        resume=arguments.resume,
        strict=arguments.strict,
    )
    result = train_run(
        arguments.source,
        arguments.out,
        model,
        test_size=arguments.test_size,
        random_state=arguments.random_state,
        overwrite=arguments.overwrite,
    )
    print(
        f"{_accuracy(result, 'held-out images')}; {len(result.skipped)} unreadable skipped; "
        f"fit {result.metrics['fit_seconds']:.1f} s; run in {result.out}"
    )
    return 0


def run_predict(arguments: argparse.Namespace) -> int:
    from imagelearn.classify.runs import predict_images

    result = predict_images(
        arguments.model,
        arguments.images,
        top_k=arguments.top_k,
        backend=arguments.backend,
        device=arguments.device,
        cache_dir=arguments.cache_dir,
        strict=arguments.strict,
    )
    text = json_text(result.as_records()) if arguments.format == "json" else result.to_csv()
    write_output(text, arguments.output)
    return 0 if result.n_labeled else 1


def run_evaluate(arguments: argparse.Namespace) -> int:
    from imagelearn.classify.runs import evaluate_run

    result = evaluate_run(
        arguments.model,
        arguments.source,
        out=arguments.out,
        backend=arguments.backend,
        device=arguments.device,
        cache_dir=arguments.cache_dir,
        strict=arguments.strict,
    )
    print(
        f"{_accuracy(result, 'images')}; {len(result.skipped)} unreadable skipped; report in {result.out}"
    )
    return 0


def run_export(arguments: argparse.Namespace) -> int:
    from imagelearn.classify.runs import export_run

    result = export_run(arguments.model, onnx=arguments.onnx, check_images=arguments.check_images)
    check = result.check
    print(
        f"wrote {result.onnx}; checked on {check.n_images} images: same top-1 {check.same_top1}, "
        f"max probability difference {check.max_probability_difference:.1e}"
    )
    return 0


def run_backbones(arguments: argparse.Namespace) -> int:
    from imagelearn.classify.runs import list_backbones

    for backbone in list_backbones():
        offline = " [offline weights installed]" if backbone.offline_weights else ""
        default = " (default)" if backbone.default else ""
        print(f"{backbone.name}{default}: {backbone.weights}{offline}")
    return 0
