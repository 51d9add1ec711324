"""``DeepImageClassifier``: a CNN classifier trained in one of three modes.

* ``features``: the backbone is frozen; embeddings are computed once (cached on disk, see
  :mod:`imagelearn.classify.embeddings`) and a linear head is trained on them.
* ``finetune``: the head is first trained as in ``features``; then the top stages of the
  backbone (``unfreeze``, a fraction) are trained with the head at lower, discriminative
  learning rates, on augmented images.
* ``scratch``: the whole network from random initialization, on augmented images.

A fitted classifier is saved with :meth:`~imagelearn.core.persistence.PersistentEstimator.save`
and read back with ``DeepImageClassifier.load(directory)``; ``device`` and ``cache_dir`` are
the loading machine's, set with ``set_params`` after loading.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from imagelearn.classify.backbones import DEFAULT_BACKBONE, Backbone, get_spec
from imagelearn.classify.embeddings import EmbeddingResult, compute_embeddings
from imagelearn.classify.network import (
    ClassifierNet,
    discriminative_groups,
    freeze_backbone,
    n_trainable_stages,
)
from imagelearn.classify.preprocess import ImageSource, Preprocessing
from imagelearn.classify.runtime import configure_torch, single_thread
from imagelearn.classify.training import EpochLoop, cosine_schedule, recalibrate_batch_norm
from imagelearn.classify.weights import build_backbone, state_dict_fingerprint
from imagelearn.core.errors import ParameterError
from imagelearn.core.execution import MatrixResult, map_images
from imagelearn.core.persistence import PersistentEstimator
from imagelearn.core.schema import MAX_CLASSES, Fixed, Schema, Skipped, StateSchema
from imagelearn.core.threads import thread_count
from imagelearn.data.dataset import DatasetError

MODES = ("features", "finetune", "scratch")
#: Epochs when none are given: the head on cached embeddings is cheap, full networks are not.
DEFAULT_EPOCHS = {"features": 30, "finetune": 6, "scratch": 15}
#: Learning rate of the head (and of the whole network in ``scratch``) when none is given.
DEFAULT_LEARNING_RATE = 1e-3
#: An epoch of the head (on cached embeddings) makes at least this many optimizer steps, passing
#: over a small training set several times: its steps are cheap, and a head given only a few
#: (one per epoch for 20 images) stays near its random start.
MIN_HEAD_STEPS_PER_EPOCH = 20
#: Training images (unaugmented) whose batch-norm statistics a ``scratch`` network takes after
#: every epoch (see :func:`~imagelearn.classify.training.recalibrate_batch_norm`).
BATCH_NORM_CALIBRATION_IMAGES = 512


@dataclass
class Prediction(MatrixResult):
    """Class probabilities of the readable images of a list: a
    :class:`~imagelearn.core.execution.BatchResult` whose values are one matrix.

    Attributes
    ----------
    values : ndarray of float32, shape (n_kept, n_classes)
        Also :attr:`probabilities`.
    kept : ndarray of int64, shape (n_kept,)
        Indices into the input list.
    failures : list of (path, reason)
        The unreadable images, in input order (``failed``: their indices).
    """

    @property
    def probabilities(self) -> np.ndarray:
        return self.values


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``n / (n_classes * count)`` per class (scikit-learn's "balanced"); 0 for absent classes."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)


class PreprocessingState(Schema):
    """The saved :class:`~imagelearn.classify.preprocess.Preprocessing` (sides in pixels)."""

    crop_size: int = Field(ge=1, le=4096)
    resize_size: int = Field(ge=1, le=8192)
    mean: Fixed[float, 3]
    std: Fixed[float, 3]


class DeepImageClassifierState(StateSchema):
    """The JSON state of a saved :class:`DeepImageClassifier` (the weights are arrays)."""

    backbone_name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    weights_id: str = Field(max_length=200)
    class_names: list[str] = Field(min_length=2, max_length=MAX_CLASSES)
    preprocessing: PreprocessingState
    history: list[dict[str, Any]]
    skipped: Skipped
    example_images: list[str]


class DeepImageClassifier(PersistentEstimator, ClassifierMixin, BaseEstimator):
    """Image classifier on a registered backbone (see :data:`~imagelearn.classify.BACKBONES`).

    Parameters
    ----------
    backbone : str
        Registry name; ignored with ``init`` (the source model's backbone is used).
    weights : {"imagenet", "none"}, path or None
        Backbone weights; None means ``imagenet``, except in ``scratch`` mode (always random).
    mode : {"features", "finetune", "scratch"}
    epochs : int or None
        Epochs of the head (``features``) or of the whole network (``finetune``, ``scratch``);
        None: :data:`DEFAULT_EPOCHS`. A head epoch makes at least
        :data:`MIN_HEAD_STEPS_PER_EPOCH` optimizer steps (several passes over small sets).
    head_epochs : int
        ``finetune`` only: epochs of the head on frozen embeddings before unfreezing.
    batch_size : int
    learning_rate : float or None
        Of the head (and of the network in ``scratch``); unfrozen backbone stages get 1/10 at
        the top down to 1/100 at the lowest. None: :data:`DEFAULT_LEARNING_RATE`.
    image_size : int or None
        Network input side in pixels; None: the weights' own crop size.
    init : path or None
        A saved classifier whose trained backbone (and preprocessing) starts this one.
    class_weight : {"balanced", None}
        Weight the loss by inverse class frequency.
    patience : int
        Early stopping on validation accuracy; 0 disables it. Needs ``validation`` in ``fit``.
    unfreeze : float
        ``finetune`` only: fraction of the backbone's top stages trained (1.0: all).
    augment : bool
        Random resized crops and flips when training on images.
    random_state : int
        Seeds the initialization, the shuffling and the augmentation.
    device : str or None
        Where the network runs (fit and predict); None: the GPU when there is one. A runtime
        setting: not saved.
    cache_dir : path or None
        Embedding cache (None: the default, ``""``: none). A runtime setting: not saved.
    checkpoint_dir : path or None
        Where a checkpoint is written after every epoch.
    resume : bool
        Continue the run checkpointed in ``checkpoint_dir``.
    strict : bool
        Unreadable images raise instead of being skipped with a warning.

    Attributes
    ----------
    network_ : ClassifierNet
        The trained network (eval mode): normalized images -> logits.
    preprocessing_ : Preprocessing
        Resize, crop and normalization used in training; prediction and export use the same.
    classes_ : ndarray of int, shape (n_classes,)
    class_names_ : list of str
    backbone_name_ : str
    history_ : list of dict
        One row per epoch (see :data:`~imagelearn.classify.training.HISTORY_COLUMNS`).
    skipped_ : list of (path, reason)
        Training images that could not be read.
    example_images_ : list of str
        A few training files, to check an ONNX export on.
    """

    bundle_kind = "cnn-classifier"
    state_schema = DeepImageClassifierState

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        weights: str | os.PathLike | None = None,
        mode: str = "features",
        epochs: int | None = None,
        head_epochs: int = 10,
        batch_size: int = 32,
        learning_rate: float | None = None,
        image_size: int | None = None,
        init: str | os.PathLike | None = None,
        class_weight: str | None = "balanced",
        patience: int = 5,
        unfreeze: float = 0.5,
        augment: bool = True,
        random_state: int = 0,
        device: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        strict: bool = False,
    ) -> None:
        self.backbone = backbone
        self.weights = weights
        self.mode = mode
        self.epochs = epochs
        self.head_epochs = head_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.image_size = image_size
        self.init = init
        self.class_weight = class_weight
        self.patience = patience
        self.unfreeze = unfreeze
        self.augment = augment
        self.random_state = random_state
        self.device = device
        self.cache_dir = cache_dir
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.strict = strict

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        images: Sequence[ImageSource],
        y: Sequence[int] | np.ndarray,
        validation: tuple[Sequence[ImageSource], Sequence[int] | np.ndarray] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> DeepImageClassifier:
        """Train on ``images`` (files or uint8 arrays) with integer labels ``y``.

        Parameters
        ----------
        validation : (images, labels), optional
            Scored after every epoch (history, early stopping, best-epoch weights).
        class_names : sequence of str, optional
            Names of labels ``0..n_classes-1``.

        Unreadable images are skipped with a warning and listed in ``skipped_`` (or raise
        :class:`ImageReadError` with ``strict``).
        """
        self._check_training_params()
        labels = np.asarray(y, dtype=np.int64)
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        n_classes = len(class_names) if class_names is not None else int(labels.max(initial=-1)) + 1
        if n_classes < 2 or len(np.unique(labels)) < 2:
            raise DatasetError("training needs images of at least two classes")
        device = configure_torch(self.device)
        torch.manual_seed(self.random_state)
        self.class_names_ = (
            list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
        )
        self.classes_ = np.arange(n_classes)
        self.skipped_: list[tuple[str, str]] = []
        self.example_images_ = [
            str(source) for source in images[:8] if not isinstance(source, np.ndarray)
        ]
        backbone = self._initial_backbone()
        self.backbone_name_ = backbone.name
        self.preprocessing_ = backbone.preprocessing.with_crop_size(self.image_size)
        spec = get_spec(backbone.name)
        if spec.fixed_size and self.preprocessing_.crop_size != spec.fixed_size:
            raise ParameterError(
                "image_size",
                f"backbone {backbone.name!r} takes {spec.fixed_size}-pixel images only",
            )
        network = ClassifierNet(backbone, n_classes).to(device)
        weights = (
            balanced_class_weights(labels, n_classes)
            if self.class_weight == "balanced"
            else np.ones(n_classes)
        )
        loss = nn.CrossEntropyLoss(
            weight=torch.as_tensor(weights, dtype=torch.float32, device=device)
        )
        history: list[dict[str, Any]] = []
        if self.mode in ("features", "finetune"):
            head_epochs = self._epochs() if self.mode == "features" else self.head_epochs
            history += self._fit_head(network, images, labels, validation, loss, head_epochs)
        if self.mode in ("finetune", "scratch"):
            for row in self._fit_network(network, images, labels, validation, loss):
                history.append(
                    {
                        **row,
                        "epoch": row["epoch"]
                        + (self.head_epochs if self.mode == "finetune" else 0),
                    }
                )
            backbone.weights_id = f"trained-{state_dict_fingerprint(backbone.state_dict())}"
        self.network_ = network.eval()
        self.history_ = history
        self.skipped_ = list(dict.fromkeys(self.skipped_))
        return self

    def _check_training_params(self) -> None:
        """Raise :class:`ParameterError` for a mode, a count or a rate that cannot train."""
        if self.mode not in MODES:
            raise ParameterError("mode", f"mode must be one of {MODES}, got {self.mode!r}")
        minimums = {"epochs": 1, "batch_size": 1, "head_epochs": 0, "patience": 0}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | np.integer) or value < minimum):
                raise ParameterError(name, f"{name} must be an integer >= {minimum}, got {value!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ParameterError(
                "learning_rate", f"learning_rate must be > 0, got {self.learning_rate!r}"
            )

    def _epochs(self) -> int:
        return DEFAULT_EPOCHS[self.mode] if self.epochs is None else int(self.epochs)

    def _learning_rate(self) -> float:
        return DEFAULT_LEARNING_RATE if self.learning_rate is None else float(self.learning_rate)

    def _initial_backbone(self) -> Backbone:
        if self.init is not None:
            if self.mode == "scratch":
                raise ParameterError(
                    "init", "init reuses a trained backbone: use it with mode features or finetune"
                )
            source = DeepImageClassifier.load(self.init)
            backbone = source.network_.backbone
            backbone.preprocessing = source.preprocessing_
            return backbone
        if self.mode == "scratch":
            if self.weights not in (None, "none"):
                raise ParameterError(
                    "weights",
                    "mode scratch starts from random weights: leave weights unset or use mode finetune",
                )
            return build_backbone(self.backbone, "none")
        return build_backbone(self.backbone, "imagenet" if self.weights is None else self.weights)

    def _checkpoint(self, name: str) -> Path | None:
        return Path(self.checkpoint_dir) / name if self.checkpoint_dir is not None else None

    def _fingerprint(self) -> dict[str, Any]:
        keys = (
            "backbone",
            "mode",
            "epochs",
            "head_epochs",
            "batch_size",
            "learning_rate",
            "image_size",
            "random_state",
            "unfreeze",
        )
        return {key: getattr(self, key) for key in keys} | {"init": str(self.init)}

    def _embed(self, backbone: Backbone, images: Sequence[ImageSource]) -> EmbeddingResult:
        """Frozen-backbone embeddings of ``images`` through the cache."""
        batch_size = max(self.batch_size, 32)
        return compute_embeddings(
            backbone, images, self.preprocessing_, batch_size, "avg", self.cache_dir, self.strict
        )

    def _fit_head(
        self, network: ClassifierNet, images, labels, validation, loss, epochs: int
    ) -> list[dict[str, Any]]:
        """Train the head on standardized frozen embeddings; fold the scaling into its weights."""
        train = self._embed(network.backbone, images)
        self.skipped_ += train.failures
        _check_readable(labels[train.kept], len(images), train.failures)
        mean = train.vectors.mean(axis=0)
        spread = train.vectors.std(axis=0)
        # a floor keeps dimensions that barely vary in training from getting huge folded weights
        scale = np.maximum(spread, 0.1 * float(np.median(spread)) + 1e-6)
        inputs = torch.from_numpy((train.vectors - mean) / scale)
        targets = torch.from_numpy(labels[train.kept])
        evaluate = None
        if validation is not None:
            held_out = self._embed(network.backbone, validation[0])
            val_inputs = torch.from_numpy((held_out.vectors - mean) / scale)
            val_targets = torch.from_numpy(np.asarray(validation[1], dtype=np.int64)[held_out.kept])
            evaluate = _scorer(network.head, [(val_inputs, val_targets)], loss)
        optimizer = torch.optim.AdamW(
            network.head.parameters(), lr=self._learning_rate(), weight_decay=1e-2
        )
        batches_per_pass = -(-len(targets) // self.batch_size)
        passes = -(-MIN_HEAD_STEPS_PER_EPOCH // batches_per_pass)
        loop = EpochLoop(
            module=network.head,
            optimizer=optimizer,
            scheduler=cosine_schedule(optimizer, epochs),
            train_batches=lambda epoch: (
                batch
                for repeat in range(passes)
                for batch in _shuffled_batches(
                    len(targets),
                    self.batch_size,
                    self.random_state + epoch * passes + repeat,
                    inputs,
                    targets,
                )
            ),
            n_train_batches=passes * batches_per_pass,
            evaluate=evaluate,
            loss=loss,
            phase="head",
        )
        with single_thread():
            history = loop.run(
                epochs,
                self.patience,
                self.random_state,
                self._checkpoint("checkpoint-head.pt"),
                self.resume,
                self._fingerprint(),
            )
        with torch.no_grad():
            linear = network.linear
            scale_tensor = torch.as_tensor(scale, device=linear.weight.device)
            linear.weight.div_(scale_tensor)
            linear.bias.sub_(linear.weight @ torch.as_tensor(mean, device=linear.weight.device))
        return history

    def _prepare_all(
        self, images: Sequence[ImageSource], description: str
    ) -> tuple[list[torch.Tensor], np.ndarray]:
        """Decode and resize every image once (uint8, kept in memory), on threads (decoding and
        resizing release the GIL); the tensors and indices of the readable images."""
        result = map_images(
            self.preprocessing_.load,
            images,
            n_jobs=thread_count(),
            workers="threads",
            strict=self.strict,
            description=description,
        )
        self.skipped_ += result.failures
        return result.values, result.kept

    def _fit_network(
        self, network: ClassifierNet, images, labels, validation, loss
    ) -> list[dict[str, Any]]:
        """Train the network on augmented images (all of it, or the top stages in finetune)."""
        epochs = self._epochs()
        train_images, kept = self._prepare_all(images, "loading training images")
        _check_readable(labels[kept], len(images), self.skipped_)
        targets = torch.from_numpy(labels[kept])
        preprocessing = self.preprocessing_
        transform = preprocessing.augment if self.augment else preprocessing.evaluate
        evaluate = None
        if validation is not None:
            val_images, val_kept = self._prepare_all(validation[0], "loading validation images")
            val_targets = torch.from_numpy(np.asarray(validation[1], dtype=np.int64)[val_kept])
            val_batches = [
                (
                    torch.stack(
                        [preprocessing.evaluate(image) for image in val_images[start : start + 64]]
                    ),
                    val_targets[start : start + 64],
                )
                for start in range(0, len(val_images), 64)
            ]
            evaluate = _scorer(network, val_batches, loss)
        finish_epoch = None  # finetune keeps the ImageNet batch-norm statistics
        if self.mode == "finetune":
            n_trainable = n_trainable_stages(network.backbone, self.unfreeze)
            groups = discriminative_groups(network, n_trainable, self._learning_rate())
            prepare_epoch = partial(freeze_backbone, network, n_trainable)
        else:
            groups = [{"params": list(network.parameters()), "lr": self._learning_rate()}]
            prepare_epoch = None
            # evenly spaced through the training set (which may be sorted by class)
            calibration = train_images[:: -(-len(train_images) // BATCH_NORM_CALIBRATION_IMAGES)]

            def finish_epoch() -> None:
                recalibrate_batch_norm(
                    network,
                    (
                        torch.stack(
                            [preprocessing.evaluate(image) for image in calibration[i : i + 64]]
                        )
                        for i in range(0, len(calibration), 64)
                    ),
                )

        optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)

        def batches(epoch: int):
            for indices, batch_targets in _shuffled_batches(
                len(targets),
                self.batch_size,
                self.random_state + epoch,
                torch.arange(len(targets)),
                targets,
            ):
                yield (
                    torch.stack([transform(train_images[i]) for i in indices.tolist()]),
                    batch_targets,
                )

        loop = EpochLoop(
            module=network,
            optimizer=optimizer,
            scheduler=cosine_schedule(optimizer, epochs),
            train_batches=batches,
            n_train_batches=-(-len(targets) // self.batch_size),
            evaluate=evaluate,
            loss=loss,
            phase=self.mode,
            prepare_epoch=prepare_epoch,
            finish_epoch=finish_epoch,
        )
        return loop.run(
            epochs,
            self.patience,
            self.random_state,
            self._checkpoint("checkpoint.pt"),
            self.resume,
            self._fingerprint(),
        )

    # ------------------------------------------------------------------ prediction

    def predict_images(
        self, images: Sequence[ImageSource], strict: bool | None = None
    ) -> Prediction:
        """Class probabilities of the readable images; unreadable ones are reported (``kept``,
        ``failures``), not fatal.

        ``strict`` (default: the ``strict`` parameter) raises on the first unreadable image.
        Frozen-backbone models (``features``) read their embeddings from the cache. The
        network runs on ``device`` (moved there when it is elsewhere).
        """
        check_is_fitted(self, "network_")
        device = configure_torch(self.device)
        network = self.network_.to(device)
        backbone = network.backbone
        cache = self.cache_dir if self.mode == "features" else ""
        strict = self.strict if strict is None else strict
        result = compute_embeddings(
            backbone, images, self.preprocessing_, max(self.batch_size, 32), "avg", cache, strict
        )
        with torch.inference_mode():
            logits = network.head.eval()(torch.from_numpy(result.vectors).to(device))
            probabilities = torch.softmax(logits, dim=1).cpu().numpy()
        return Prediction(
            probabilities, result.kept, result.failures, result.failed, result.n_computed
        )

    def predict_proba(self, images: Sequence[ImageSource]) -> np.ndarray:
        """Class probabilities, shape ``(n_images, n_classes)``; raises on unreadable images."""
        return self.predict_images(images, strict=True).probabilities

    def predict(self, images: Sequence[ImageSource]) -> np.ndarray:
        """Predicted label indices, shape ``(n_images,)``; raises on unreadable images."""
        return self.predict_proba(images).argmax(axis=1)

    # ------------------------------------------------------------------ persistence

    def _check_saveable(self) -> None:
        check_is_fitted(self, "network_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Backbone, classes, preprocessing and history as JSON; the network's weights as arrays."""
        state = {
            "backbone_name": self.backbone_name_,
            "weights_id": self.network_.backbone.weights_id,
            "class_names": self.class_names_,
            "preprocessing": self.preprocessing_.as_dict(),
            "history": self.history_,
            "skipped": [list(item) for item in self.skipped_],
            "example_images": self.example_images_,
        }
        arrays = {
            name: tensor.detach().cpu().numpy()
            for name, tensor in self.network_.state_dict().items()
        }
        return state, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        backbone = get_spec(state["backbone_name"]).build(None)
        backbone.name = state["backbone_name"]
        backbone.weights_id = state["weights_id"]
        self.preprocessing_ = Preprocessing.from_dict(state["preprocessing"])
        backbone.preprocessing = self.preprocessing_
        self.class_names_ = list(state["class_names"])
        self.classes_ = np.arange(len(self.class_names_))
        head = arrays.get("head.1.weight")
        if head is None or len(head) != len(self.class_names_):
            raise ValueError(f"no head weights for the {len(self.class_names_)} classes")
        network = ClassifierNet(backbone, len(self.class_names_))
        network.load_state_dict({name: torch.from_numpy(array) for name, array in arrays.items()})
        self.network_ = network.eval()
        self.backbone_name_ = backbone.name
        self.history_ = list(state["history"])
        self.skipped_ = [(path, reason) for path, reason in state["skipped"]]
        self.example_images_ = list(state["example_images"])


def _check_readable(
    kept_labels: np.ndarray, n_images: int, failures: Sequence[tuple[str, str]]
) -> None:
    """Refuse training when the readable images do not cover two classes, naming a failure."""
    n_classes = len(np.unique(kept_labels))
    if n_classes >= 2:
        return
    first = f" (first: {failures[0][0]}: {failures[0][1]})" if failures else ""
    raise DatasetError(
        f"only {len(kept_labels)} of {n_images} training images could be read, covering "
        f"{n_classes} class(es); training needs two{first}"
    )


def _shuffled_batches(
    n: int, batch_size: int, random_state: int, inputs: torch.Tensor, targets: torch.Tensor
):
    """Mini-batches of ``(inputs, targets)`` in a seeded random order; a last batch of one is dropped."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(random_state))
    for start in range(0, n, batch_size):
        indices = order[start : start + batch_size]
        if len(indices) > 1 or n == 1:
            yield inputs[indices], targets[indices]


def _scorer(module: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], loss: nn.Module):
    """A function returning the (mean loss, accuracy) of ``module`` in eval mode on ``batches``."""

    def score() -> tuple[float, float]:
        module.eval()
        device = next(module.parameters()).device
        total, correct, seen = 0.0, 0, 0
        with torch.inference_mode():
            for inputs, targets in batches:
                logits = module(inputs.to(device))
                targets = targets.to(device)
                total += float(loss(logits, targets)) * len(targets)
                correct += int((logits.argmax(1) == targets).sum())
                seen += len(targets)
        return total / max(seen, 1), correct / max(seen, 1)

    return score
