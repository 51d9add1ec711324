"""``BagOfFeatures``: images in, bag-of-visual-words histograms out, as a scikit-learn transformer.

>>> from sklearn.kernel_approximation import AdditiveChi2Sampler
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.svm import LinearSVC
>>> model = make_pipeline(BagOfFeatures(n_words=500), AdditiveChi2Sampler(), LinearSVC())
>>> model.fit(train_paths, train_labels).score(test_paths, test_labels)  # doctest: +SKIP

Images are streamed a batch at a time through :func:`imagelearn.features.map_features` (in
parallel, cached on disk), so memory does not grow with their number beyond the histograms:
``fit`` draws the vocabulary's descriptor sample in one pass (:class:`DescriptorSample`) and
computes idf and histograms in a second, where the workers encode (each
reads or extracts an image's features, assigns their words and returns only the votes). ``transform_images`` and ``fit_transform_images``
return a :class:`~imagelearn.core.execution.MatrixResult` that names the unreadable images.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from imagelearn.bof.encoding import (
    NORMALIZATIONS,
    check_pyramid,
    encode_histograms,
    idf_from_frequencies,
    n_pyramid_cells,
    normalize_histograms,
)
from imagelearn.bof.vocabulary import (
    Vocabulary,
    VocabularyTree,
    make_vocabulary,
    vocabulary_class,
)
from imagelearn.core.errors import ParameterError
from imagelearn.core.execution import BatchResult, MatrixResult, map_images
from imagelearn.core.kmeans import ASSIGN_CHUNK_ROWS
from imagelearn.core.persistence import PersistentEstimator
from imagelearn.core.progress import progress
from imagelearn.core.schema import Skipped, StateSchema
from imagelearn.core.threads import resolve_n_jobs
from imagelearn.features import Detector, LocalFeatures, make_detector
from imagelearn.features.extract import default_cache_dir, map_features

ASSIGNMENTS = ("hard", "soft")
WEIGHTINGS = ("tfidf", "none")

#: Prefix of the vocabulary's arrays in a saved ``BagOfFeatures``.
_VOCABULARY_PREFIX = "vocabulary."
#: Parameters of ``BagOfFeatures`` given to a named vocabulary whose class takes them.
SHARED_VOCABULARY_PARAMS = ("n_words", "branching", "depth", "n_iter", "n_jobs", "random_state")


#: Images whose features are held in memory at once while streaming, per worker.
STREAM_IMAGES_PER_WORKER = 4
#: The fewest images streamed at once.
MIN_STREAM_IMAGES = 16
#: Images encoded per call of the execution layer, per worker (only their votes come back).
ENCODE_IMAGES_PER_WORKER = 256


class DescriptorSample:
    """A uniform random sample of at most ``size`` descriptor rows from a stream of images.

    Every row gets a random key and the ``size`` rows of smallest keys are kept (bottom-k
    sampling, a reservoir), so memory stays within three times the sample (while it
    compacts), whatever the number of images. The same seed and the same images in the same order give the same sample, however
    they are batched. All rows, in order, when there are no more than ``size``.

    Parameters
    ----------
    size : int
        Rows kept at most.
    random_state : int, RandomState or None
        Seeds the keys.
    """

    def __init__(self, size: int, random_state: int | np.random.RandomState | None = 0) -> None:
        self.size = int(size)
        self.n_seen = 0
        self._random = check_random_state(random_state)
        self._rows: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._order: list[np.ndarray] = []
        self._n_pending = 0
        self._threshold = np.inf

    def add(self, descriptors: np.ndarray) -> None:
        """Offer the rows of one image's ``descriptors`` (n, d)."""
        keys = self._random.random_sample(len(descriptors))
        order = np.arange(self.n_seen, self.n_seen + len(descriptors))
        self.n_seen += len(descriptors)
        chosen = keys < self._threshold
        if not chosen.all():
            descriptors, keys, order = descriptors[chosen], keys[chosen], order[chosen]
        self._rows.append(descriptors)
        self._keys.append(keys)
        self._order.append(order)
        self._n_pending += len(keys)
        if self._n_pending > 2 * self.size:
            self._compact()

    def _compact(self) -> None:
        """Keep only the ``size`` rows of smallest keys."""
        rows, keys, order = (
            np.concatenate(parts) for parts in (self._rows, self._keys, self._order)
        )
        if len(keys) > self.size:
            smallest = np.argpartition(keys, self.size - 1)[: self.size]
            rows, keys, order = rows[smallest], keys[smallest], order[smallest]
            self._threshold = float(keys.max())
        self._rows, self._keys, self._order = [rows], [keys], [order]
        self._n_pending = len(keys)

    def rows(self) -> np.ndarray:
        """The sample, in stream order: shape (min(size, n_seen), d)."""
        if not self._rows:
            raise ValueError("no descriptors were offered to the sample")
        self._compact()
        return self._rows[0][np.argsort(self._order[0], kind="stable")]


def sample_descriptors(
    features: Sequence[LocalFeatures],
    sample_size: int,
    random_state: int | np.random.RandomState | None = 0,
) -> np.ndarray:
    """A uniform random sample of ``sample_size`` descriptor rows over all images
    (:class:`DescriptorSample`); all rows, in order, when there are no more.

    Returns
    -------
    ndarray, shape (min(sample_size, n_total), d)
    """
    sample = DescriptorSample(sample_size, random_state)
    for item in features:
        sample.add(item.descriptors)
    return sample.rows()


def features_as_batch(features: Sequence[LocalFeatures | None]) -> BatchResult[LocalFeatures]:
    """Features already extracted (one entry per image, None if unreadable) as one
    :class:`~imagelearn.core.execution.BatchResult`: None entries are failed inputs."""
    kept = [index for index, item in enumerate(features) if item is not None]
    failed = [index for index, item in enumerate(features) if item is None]
    return BatchResult(
        [features[index] for index in kept],
        np.asarray(kept, dtype=np.int64),
        [(f"features {index}", "no features (unreadable image)") for index in failed],
        np.asarray(failed, dtype=np.int64),
    )


@dataclass(frozen=True)
class _ImageVotes:
    """The encoding pass's work on one image, run on a worker: for every encoder, the image's
    features (read from the feature cache, else extracted and cached), their words and their
    votes per pyramid cell and word before idf; the encoders' votes side by side, float32
    (sum of n_features_out_,), are all that travels back.

    ``encoders`` are fitted single-threaded copies (:meth:`BagOfFeatures._worker_copy`), sent
    to the workers with every batch (a vocabulary is a few MB at most).
    """

    encoders: tuple[BagOfFeatures, ...]

    def __call__(self, source: Any) -> np.ndarray:
        return np.concatenate(
            [
                encoder._votes(encoder.extract([source], strict=True).values)[0]
                for encoder in self.encoders
            ]
        )


def stream_votes(
    encoders: Sequence[BagOfFeatures],
    images: Sequence[Any],
    n_jobs: int | None,
    strict: bool,
    description: str,
) -> Iterator[MatrixResult]:
    """The votes of ``images`` under fitted ``encoders``, side by side (before idf and
    normalization), computed on ``n_jobs`` workers (:class:`_ImageVotes`): this process holds
    no descriptors, only one window of a few hundred images' votes at a time.

    Yields
    ------
    MatrixResult
        One per window of :data:`ENCODE_IMAGES_PER_WORKER` images per worker: ``values``
        float32 (n_kept, sum of n_features_out_), ``kept`` and ``failed`` indices into all of
        ``images``.
    """
    _check_images(images)
    votes = _ImageVotes(tuple(encoder._worker_copy() for encoder in encoders))
    n_workers = resolve_n_jobs(n_jobs)
    size = ENCODE_IMAGES_PER_WORKER * n_workers
    width = sum(encoder.n_features_out_ for encoder in encoders)
    for start in range(0, len(images), size):
        stop = min(start + size, len(images))
        window = map_images(
            votes,
            images[start:stop],
            n_jobs=n_workers,
            workers="processes",
            strict=strict,
            description=(
                f"{description} {start + 1}-{stop} of {len(images)}"
                if len(images) > size
                else description
            ),
        )
        yield MatrixResult(
            window.stacked(width),
            window.kept + start,
            window.failures,
            window.failed + start,
            window.n_computed,
        )


def _check_images(images: Any) -> None:
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise ValueError(
            f"images must be a sequence of paths or arrays; got {type(images).__name__}"
        )


class BagOfFeaturesState(StateSchema):
    """The JSON state of a saved :class:`BagOfFeatures` (its vocabulary and idf are arrays)."""

    skipped: Skipped


class BagOfFeatures(
    PersistentEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Bag of visual words over local features, with an optional spatial pyramid.

    Saved with :meth:`save` as a ``bag-of-features`` bundle and read back with
    ``BagOfFeatures.load(directory)``; ``n_jobs`` and ``cache_dir`` are not saved.

    Parameters
    ----------
    detector : str
        Registered detector name (:data:`imagelearn.features.DETECTORS`), e.g. ``"dense_rootsift"``.
    detector_params : dict or None
        Keyword arguments of the detector (e.g. ``{"step": 8}``).
    n_words : int or None
        Size of the flat vocabulary (``vocabulary="kmeans"``); None takes the vocabulary's
        own: 1,000 words flat, ``branching ** depth`` leaves at most for the tree. Given with
        the tree or an instance, it must equal that size (else :class:`ParameterError`).
    vocabulary : {"kmeans", "tree"} or Vocabulary
        Flat k-means, a vocabulary tree of ``branching ** depth`` leaves at most, or an
        unfitted :class:`~imagelearn.bof.vocabulary.Vocabulary`, cloned at fit and used with
        its own parameters (``vocabulary_params``, ``branching``, ``depth``, ``n_iter`` are
        then not used).
    vocabulary_params : dict or None
        Other parameters of the named vocabulary's class (e.g. ``{"n_candidates": None}``,
        ``{"beam_width": 2}``), checked against its signature. Those that ``BagOfFeatures``
        has itself (``n_words``, ``branching``, ``depth``, ``n_iter``, ``n_jobs``,
        ``random_state``) are set on it, not in ``vocabulary_params``.
    branching, depth : int
        Shape of the vocabulary tree.
    sample_size : int
        Descriptors drawn uniformly at random over all training images, in one streaming pass,
        to build the vocabulary (its memory: ``sample_size * d`` values, three times that
        while the sample compacts).
    n_iter : int
        k-means iterations (per node for the tree).
    assignment : {"hard", "soft"}
        One vote for the nearest word, or kernel-weighted votes for the ``soft_neighbors``
        nearest (the tree ranks the leaves of the reached parent, so ``soft_neighbors <= branching``).
    soft_neighbors : int
    weighting : {"tfidf", "none"}
        Multiply bins by the smoothed idf of their word, learned on the training images.
    normalization : {"l2", "l1", "power", "none"}
        ``power``: signed square root then L2 (Hellinger).
    pyramid : sequence of int
        Spatial pyramid grids: 1 -> whole image, 2 -> 2x2, 4 -> 4x4 cells.
    n_jobs : int or None
        Processes for feature extraction and FAISS threads; -1 uses all cores.
    cache_dir : path-like, None or False
        Feature cache (see :func:`imagelearn.features.extract_features`; False disables it).
    random_state : int, RandomState or None
        Seeds the descriptor sample and the clustering.

    Attributes
    ----------
    vocabulary_ : KMeansVocabulary or VocabularyTree
    idf_ : ndarray of float32, shape (n_words,)
        Word weights (ones when ``weighting="none"``).
    n_features_out_ : int
        ``vocabulary_.n_words_ * sum(g * g for g in pyramid)``.
    skipped_ : list of (path, reason)
        Training images that could not be read.
    """

    bundle_kind = "bag-of-features"
    state_schema = BagOfFeaturesState

    def __init__(
        self,
        detector: str = "dense_rootsift",
        detector_params: dict[str, Any] | None = None,
        n_words: int | None = None,
        vocabulary: str | Vocabulary = "kmeans",
        vocabulary_params: dict[str, Any] | None = None,
        branching: int = 10,
        depth: int = 3,
        sample_size: int = 200_000,
        n_iter: int = 20,
        assignment: str = "hard",
        soft_neighbors: int = 3,
        weighting: str = "tfidf",
        normalization: str = "l2",
        pyramid: Sequence[int] = (1, 2),
        n_jobs: int | None = -1,
        cache_dir: Any = None,
        random_state: int | np.random.RandomState | None = 0,
    ) -> None:
        self.detector = detector
        self.detector_params = detector_params
        self.n_words = n_words
        self.vocabulary = vocabulary
        self.vocabulary_params = vocabulary_params
        self.branching = branching
        self.depth = depth
        self.sample_size = sample_size
        self.n_iter = n_iter
        self.assignment = assignment
        self.soft_neighbors = soft_neighbors
        self.weighting = weighting
        self.normalization = normalization
        self.pyramid = pyramid
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir
        self.random_state = random_state

    # ----------------------------------------------------------------- parameters and parts

    def _check_params(self) -> None:
        choices = {
            "assignment": ASSIGNMENTS,
            "weighting": WEIGHTINGS,
            "normalization": tuple(NORMALIZATIONS),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ParameterError(
                    name, f"{name} must be one of {allowed}; got {getattr(self, name)!r}"
                )
        check_pyramid(self.pyramid)
        for name in ("sample_size", "soft_neighbors"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(name, f"{name} must be >= 1; got {getattr(self, name)!r}")

    def _make_detector(self) -> Detector:
        return make_detector(self.detector, **(self.detector_params or {}))

    def _named_vocabulary(self) -> Vocabulary:
        """The vocabulary named by ``vocabulary``, with ``vocabulary_params`` and the
        parameters of ours that its class takes (:data:`SHARED_VOCABULARY_PARAMS`)."""
        given = self.vocabulary_params or {}
        ours = (
            sorted(set(given) & set(SHARED_VOCABULARY_PARAMS)) if isinstance(given, Mapping) else []
        )
        if ours:
            raise ParameterError(
                "vocabulary_params",
                f"{', '.join(ours)} in vocabulary_params: BagOfFeatures has "
                f"{'this parameter' if len(ours) == 1 else 'these parameters'} itself; "
                f"set BagOfFeatures({ours[0]}=...) instead",
            )
        accepted = vocabulary_class(self.vocabulary)._get_param_names()
        shared = {
            name: getattr(self, name)
            for name in SHARED_VOCABULARY_PARAMS
            if name in accepted and getattr(self, name) is not None
        }
        return make_vocabulary(self.vocabulary, given, **shared)

    def _make_vocabulary(self) -> Vocabulary:
        """The unfitted vocabulary that ``vocabulary``, ``vocabulary_params`` and ours describe.

        Raises
        ------
        ParameterError
            Unknown vocabulary or parameter, a parameter of ours in ``vocabulary_params``,
            ``n_words`` other than the vocabulary's size, or ``soft_neighbors`` beyond the
            words it ranks per descriptor.
        """
        vocabulary = (
            make_vocabulary(self.vocabulary, self.vocabulary_params)
            if isinstance(self.vocabulary, Vocabulary)
            else self._named_vocabulary()
        )
        tree = isinstance(vocabulary, VocabularyTree)
        if self.n_words is not None and int(self.n_words) != vocabulary.max_words():
            size = (
                f"branching ** depth = {vocabulary.branching} ** {vocabulary.depth} = "
                if tree
                else ""
            ) + f"{vocabulary.max_words()}"
            raise ParameterError(
                "n_words",
                f"n_words={self.n_words} does not match the {type(vocabulary).__name__}, which "
                f"has {size} words at most; set n_words=None to take the vocabulary's own size, "
                f"or give the vocabulary the size you want{' (branching, depth)' if tree else ''}",
            )
        limit = ("branching", vocabulary.branching) if tree else ("n_words", vocabulary.max_words())
        if self.assignment == "soft" and int(self.soft_neighbors) > int(limit[1]):
            raise ParameterError(
                "soft_neighbors",
                f"soft_neighbors={self.soft_neighbors} exceeds {limit[0]}={limit[1]}, the number "
                f"of candidate words of the {type(vocabulary).__name__}",
            )
        return vocabulary

    def extract(
        self, images: Sequence[Any], strict: bool = False, description: str = "features"
    ) -> BatchResult[LocalFeatures]:
        """Local features of ``images`` (paths or uint8 arrays) with this model's detector,
        all held in memory (:meth:`extract_batches` streams them, as :meth:`fit_transform_images`
        and :meth:`transform_images` do).

        Returns
        -------
        BatchResult
            Features of the readable images (``values``, at indices ``kept``) and the
            unreadable files with reasons (``failures``); ``per_input()`` gives the list
            that :meth:`fit_features` and :meth:`transform_features` take (None if unreadable).
        """
        _check_images(images)
        return map_features(
            images,
            self._make_detector(),
            n_jobs=self.n_jobs,
            cache_dir=self.cache_dir,
            strict=strict,
            description=description,
        )

    def extract_batches(
        self, images: Sequence[Any], strict: bool = False, description: str = "features"
    ) -> Iterator[BatchResult[LocalFeatures]]:
        """:meth:`extract` a few images at a time (``kept`` and ``failed`` index all of
        ``images``), so that only one batch of descriptors is in memory; the disk cache makes a
        second pass cheap."""
        _check_images(images)
        size = max(MIN_STREAM_IMAGES, STREAM_IMAGES_PER_WORKER * resolve_n_jobs(self.n_jobs))
        for start in range(0, len(images), size):
            stop = min(start + size, len(images))
            batch = self.extract(
                images[start:stop], strict, f"{description} {start + 1}-{stop} of {len(images)}"
            )
            yield BatchResult(
                batch.values,
                batch.kept + start,
                batch.failures,
                batch.failed + start,
                batch.n_computed,
            )

    @property
    def _n_features_out(self) -> int:
        return self.n_features_out_

    # ------------------------------------------------------------------------------ fitting

    def fit(self, images: Sequence[Any], y: Any = None) -> BagOfFeatures:
        """Build the vocabulary (and idf) from ``images``: paths or uint8 arrays.

        Images are streamed: the vocabulary is built from ``sample_size`` descriptors drawn in
        one pass, and idf needs a second; unreadable images are left out and listed in
        ``skipped_``.
        """
        self._fit_images(images, strict=False, encode=False)
        return self

    def fit_transform(self, images: Sequence[Any], y: Any = None, **fit_params: Any) -> np.ndarray:
        """``fit(images).transform(images)``, streaming the images twice.

        Raises
        ------
        ImageReadError
            An unreadable image (:meth:`fit_transform_images` reports them instead).
        """
        return self.fit_transform_images(images, strict=True).values

    def fit_transform_images(self, images: Sequence[Any], strict: bool = False) -> MatrixResult:
        """Fit on ``images`` and return the histograms of the readable ones.

        Returns
        -------
        MatrixResult
            ``values`` of float32, shape (n_kept, n_features_out_), for the inputs at ``kept``;
            the unreadable ones in ``failures`` (also ``skipped_``).
        """
        histograms, _ = self._fit_images(images, strict, encode=True)
        return histograms

    def fit_features(
        self, features: Sequence[LocalFeatures | None], y: Any = None
    ) -> BagOfFeatures:
        """Fit on features already extracted (None entries are ignored)."""
        self._fit_features(features, encode=False)
        self.skipped_ = []
        return self

    def _fit_images(
        self, images: Sequence[Any], strict: bool, encode: bool
    ) -> tuple[MatrixResult | None, dict[str, float]]:
        """:meth:`_fit_stream` on image files or arrays: the first pass streams their
        features to this process, the second encodes them on the workers."""
        _check_images(images)
        return self._fit_stream(
            lambda: self.extract_batches(images, strict, f"features ({self.detector})"),
            lambda: self._count_images(images, strict, f"words ({self.detector})"),
            encode,
        )

    def _fit_features(
        self, features: Sequence[LocalFeatures | None], encode: bool
    ) -> tuple[MatrixResult | None, dict[str, float]]:
        """:meth:`_fit_stream` on features already extracted (None: an unreadable image)."""
        batch = features_as_batch(features)
        return self._fit_stream(lambda: iter([batch]), lambda: self._count(iter([batch])), encode)

    def _fit_stream(
        self,
        batches: Callable[[], Iterator[BatchResult[LocalFeatures]]],
        count: Callable[[], MatrixResult],
        encode: bool,
    ) -> tuple[MatrixResult | None, dict[str, float]]:
        """Fit from the features that ``batches()`` yields (one pass, for the vocabulary's
        descriptor sample) and the votes that ``count()`` returns once the vocabulary is
        built (a second pass, for idf and histograms); unreadable inputs go to ``skipped_``.

        Returns
        -------
        histograms : MatrixResult or None
            Of the training images, when ``encode``.
        timings : dict
            Seconds: ``extract_s`` (first pass: features and sample), ``vocabulary_s``,
            ``encode_s`` (second pass: features again, words, histograms).
        """
        timings = self._fit_vocabulary(batches)
        start = time.perf_counter()
        counts = count() if encode or self.weighting == "tfidf" else None
        if counts is not None:
            self._fit_idf(*self._document_frequencies(counts.values))
        if encode:
            counts.values = self._weigh(counts.values)
        timings["encode_s"] = time.perf_counter() - start
        return (counts if encode else None), timings

    def _fit_vocabulary(
        self, batches: Callable[[], Iterator[BatchResult[LocalFeatures]]]
    ) -> dict[str, float]:
        """The first pass: the vocabulary from a sample of the descriptors that ``batches()``
        yields (``vocabulary_``, ``n_features_out_``, ``skipped_``; ``idf_`` all ones until
        :meth:`_fit_idf`).

        Returns
        -------
        dict
            Seconds: ``extract_s`` (features and sample), ``vocabulary_s``.
        """
        self._check_params()
        vocabulary = self._make_vocabulary()
        start = time.perf_counter()
        sample = DescriptorSample(int(self.sample_size), self.random_state)
        failures: list[tuple[str, str]] = []
        for batch in batches():
            failures += batch.failures
            for item in batch.values:
                sample.add(item.descriptors)
        if sample.n_seen == 0:
            raise ValueError(
                "no local features to build a vocabulary: every image was unreadable or empty"
            )
        self.skipped_ = failures
        timings = {"extract_s": time.perf_counter() - start}
        start = time.perf_counter()
        self.vocabulary_ = vocabulary.fit(sample.rows())
        del sample
        timings["vocabulary_s"] = time.perf_counter() - start
        n_words = self.vocabulary_.n_words_
        self.n_features_out_ = n_words * n_pyramid_cells(self.pyramid)
        self.idf_ = np.ones(n_words, dtype=np.float32)
        return timings

    def _document_frequencies(self, counts: np.ndarray) -> tuple[np.ndarray, int]:
        """The images among the rows of vote counts (n_images, n_features_out_) in which each
        word occurs (n_words,), and the images with any word: the cells of the first pyramid
        level tile the image."""
        n_words = self.vocabulary_.n_words_
        cells = check_pyramid(self.pyramid)[0] ** 2
        whole = counts[:, : cells * n_words].reshape(len(counts), cells, n_words).sum(axis=1)
        return (whole > 0).sum(axis=0), int(whole.any(axis=1).sum())

    def _fit_idf(self, document_frequency: np.ndarray, n_images: int) -> None:
        """``idf_`` from the training images' document frequencies (ones without tf-idf)."""
        if self.weighting == "tfidf":
            self.idf_ = idf_from_frequencies(document_frequency, n_images)

    # -------------------------------------------------------------------------- transforming

    def transform(self, images: Sequence[Any]) -> np.ndarray:
        """Histograms of ``images`` (paths or uint8 arrays), streamed.

        Returns
        -------
        ndarray of float32, shape (n_images, n_features_out_)

        Raises
        ------
        ImageReadError
            An unreadable image (:meth:`transform_images` reports them instead).
        """
        return self.transform_images(images, strict=True).values

    def transform_images(self, images: Sequence[Any], strict: bool = False) -> MatrixResult:
        """Histograms of the readable ``images``, encoded on the workers: only histograms are
        kept.

        Returns
        -------
        MatrixResult
            ``values`` of float32, shape (n_kept, n_features_out_), for the inputs at
            ``kept``; the unreadable ones, with reasons, in ``failures``.
        """
        check_is_fitted(self, "vocabulary_")
        _check_images(images)
        histograms = self._count_images(images, strict, "words")
        histograms.values = self._weigh(histograms.values)
        return histograms

    def transform_features(self, features: Sequence[LocalFeatures | None]) -> np.ndarray:
        """Histograms of features already extracted; None or empty entries give zero rows."""
        check_is_fitted(self, "vocabulary_")
        batch = features_as_batch(features)
        histograms = np.zeros((len(features), self.n_features_out_), dtype=np.float32)
        histograms[batch.kept] = self._weigh(self._count(iter([batch])).values)
        return histograms

    def _count(self, batches: Iterable[BatchResult[LocalFeatures]]) -> MatrixResult:
        """Votes (n_kept, n_features_out_) of every kept input of ``batches``, in this process,
        before idf and normalization; only one batch's descriptors are held at a time."""
        parts, kept, failures, failed, n_computed = [], [], [], [], 0
        for batch in batches:
            parts.append(self._votes(batch.values))
            kept.append(batch.kept)
            failed.append(batch.failed)
            failures += batch.failures
            n_computed += batch.n_computed
        return MatrixResult(
            np.concatenate(parts) if parts else np.zeros((0, self.n_features_out_), np.float32),
            np.concatenate(kept) if kept else np.zeros(0, np.int64),
            failures,
            np.concatenate(failed) if failed else np.zeros(0, np.int64),
            n_computed,
        )

    def _count_images(self, images: Sequence[Any], strict: bool, description: str) -> MatrixResult:
        """Votes (n_kept, n_features_out_) of the readable ``images``, before idf and
        normalization, computed on the workers (:func:`stream_votes`) and written into one
        array: this process holds no descriptors."""
        values = np.empty((len(images), self.n_features_out_), np.float32)
        kept, failed, failures, n_kept = [], [], [], 0
        for window in stream_votes([self], images, self.n_jobs, strict, description):
            values[n_kept : n_kept + len(window.values)] = window.values
            n_kept += len(window.values)
            kept.append(window.kept)
            failed.append(window.failed)
            failures += window.failures
        return MatrixResult(
            values[:n_kept],
            np.concatenate(kept) if kept else np.zeros(0, np.int64),
            failures,
            np.concatenate(failed) if failed else np.zeros(0, np.int64),
            n_kept,
        )

    def _worker_copy(self) -> BagOfFeatures:
        """This fitted model as a worker encodes with it: one thread, the cache directory
        resolved here (a worker's environment may be older), only what encoding needs."""
        worker = clone(self).set_params(
            n_jobs=1,
            cache_dir=default_cache_dir() if self.cache_dir in (None, True) else self.cache_dir,
        )
        worker.vocabulary_ = copy.copy(self.vocabulary_).set_params(n_jobs=1)
        worker.n_features_out_ = self.n_features_out_
        return worker

    def _weigh(self, counts: np.ndarray) -> np.ndarray:
        """Histograms from votes, in place: idf in every pyramid cell, then the normalization."""
        counts *= np.tile(self.idf_, n_pyramid_cells(self.pyramid))
        return normalize_histograms(counts, self.normalization, out=counts)

    def _batches(self, features: Sequence[LocalFeatures]) -> Iterator[list[int]]:
        """Indices of images with descriptors, grouped into batches of about ASSIGN_CHUNK_ROWS rows."""
        batch, rows = [], 0
        for index, item in enumerate(features):
            if len(item) == 0:
                continue
            batch.append(index)
            rows += len(item)
            if rows >= ASSIGN_CHUNK_ROWS:
                yield batch
                batch, rows = [], 0
        if batch:
            yield batch

    def _votes(self, features: Sequence[LocalFeatures]) -> np.ndarray:
        """Votes per pyramid cell and word (n_images, n_features_out_) of ``features``, float32,
        before idf: their words, then the histograms of the words."""
        words, weights = self._quantize(features)
        return encode_histograms(
            words,
            self.vocabulary_.n_words_,
            weights=weights,
            positions=[item.keypoints[:, :2] for item in features],
            image_shapes=[item.image_shape for item in features],
            pyramid=self.pyramid,
            normalization="none",
        )

    def _quantize(self, features: Sequence[LocalFeatures]) -> tuple[list, list | None]:
        """Words (and soft weights) of every image's descriptors; None for images without any."""
        words: list[np.ndarray | None] = [None] * len(features)
        weights: list[np.ndarray | None] | None = (
            [None] * len(features) if self.assignment == "soft" else None
        )
        batches = list(self._batches(features))
        for batch in progress(batches, "assigning words", total=len(batches), unit="batch"):
            descriptors = np.concatenate([features[index].descriptors for index in batch])
            splits = np.cumsum([len(features[index]) for index in batch])[:-1]
            if weights is None:
                batch_words, batch_weights = self.vocabulary_.assign(descriptors), None
            else:
                batch_words, batch_weights = self.vocabulary_.assign_soft(
                    descriptors, int(self.soft_neighbors)
                )
                for index, part in zip(batch, np.split(batch_weights, splits), strict=True):
                    weights[index] = part
            for index, part in zip(batch, np.split(batch_words, splits), strict=True):
                words[index] = part
        return words, weights

    # ------------------------------------------------------------------------------ saving

    def _check_saveable(self) -> None:
        check_is_fitted(self, "vocabulary_")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The unreadable training images as JSON; the vocabulary's arrays and idf."""
        _, vocabulary_arrays = self.vocabulary_._get_state()
        arrays = {_VOCABULARY_PREFIX + name: array for name, array in vocabulary_arrays.items()}
        arrays["idf"] = self.idf_
        return {"skipped": [list(item) for item in self.skipped_]}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._check_params()
        vocabulary = self._make_vocabulary()
        vocabulary._set_state(
            {},
            {
                name.removeprefix(_VOCABULARY_PREFIX): array
                for name, array in arrays.items()
                if name.startswith(_VOCABULARY_PREFIX)
            },
        )
        self.vocabulary_ = vocabulary
        self.idf_ = np.asarray(arrays["idf"], dtype=np.float32)
        self.n_features_out_ = vocabulary.n_words_ * n_pyramid_cells(self.pyramid)
        self.skipped_ = [(path, reason) for path, reason in state["skipped"]]
