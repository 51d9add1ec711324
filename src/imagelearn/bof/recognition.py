"""Object recognition with Bag of Features: histograms of visual words + a linear SVM.

One or more *channels* (a detector with its own vocabulary, e.g. gray dense RootSIFT and
Lab color words) are encoded and concatenated; an additive chi-squared kernel map
(Vedaldi & Zisserman 2012) makes a linear SVM behave like a chi-squared kernel SVM.

A fitted classifier is saved with :meth:`~imagelearn.core.persistence.PersistentEstimator.save`
and read back with ``BofClassifier.load(directory)``; ``n_jobs`` and ``cache_dir`` are the
loading machine's, set with ``set_params`` after loading.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Self

import numpy as np
from pydantic import Field, model_validator
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from imagelearn.bof.estimator import (
    BagOfFeatures,
    BagOfFeaturesState,
    features_as_batch,
    stream_votes,
)
from imagelearn.bof.linear_svm import CHUNK_BYTES, ChunkedLinearSVC, RowStore
from imagelearn.core.bundle import BundleError
from imagelearn.core.errors import ParameterError
from imagelearn.core.execution import BatchResult, MatrixResult
from imagelearn.core.persistence import PersistentEstimator, decode_params, encode_params
from imagelearn.core.schema import MAX_CLASSES, Skipped, StateSchema
from imagelearn.features import LocalFeatures, extract_features, make_detector

#: Two channels that work well on photos: gray multi-scale dense RootSIFT and local Lab color,
#: both soft-assigned, on a 4-pixel grid. Measured on flowers5: the 4-pixel grid +4 points over
#: 8 pixels; on a validation split of the training images (907 photos), soft color words +1.2
#: points over hard ones and 2,000 gray words +1.1 over 1,000 (0.690 -> 0.701).
#: Longer side, pixels, to which the default channels' dense detectors shrink a photo first
#: (their ``max_side``): larger photos cost more in proportion to their area for no accuracy
#: (measured on flowers5 and hymenoptera, docs/bof.md).
DEFAULT_MAX_SIDE = 384

DEFAULT_CHANNELS: tuple[dict[str, Any], ...] = (
    {
        "detector": "dense_rootsift",
        "detector_params": {"step": 4, "max_side": DEFAULT_MAX_SIDE},
        "n_words": 2000,
        "assignment": "soft",
        "pyramid": (1, 2),
    },
    {
        "detector": "dense_lab",
        "detector_params": {"step": 4, "max_side": DEFAULT_MAX_SIDE},
        "n_words": 256,
        "assignment": "soft",
        "pyramid": (1, 2),
    },
)

KERNELS = ("chi2", "linear")

ChannelFeatures = list[list[LocalFeatures | None]]  # [channel][image]


#: Feature channels a saved BofClassifier may combine.
MAX_CHANNELS = 16


class BofClassifierState(StateSchema):
    """The JSON state of a saved :class:`BofClassifier`: one entry per channel, the classes."""

    channels: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_CHANNELS)
    channel_states: list[BagOfFeaturesState]
    class_names: list[str] = Field(min_length=2, max_length=MAX_CLASSES)
    n_training_images: int = Field(ge=0)
    skipped: Skipped
    timings: dict[str, float]

    @model_validator(mode="after")
    def _one_state_per_channel(self) -> Self:
        if len(self.channel_states) != len(self.channels):
            raise ValueError(
                f"{len(self.channel_states)} channel states for {len(self.channels)} channels"
            )
        return self


#: Sampling steps of the additive chi-squared kernel map (Vedaldi & Zisserman: 2 is enough).
CHI2_SAMPLE_STEPS = 2
#: Sampling period of that map (scikit-learn's ``AdditiveChi2Sampler`` default for 2 steps).
CHI2_SAMPLE_INTERVAL = 0.5


@dataclass
class BofPrediction(MatrixResult):
    """SVM scores of the readable images of a list: a
    :class:`~imagelearn.core.execution.BatchResult` whose values are one matrix.

    Attributes
    ----------
    values : ndarray of float64, shape (n_kept, n_classes)
        Also :attr:`scores`: the SVM margin of every class (binary: ``-m, m`` for the margin
        ``m`` of ``classes[1]``).
    kept : ndarray of int64, shape (n_kept,)
        Indices into the input list.
    failures : list of (path, reason)
        The unreadable images, in input order (``failed``: their indices).
    classes : ndarray of int
        The label of every column (the classifier's ``classes_``).
    """

    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def scores(self) -> np.ndarray:
        return self.values

    @property
    def labels(self) -> np.ndarray:
        """The class of highest score of every kept image, shape (n_kept,)."""
        return (
            self.classes[np.argmax(self.values, axis=1)] if len(self.values) else self.classes[:0]
        )


def chi2_map(histograms: np.ndarray) -> np.ndarray:
    """The additive chi-squared kernel map of L1-normalized histograms (n_rows, n_bins):
    float32 (n_rows, n_bins * (2 * CHI2_SAMPLE_STEPS - 1)); negative bins count as 0.

    scikit-learn's ``AdditiveChi2Sampler(sample_steps=CHI2_SAMPLE_STEPS)`` (the same layout:
    all ``sqrt(x L)``, then the cosine and sine blocks of every step), 6x faster: no boolean
    masks (the SVM maps its rows again on every pass when they do not fit its budget).
    """
    bins = np.maximum(histograms, 0).astype(np.float32, copy=False)
    n_bins = bins.shape[1]
    mapped = np.empty((len(bins), n_bins * (2 * CHI2_SAMPLE_STEPS - 1)), np.float32)
    np.sqrt(bins * np.float32(CHI2_SAMPLE_INTERVAL), out=mapped[:, :n_bins])
    log = np.log(bins, out=np.zeros_like(bins), where=bins > 0)  # 0 bins: factor 0 below
    for step in range(1, CHI2_SAMPLE_STEPS):
        scale = 2 * CHI2_SAMPLE_INTERVAL / np.cosh(np.pi * step * CHI2_SAMPLE_INTERVAL)
        factor = np.sqrt(bins * np.float32(scale))
        angle = log * np.float32(step * CHI2_SAMPLE_INTERVAL)
        first = (2 * step - 1) * n_bins
        np.multiply(factor, np.cos(angle), out=mapped[:, first : first + n_bins])
        np.multiply(factor, np.sin(angle), out=mapped[:, first + n_bins : first + 2 * n_bins])
    return mapped


def _common_inputs(
    results: Sequence[BatchResult],
) -> tuple[np.ndarray, list[tuple[str, str]], np.ndarray]:
    """The inputs that every result kept, and the failures of the others (in input order,
    each once: the first result's reason)."""
    kept = reduce(np.intersect1d, [result.kept for result in results])
    reasons: dict[int, tuple[str, str]] = {}
    for result in results:
        for index, failure in zip(result.failed.tolist(), result.failures, strict=True):
            reasons.setdefault(index, failure)
    failed = sorted(reasons)
    return kept, [reasons[index] for index in failed], np.asarray(failed, dtype=np.int64)


def _side_by_side(results: Sequence[MatrixResult], kept: np.ndarray) -> np.ndarray:
    """The rows of the inputs ``kept`` of every result, side by side, float32
    (n_kept, sum of widths)."""
    return np.hstack([result.values[np.isin(result.kept, kept)] for result in results]).astype(
        np.float32, copy=False
    )


def _check_two_classes(labels: np.ndarray) -> None:
    if len(np.unique(labels)) < 2:
        raise ValueError(
            f"training needs images of at least 2 classes; got {len(np.unique(labels))}"
        )


class BofClassifier(PersistentEstimator, ClassifierMixin, BaseEstimator):
    """Bag-of-Features image classifier.

    Parameters
    ----------
    channels : sequence of dict, optional
        One dict of :class:`~imagelearn.bof.BagOfFeatures` parameters per channel; None uses
        :data:`DEFAULT_CHANNELS`. Histograms of all channels are concatenated, each channel
        L1-normalized so that no channel dominates by its size.
    kernel : {"chi2", "linear"}
        ``"chi2"`` applies an additive chi-squared kernel map before the linear SVM.
    C : float
        SVM regularization.
    n_jobs : int
        Processes for feature extraction (-1: all cores). A runtime setting: not saved.
    cache_dir : path, None or False
        Feature cache (None: the default cache; False: no cache). A runtime setting: not saved.
    random_state : int

    Attributes
    ----------
    channels_ : list of BagOfFeatures
        The fitted encoders.
    classes_ : ndarray of int
        The labels seen in training (indices into ``class_names_``).
    class_names_ : list of str
        Name of every label ``0..n_classes-1``.
    svm_ : ChunkedLinearSVC
        ``LinearSVC``'s model trained in bounded memory on the kernel-mapped histograms (read
        from disk and mapped chunk by chunk, :mod:`imagelearn.bof.linear_svm`).
    n_training_images_ : int
        Readable training images.
    skipped_ : list of (path, reason)
        Training images that could not be read.
    timings_ : dict
        Seconds: ``extract_s`` (the channels' first passes: features and the vocabulary's
        descriptor sample), ``vocabulary_s`` (clustering, summed over the channels),
        ``encode_s`` (the second pass, all channels at once on the workers: features again,
        from the cache, words and votes; idf and histograms), ``svm_s``.
    """

    bundle_kind = "bof-classifier"
    state_schema = BofClassifierState

    def __init__(
        self,
        channels: Sequence[dict[str, Any]] | None = None,
        kernel: str = "chi2",
        C: float = 1.0,
        n_jobs: int = -1,
        cache_dir: str | os.PathLike | bool | None = None,
        random_state: int = 0,
    ) -> None:
        self.channels = channels
        self.kernel = kernel
        self.C = C
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir
        self.random_state = random_state

    # ----------------------------------------------------------------------------- features
    def _channel_params(self) -> list[dict[str, Any]]:
        channels = DEFAULT_CHANNELS if self.channels is None else self.channels
        if not channels:
            raise ValueError("channels must name at least one detector")
        common = {
            "n_jobs": self.n_jobs,
            "cache_dir": self.cache_dir,
            "random_state": self.random_state,
        }
        if self.kernel == "chi2":
            common["normalization"] = "l1"
        return [{**common, **dict(channel)} for channel in channels]

    def extract(
        self, images: Sequence[str | os.PathLike | np.ndarray], strict: bool = False
    ) -> tuple[ChannelFeatures, list[tuple[str, str]]]:
        """Local features of ``images`` for every channel, and the unreadable files, all in
        memory (for :meth:`fit_features` and :meth:`predict_features`; :meth:`fit` and
        :meth:`predict_images` stream).

        Returns
        -------
        features : list (one per channel) of lists (one per image) of LocalFeatures or None
        skipped : list of (path, reason), each unreadable file once
        """
        features: ChannelFeatures = []
        skipped: dict[str, str] = {}
        for params in self._channel_params():
            detector = make_detector(params["detector"], **(params.get("detector_params") or {}))
            channel_features, channel_skipped = extract_features(
                images,
                detector,
                n_jobs=self.n_jobs,
                cache_dir=self.cache_dir,
                strict=strict,
                description=f"features ({detector.name})",
            )
            features.append(channel_features)
            skipped.update(channel_skipped)
        return features, list(skipped.items())

    # ----------------------------------------------------------------------------- fitting
    def fit(
        self,
        images: Sequence[str | os.PathLike | np.ndarray],
        y: Sequence[int],
        class_names: Sequence[str] | None = None,
        strict: bool = False,
    ) -> BofClassifier:
        """Build the vocabularies and train the SVM, streaming the images (bounded memory).

        Every channel passes over the images once for a sample of ``sample_size`` descriptors
        to build its vocabulary; then one pass encodes all channels on the workers, from the
        features they read back from the feature cache (recompute without one). Only the
        histograms are kept, in a temporary file (:class:`RowStore`), for the SVM.

        Parameters
        ----------
        images : sequence of paths or uint8 arrays
        y : sequence of int, shape (n_images,)
            Label indices (into ``class_names``).
        class_names : sequence of str, optional
            Names of labels ``0..n_classes-1``; default ``"0"``, ``"1"``...
        strict : bool
            Raise on the first unreadable image; otherwise unreadable images are left out of
            training and listed in ``skipped_``.
        """
        return self._fit_channels(
            lambda _, bof: bof._fit_vocabulary(
                lambda: bof.extract_batches(images, strict, f"features ({bof.detector})")
            ),
            lambda: stream_votes(self.channels_, images, self.n_jobs, strict, "words"),
            np.asarray(y),
            class_names,
        )

    def fit_features(
        self,
        features: ChannelFeatures,
        y: np.ndarray,
        class_names: Sequence[str] | None = None,
    ) -> BofClassifier:
        """Fit from features already extracted by :meth:`extract` (reused by vocabulary sweeps).

        Images without features (None) are left out and listed in ``skipped_``.
        """
        batches = [features_as_batch(channel) for channel in features]
        return self._fit_channels(
            lambda index, bof: bof._fit_vocabulary(lambda: iter([batches[index]])),
            lambda: iter([self._votes_of_features(batches)]),
            np.asarray(y),
            class_names,
        )

    def _fit_channels(
        self,
        fit_vocabulary: Callable[[int, BagOfFeatures], dict[str, float]],
        votes: Callable[[], Iterator[MatrixResult]],
        y: np.ndarray,
        class_names: Sequence[str] | None,
    ) -> BofClassifier:
        """Build every channel's vocabulary with ``fit_vocabulary(index, channel)`` (its
        timings), then stream the training images' votes that ``votes()`` yields (all channels
        side by side, the images every channel could read) to a :class:`RowStore` on disk,
        learn the channels' idf on the way, turn the stored votes into histograms in place and
        train the SVM on them: memory holds no histograms, only the SVM's budget."""
        if self.kernel not in KERNELS:
            raise ParameterError("kernel", f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if not self.C > 0:  # checked before the features: it would fail only at the SVM
            raise ParameterError("C", f"C must be > 0, got {self.C!r}")
        _check_two_classes(y)
        self.channels_ = []
        self.timings_ = dict.fromkeys(("extract_s", "vocabulary_s"), 0.0)
        for index, params in enumerate(self._channel_params()):
            bof = BagOfFeatures(**params)
            for name, seconds in fit_vocabulary(index, bof).items():
                self.timings_[name] += seconds
            self.channels_.append(bof)
        start = time.perf_counter()
        widths = [bof.n_features_out_ for bof in self.channels_]
        # per channel: images in which each word occurs, images with any word
        frequencies = [np.zeros(bof.vocabulary_.n_words_, np.int64) for bof in self.channels_]
        described = [0] * len(self.channels_)
        kept, failures = [], []
        with RowStore(sum(widths)) as store:
            for window in votes():
                for index, (bof, block) in enumerate(self._blocks(window.values)):
                    counts, n_images = bof._document_frequencies(block)
                    frequencies[index] += counts
                    described[index] += n_images
                store.append(window.values)
                kept.append(window.kept)
                failures += window.failures
            for bof, counts, n_images in zip(self.channels_, frequencies, described, strict=True):
                bof._fit_idf(counts, n_images)
            step = max(1, CHUNK_BYTES // (4 * sum(widths)))
            for first in range(0, len(store), step):
                store.write(first, self._histograms(store[first : first + step]))
            kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
            self.timings_["encode_s"] = time.perf_counter() - start
            _check_two_classes(y[kept])
            start = time.perf_counter()
            self.svm_ = self._svm().fit(store, y[kept])
            self.timings_["svm_s"] = time.perf_counter() - start
        self.classes_ = self.svm_.classes_
        self.class_names_ = (
            list(class_names)
            if class_names is not None
            else [str(label) for label in range(int(y.max()) + 1)]
        )
        self.n_training_images_ = len(kept)
        self.skipped_: list[tuple[str, str]] = failures
        return self

    def _blocks(self, rows: np.ndarray) -> Iterator[tuple[BagOfFeatures, np.ndarray]]:
        """Every channel with its block (a view) of the side-by-side ``rows``."""
        start = 0
        for bof in self.channels_:
            yield bof, rows[:, start : start + bof.n_features_out_]
            start += bof.n_features_out_

    def _histograms(self, votes: np.ndarray) -> np.ndarray:
        """The SVM's input from the votes of all channels side by side (n, sum of
        n_features_out_), in place: each channel's histograms (its idf and normalization),
        then each L1-normalized (:meth:`_join`)."""
        for bof, block in self._blocks(votes):
            bof._weigh(block)
        return self._normalize_channels(votes)

    def _normalize_channels(self, rows: np.ndarray) -> np.ndarray:
        """Each channel's block of ``rows`` L1-normalized, in place (so that no channel
        dominates by its size)."""
        for _, block in self._blocks(rows):
            block /= np.maximum(np.abs(block).sum(axis=1, keepdims=True), 1e-12)
        return rows

    def _votes_of_features(self, batches: Sequence[BatchResult[LocalFeatures]]) -> MatrixResult:
        """The votes of every channel's features already extracted (one batch per channel),
        side by side, for the inputs that every channel kept."""
        results = [
            bof._count(iter([batch])) for bof, batch in zip(self.channels_, batches, strict=True)
        ]
        kept, failures, failed = _common_inputs(results)
        return MatrixResult(_side_by_side(results, kept), kept, failures, failed)

    def _join(self, results: Sequence[MatrixResult], kept: np.ndarray) -> np.ndarray:
        """The rows of ``kept`` of every channel's histograms, each L1-normalized (so that no
        channel dominates by its size), side by side: (n_kept, sum of n_features_out_)."""
        return self._normalize_channels(_side_by_side(results, kept))

    def _svm(self) -> ChunkedLinearSVC:
        """The unfitted SVM: on the histograms' additive chi-squared map for ``kernel="chi2"``,
        on the histograms themselves for ``"linear"``."""
        return ChunkedLinearSVC(
            C=self.C, feature_map=chi2_map if self.kernel == "chi2" else None, n_jobs=self.n_jobs
        )

    # ----------------------------------------------------------------------------- predicting
    def predict_images(
        self, images: Sequence[str | os.PathLike | np.ndarray], strict: bool = False
    ) -> BofPrediction:
        """SVM scores and labels of the readable ``images``, streamed (the workers encode a
        window of images at a time, only their scores are kept); the unreadable ones are
        reported (``kept``, ``failures``), not fatal (``strict`` raises on the first)."""
        check_is_fitted(self, "svm_")
        return self._predict(stream_votes(self.channels_, images, self.n_jobs, strict, "words"))

    def predict_features(self, features: ChannelFeatures) -> BofPrediction:
        """:meth:`predict_images` for features already extracted by :meth:`extract`; images
        without features (None) are failures."""
        check_is_fitted(self, "svm_")
        batches = [features_as_batch(channel) for channel in features]
        return self._predict(iter([self._votes_of_features(batches)]))

    def _predict(self, windows: Iterator[MatrixResult]) -> BofPrediction:
        """Scores of the inputs of the windows of votes (all channels side by side)."""
        scores, kept, failed, failures, n_computed = [], [], [], [], 0
        for window in windows:
            window_scores = self.svm_.decision_function(self._histograms(window.values))
            if window_scores.ndim == 1:
                window_scores = np.stack([-window_scores, window_scores], axis=1)
            scores.append(window_scores)
            kept.append(window.kept)
            failed.append(window.failed)
            failures += window.failures
            n_computed += window.n_computed
        n_columns = max(len(self.classes_), 2)
        return BofPrediction(
            np.concatenate(scores) if scores else np.zeros((0, n_columns)),
            np.concatenate(kept) if kept else np.zeros(0, np.int64),
            failures,
            np.concatenate(failed) if failed else np.zeros(0, np.int64),
            n_computed,
            classes=self.classes_,
        )

    def decision_function(self, images: Sequence[str | os.PathLike | np.ndarray]) -> np.ndarray:
        """SVM scores, shape (n_images, n_classes) (binary: (n_images,) as scikit-learn).

        Raises
        ------
        ImageReadError
            An unreadable image (:meth:`predict_images` reports them instead).
        """
        scores = self.predict_images(images, strict=True).scores
        return scores[:, 1] if len(self.classes_) == 2 else scores

    def predict(self, images: Sequence[str | os.PathLike | np.ndarray]) -> np.ndarray:
        """Class of each image (from ``classes_``); raises :class:`ImageReadError` for an
        unreadable one (:meth:`predict_images` reports them instead)."""
        return self.predict_images(images, strict=True).labels

    # ----------------------------------------------------------------------------- persistence
    def _check_saveable(self) -> None:
        check_is_fitted(self, "svm_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Each channel's fitted parameters and state and the fit's record as JSON;
        vocabularies, idf and SVM as arrays."""
        arrays: dict[str, np.ndarray] = {
            "svm/coef": self.svm_.coef_.astype(np.float32),
            "svm/intercept": self.svm_.intercept_.astype(np.float32),
            "svm/classes": np.asarray(self.classes_),
        }
        channel_states = []
        for index, bof in enumerate(self.channels_):
            channel_state, channel_arrays = bof._get_state()
            channel_states.append(channel_state)
            arrays.update(
                {f"channel{index}/{name}": array for name, array in channel_arrays.items()}
            )
        state = {
            "channels": [encode_params(bof) for bof in self.channels_],
            "channel_states": channel_states,
            "class_names": self.class_names_,
            "n_training_images": self.n_training_images_,
            "skipped": [list(item) for item in self.skipped_],
            "timings": self.timings_,
        }
        return state, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.channels_ = []
        for index, (params, channel_state) in enumerate(
            zip(state["channels"], state["channel_states"], strict=True)
        ):
            prefix = f"channel{index}/"
            own = {
                name.removeprefix(prefix): array
                for name, array in arrays.items()
                if name.startswith(prefix)
            }
            try:
                channel_params = decode_params(BagOfFeatures, params, f"channel {index}")
            except BundleError as error:  # load() names the bundle of a ValueError
                raise ValueError(str(error)) from error
            channel = BagOfFeatures(**channel_params)
            channel._set_state(channel_state, own)
            self.channels_.append(channel)
        svm = self._svm()
        svm.coef_ = arrays["svm/coef"].astype(np.float64)
        svm.intercept_ = arrays["svm/intercept"].astype(np.float64)
        svm.classes_ = arrays["svm/classes"]
        self.svm_ = svm
        self.classes_ = svm.classes_
        self.class_names_ = list(state["class_names"])
        self.n_training_images_ = int(state["n_training_images"])
        self.skipped_ = [(path, reason) for path, reason in state["skipped"]]
        self.timings_ = dict(state["timings"])
