"""What every plot shows: whole-number epoch ticks, one legend entry per cluster, montage captions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import data_path
from imagelearn.classify.training import curves_figure
from imagelearn.classify.transfer import Arm, TransferReport, transfer_figure
from imagelearn.cluster.report import cluster_map_figure, montage
from imagelearn.core.plotting import category_colors, pyplot
from imagelearn.segment.render import default_colors


def visible_ticks(axes) -> list[float]:
    low, high = sorted(axes.get_xlim())
    return [float(tick) for tick in axes.get_xticks() if low <= tick <= high]


def arm(mode: str, fraction: float, n_train: int, curve: list[float]) -> Arm:
    best = max(curve)
    return Arm(mode, fraction, n_train, curve[0], float(np.mean(curve)), 1, best, 1.0, curve)


def test_the_transfer_learning_curve_has_whole_epoch_ticks() -> None:
    # three epochs: matplotlib's default ticks would be 1.00, 1.25, 1.50 ... 3.00
    report = TransferReport(
        [
            arm("scratch", 0.25, 21, [0.20, 0.23, 0.26]),
            arm("features", 0.25, 21, [0.60, 0.63, 0.60]),
            arm("scratch", 1.0, 85, [0.29, 0.29, 0.40]),
            arm("features", 1.0, 85, [0.71, 0.66, 0.69]),
        ],
        "seeded",
        35,
    )
    figure = transfer_figure(report)
    epoch_axes, size_axes = figure.axes
    assert visible_ticks(epoch_axes) == [1.0, 2.0, 3.0]
    assert visible_ticks(size_axes) == [21.0, 85.0]
    assert [line.get_label() for line in epoch_axes.get_lines()] == ["scratch", "features"]
    pyplot().close(figure)


def test_the_training_curves_have_whole_epoch_ticks() -> None:
    history = [
        {"epoch": epoch, "phase": phase, "loss": 1.0 / epoch, "val_loss": 1.1 / epoch,
         "train_accuracy": 0.5, "val_accuracy": 0.4}
        for epoch, phase in [(1, "head"), (2, "head"), (3, "finetune")]
    ]  # fmt: skip
    figure = curves_figure(history, "finetune / mobilenet_v2")
    for axes in figure.axes:
        ticks = visible_ticks(axes)
        assert ticks and all(tick.is_integer() for tick in ticks), ticks
    pyplot().close(figure)


def test_the_cluster_map_has_one_legend_entry_per_cluster() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, -1], [30, 20, 10, 5])
    figure = cluster_map_figure(rng.normal(size=(len(labels), 2)), labels, "map")
    (axes,) = figure.axes  # a legend, no colour bar
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["cluster 0 (30)", "cluster 1 (20)", "cluster 2 (10)", "noise (5)"]
    colors = [tuple(collection.get_facecolor()[0][:3]) for collection in axes.collections]
    assert len(set(colors)) == 4, "a colour of its own per cluster"
    pyplot().close(figure)


@pytest.mark.parametrize("n_categories", [3, 10, 20])
def test_category_colors_are_distinct_and_shared_with_segmentation(n_categories: int) -> None:
    colors = category_colors(n_categories)
    assert len(set(colors)) == n_categories
    assert default_colors(n_categories) == colors


def test_a_montage_says_how_many_of_the_cluster_it_shows(tmp_path) -> None:
    photos = sorted(data_path("flowers5", "daisy").glob("*.jpg"))[:12]
    montage(photos, tmp_path / "montage.png", columns=4, limit=8)
    with Image.open(tmp_path / "montage.png") as image:
        assert image.text["Description"] == "8 of 12 images"
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape == (24 + 2 * 96, 4 * 96)
    assert pixels[:24].min() < 128, "the caption is drawn above the thumbnails"
    assert pixels[24 + 96 :, :].std() > 10, "the second row holds photos"
