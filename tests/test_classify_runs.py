"""The run functions of ``imagelearn classify`` and ``transfer`` from Python, on a small real sample,
and the old command-line spellings."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import data_path, hymenoptera_csv
from imagelearn.classify import DeepImageClassifier, build_backbone
from imagelearn.classify.runs import (
    compare_transfer,
    evaluate_run,
    export_run,
    list_backbones,
    predict_images,
    train_run,
)
from imagelearn.cli.main import build_parser, user_message
from imagelearn.core.errors import ParameterError

pytestmark = pytest.mark.usefixtures("single_torch_thread")

#: A small network on small images: seconds per run on a CPU core.
SMALL = dict(
    backbone="small_cnn", mode="scratch", epochs=2, image_size=32, batch_size=8, cache_dir=""
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """A CSV of 12 hymenoptera training photos per class (ants, bees)."""
    return hymenoptera_csv(tmp_path_factory.mktemp("sample"), 12)


@pytest.fixture(scope="module")
def trained(sample: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "small"
    model = DeepImageClassifier(**SMALL, checkpoint_dir=out)
    return train_run(sample, out, model, test_size=0.25, random_state=0)


def test_train_run_saves_the_model_curves_and_held_out_metrics(trained) -> None:
    assert dataclasses.is_dataclass(trained)
    with pytest.raises(dataclasses.FrozenInstanceError):
        trained.out = Path("elsewhere")
    assert trained.metrics["split"] == "stratified:0.25:seed=0"
    assert trained.n_images == 6 and trained.metrics["n_train"] == 18
    assert 0.0 <= trained.accuracy <= 1.0 and trained.skipped == []
    assert json.loads((trained.out / "metrics.json").read_text()) == trained.metrics
    for name in ("manifest.json", "history.csv", "curves.png", "confusion_matrix.png"):
        assert (trained.out / name).is_file(), name
    assert len(trained.model.history_) == 2 and trained.model.class_names_ == ["ants", "bees"]


def test_predict_images_reports_top_classes_and_unreadable_files(trained) -> None:
    bees = sorted(data_path("hymenoptera", "val", "bees").iterdir())[:3]
    corrupt = data_path("bad_inputs", "mixed_images", "ukbench09268_corrupt.jpg")
    result = predict_images(trained.out, [*bees, corrupt], top_k=5)
    assert result.top_k == 2 and result.n_labeled == 3
    assert [image.path for image in result.images] == [str(path) for path in [*bees, corrupt]]
    for image in result.images[:3]:
        assert {label for label, _ in image.top} == {"ants", "bees"}
        assert sum(p for _, p in image.top) == pytest.approx(1.0, abs=1e-5)
    assert result.images[3].top == () and result.images[3].error
    probabilities = trained.model.predict_proba(bees)
    assert [image.top[0][0] for image in result.images[:3]] == [
        trained.model.class_names_[c] for c in probabilities.argmax(1)
    ]
    rows = list(csv.DictReader(result.to_csv().splitlines()))
    assert list(rows[0]) == [
        "path",
        "label_1",
        "probability_1",
        "label_2",
        "probability_2",
        "error",
    ]
    assert rows[3]["error"] and not rows[3]["label_1"]
    records = result.as_records()
    assert "error" in records[3] and "error" not in records[0]
    assert len(records[0]["predictions"]) == 2
    with pytest.raises(FileNotFoundError):
        predict_images(trained.out, [])


def test_evaluate_run_writes_into_the_run_by_default(trained) -> None:
    result = evaluate_run(trained.out, data_path("hymenoptera"))
    assert result.out == trained.out / "evaluation"
    assert result.metrics["source"].endswith("val") and result.n_images == 153
    assert json.loads((result.out / "metrics.json").read_text())["accuracy"] == result.accuracy


def test_export_run_and_the_onnx_backend_agree_with_pytorch(trained, tmp_path: Path) -> None:
    exported = export_run(trained.out, onnx=tmp_path / "small.onnx")
    assert exported.onnx == tmp_path / "small.onnx" and exported.onnx.is_file()
    assert exported.check.passed and exported.check.n_images > 0
    images = sorted(data_path("hymenoptera", "val", "ants").iterdir())[:4]
    torch_top = [i.top[0][0] for i in predict_images(trained.out, images).images]
    onnx_top = [i.top[0][0] for i in predict_images(exported.onnx, images, backend="onnx").images]
    assert onnx_top == torch_top
    with pytest.raises(ParameterError) as error:
        predict_images(trained.out, images, backend="tensorflow")
    assert error.value.parameter == "backend"


def test_list_backbones_names_one_default() -> None:
    backbones = {backbone.name: backbone for backbone in list_backbones()}
    assert {"small_cnn", "mobilenet_v2", "resnet18"} <= set(backbones)
    assert [name for name, backbone in backbones.items() if backbone.default] == ["mobilenet_v2"]
    assert backbones["small_cnn"].weights == "none (train from scratch)"


def test_compare_transfer_returns_a_frozen_report(sample: Path, tmp_path: Path) -> None:
    report = compare_transfer(
        sample,
        fractions=(0.5, 1.0),
        modes=("scratch",),
        epochs=1,
        image_size=32,
        backbone="small_cnn",
        random_state=0,
        out=tmp_path,
        cache_dir="",
    )
    assert [(arm.mode, arm.n_train) for arm in report.arms] == [("scratch", 8), ("scratch", 16)]
    assert report.n_held_out == 8 and report.json_path == tmp_path / "transfer.json"
    assert report.plot_path.is_file()
    assert json.loads(report.json_path.read_text()) == json.loads(json.dumps(report.as_dict()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.split = "other"
    with pytest.raises(ParameterError, match="modes must be some of"):
        compare_transfer(sample, modes=("scratch", "zero-shot"))


def test_library_errors_name_the_parameter_and_the_cli_adds_the_flag(rng) -> None:
    images = list(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ParameterError) as error:
        DeepImageClassifier(**(SMALL | {"weights": "imagenet"})).fit(images, [0, 1, 0, 1])
    assert error.value.parameter == "weights" and "--" not in str(error.value)
    assert user_message(error.value).endswith("(--weights)")
    with pytest.raises(ParameterError) as error:
        build_backbone("small_cnn", "imagenet")
    assert error.value.parameter == "weights" and "--" not in str(error.value)
    with pytest.raises(ParameterError, match="unknown backbone") as error:
        build_backbone("resnet7", "none")
    assert user_message(error.value).endswith("(--backbone)")
    for name, value in [
        ("epochs", 0),
        ("epochs", -3),
        ("batch_size", 0),
        ("head_epochs", -1),
        ("patience", -1),
        ("learning_rate", 0.0),
    ]:  # refused before any work: they would train nothing, divide by zero or diverge
        with pytest.raises(ParameterError, match=f"{name} must be") as error:
            DeepImageClassifier(**(SMALL | {name: value})).fit(images, [0, 1, 0, 1])
        assert user_message(error.value).endswith(f"(--{name.replace('_', '-')})")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            "classify train d --lr 0.01 --no-class-weights --seed 3",
            "classify train d --learning-rate 0.01 --class-weight none --random-state 3",
        ),
        (
            "classify predict m a.jpg --topk 5 --json",
            "classify predict m a.jpg --top-k 5 --format json",
        ),
        ("classify export m --check a.jpg b/", "classify export m --check-images a.jpg b/"),
        (
            "bof train d --out o --words 300 --color-words 0 --jobs 2 --seed 1",
            "bof train d --out o --n-words 300 --color-n-words 0 --n-jobs 2 --random-state 1",
        ),
        ("bof sweep d --out o --words 16,64", "bof sweep d --out o --n-words 16,64"),
        ("bof predict m a.jpg --json --jobs 1", "bof predict m a.jpg --format json --n-jobs 1"),
        (
            "transfer compare d --seed 2 --modes scratch,,features",
            "transfer compare d --random-state 2 --modes scratch,features",
        ),
    ],
)
def test_old_flag_spellings_still_parse(old: str, new: str) -> None:
    parser = build_parser()
    assert vars(parser.parse_args(old.split())) == vars(parser.parse_args(new.split()))


def test_new_flags_reach_the_api_names() -> None:
    arguments = build_parser().parse_args(["bof", "sweep", "d", "--out", "o", "--n-words", "8,16"])
    assert arguments.n_words == [8, 16]
    arguments = build_parser().parse_args(["transfer", "compare", "d"])
    assert arguments.modes == ["scratch", "finetune", "features"]
