"""Transfer learning, measured: the same split and budget with and without ImageNet weights.

Each arm (a mode at a training-set fraction) is summarized by its validation learning curve:

* ``start``: validation accuracy after the first epoch;
* ``slope``: area under the learning curve, the mean validation accuracy over the epochs
  (1.0 = perfect from the first epoch), and ``epochs_to_90``: the first epoch within 90% of
  the arm's best;
* ``asymptote``: the best validation accuracy.

For ``finetune`` the curve is that of the full-network epochs (its head is first fitted on
cached embeddings); for ``features`` it is that of the head epochs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from imagelearn.classify.backbones import DEFAULT_BACKBONE
from imagelearn.classify.classifier import MODES, DeepImageClassifier
from imagelearn.core.bundle import atomic_write_json
from imagelearn.core.errors import ParameterError
from imagelearn.core.outputs import check_output_directory
from imagelearn.core.plotting import integer_ticks, pyplot, save_figure
from imagelearn.data.collection import load_splits
from imagelearn.data.dataset import ImageDataset

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
DEFAULT_MODES = ("scratch", "finetune", "features")


@dataclass(frozen=True)
class Arm:
    """One training run of the comparison and its learning-curve summary."""

    mode: str
    fraction: float
    n_train: int
    start: float
    slope: float
    epochs_to_90: int
    asymptote: float
    seconds: float
    curve: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class TransferReport:
    """All arms of a comparison, and where its files are."""

    arms: list[Arm]
    split: str
    n_held_out: int
    json_path: Path | None = None
    plot_path: Path | None = None

    def table(self) -> str:
        """A Markdown table: one row per arm."""
        lines = [
            "| mode | train images | start | slope (mean acc) | epochs to 90% | asymptote | seconds |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {arm.mode} | {arm.n_train} | {arm.start:.3f} | {arm.slope:.3f} | {arm.epochs_to_90} | "
            f"{arm.asymptote:.3f} | {arm.seconds:.1f} |"
            for arm in self.arms
        ]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "n_held_out": self.n_held_out,
            "arms": [asdict(arm) for arm in self.arms],
        }


def summarize_curve(accuracies: Sequence[float]) -> dict[str, float | int]:
    """``start``, ``slope`` (mean accuracy), ``epochs_to_90`` and ``asymptote`` of one learning curve."""
    curve = np.asarray(accuracies, dtype=np.float64)
    if len(curve) == 0:
        raise ValueError("an empty learning curve has no summary")
    best = float(curve.max())
    return {
        "start": float(curve[0]),
        "slope": float(curve.mean()),
        "epochs_to_90": int(np.argmax(curve >= 0.9 * best)) + 1,
        "asymptote": best,
    }


def nested_subsets(
    dataset: ImageDataset, fractions: Sequence[float], random_state: int = 0
) -> dict[float, ImageDataset]:
    """Stratified subsets, each containing the smaller ones, with at least one image per class.

    The subsets depend only on ``dataset``, ``fractions`` and ``random_state``.
    """
    rng = np.random.default_rng(random_state)
    orders = [
        rng.permutation(np.flatnonzero(dataset.labels == label))
        for label in range(len(dataset.class_names))
    ]
    subsets = {}
    for fraction in fractions:
        if not 0.0 < fraction <= 1.0:
            raise ParameterError("fractions", f"fractions must be in (0, 1], got {fraction}")
        chosen = [order[: max(1, round(fraction * len(order)))] for order in orders if len(order)]
        subsets[fraction] = dataset.subset(np.sort(np.concatenate(chosen)))
    return subsets


def compare_transfer(
    source: str | os.PathLike,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    modes: Sequence[str] = DEFAULT_MODES,
    epochs: int = 5,
    image_size: int | None = 96,
    backbone: str = DEFAULT_BACKBONE,
    test_size: float = 0.3,
    random_state: int = 0,
    out: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> TransferReport:
    """Train every mode at every training-set fraction on one split; summarise and plot.

    Parameters
    ----------
    source : path
        A collection :func:`~imagelearn.data.load_splits` reads (given split or seeded split).
    fractions : sequence of float in (0, 1]
        Training-set fractions; the subsets are stratified and nested.
    modes : sequence of {"scratch", "finetune", "features"}
    epochs : int
        The same for every arm (full-network epochs, or head epochs for ``features``).
    image_size : int or None
        Network input side, pixels (None: the weights' own).
    random_state : int
        Seed of the split, the subsets and the training.
    out : path, optional
        Receives ``transfer.json`` and ``transfer.png``.
    cache_dir : path or None
        Embedding cache (None: the default, ``""``: none).
    overwrite : bool
        Replace a finished comparison in ``out`` (its ``transfer.json``); without it, one
        there raises :class:`~imagelearn.core.errors.OutputExistsError` before any training.

    Returns
    -------
    TransferReport
    """
    if out is not None:
        out = check_output_directory(out, overwrite, "transfer.json")
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise ParameterError("modes", f"modes must be some of {MODES}, got {list(modes)}")
    train, held_out, how = load_splits(source, test_size, random_state)
    validation = (held_out.paths, held_out.labels)
    arms = []
    for fraction, subset in nested_subsets(train, sorted(fractions), random_state).items():
        for mode in modes:
            model = DeepImageClassifier(
                backbone=backbone, mode=mode, epochs=epochs, image_size=image_size,
                patience=0, random_state=random_state, cache_dir=cache_dir,
            )  # fmt: skip
            started = time.perf_counter()
            model.fit(
                subset.paths, subset.labels, validation=validation, class_names=train.class_names
            )
            curve_phase = "head" if mode == "features" else mode
            curve = [row["val_accuracy"] for row in model.history_ if row["phase"] == curve_phase]
            arm = Arm(
                mode,
                fraction,
                len(subset),
                **summarize_curve(curve),
                seconds=time.perf_counter() - started,
                curve=curve,
            )
            log.info(
                "%s on %d images: start %.3f, asymptote %.3f",
                mode,
                len(subset),
                arm.start,
                arm.asymptote,
            )
            arms.append(arm)
    report = TransferReport(arms, how, len(held_out))
    if out is None:
        return report
    atomic_write_json(out / "transfer.json", report.as_dict())
    return replace(
        report,
        json_path=out / "transfer.json",
        plot_path=plot_transfer(report, out / "transfer.png"),
    )


def transfer_figure(report: TransferReport) -> Any:
    """A matplotlib figure: validation accuracy vs epoch (largest training set), and best
    validation accuracy vs number of training images, one line per mode."""
    figure, (epoch_axes, size_axes) = pyplot().subplots(1, 2, figsize=(10, 4))
    largest = max(arm.fraction for arm in report.arms)
    for mode in dict.fromkeys(arm.mode for arm in report.arms):
        arms = [arm for arm in report.arms if arm.mode == mode]
        for arm in arms:
            if arm.fraction == largest:
                epoch_axes.plot(range(1, len(arm.curve) + 1), arm.curve, "o-", label=mode)
        size_axes.plot(
            [arm.n_train for arm in arms], [arm.asymptote for arm in arms], "o-", label=mode
        )
    epoch_axes.set(
        xlabel="epoch",
        ylabel="validation accuracy",
        ylim=(0, 1.02),
        title="learning curve (all training images)",
    )
    integer_ticks(epoch_axes)
    size_axes.set(
        xlabel="training images",
        ylabel="best validation accuracy",
        ylim=(0, 1.02),
        xscale="log",
        title="data efficiency",
    )
    sizes = sorted({arm.n_train for arm in report.arms})
    size_axes.set_xticks(sizes, [str(size) for size in sizes])
    size_axes.minorticks_off()
    for axes in (epoch_axes, size_axes):
        axes.legend(loc="best")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_transfer(report: TransferReport, path: str | os.PathLike) -> Path:
    """:func:`transfer_figure` saved as PNG at ``path``."""
    return save_figure(transfer_figure(report), path)
