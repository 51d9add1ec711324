"""``BagOfFeatures``: images in, bag-of-visual-words histograms out, as a scikit-learn transformer.

>>> from sklearn.kernel_approximation import AdditiveChi2Sampler
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.svm import LinearSVC
>>> model = make_pipeline(BagOfFeatures(n_words=500), AdditiveChi2Sampler(), LinearSVC())
>>> model.fit(train_paths, train_labels).score(test_paths, test_labels)  # doctest: +SKIP

Each ``fit`` / ``transform`` extracts local features once (in parallel, cached on disk by
:func:`imagelearn.features.map_features`), then quantizes them against the vocabulary.
``extract`` followed by ``transform_features`` also reports which images were unreadable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from imagelearn.bof.encoding import (
    NORMALIZATIONS,
    check_pyramid,
    compute_idf,
    encode_histograms,
    n_pyramid_cells,
)
from imagelearn.bof.vocabulary import (
    Vocabulary,
    VocabularyTree,
    make_vocabulary,
    vocabulary_class,
)
from imagelearn.core.errors import ParameterError
from imagelearn.core.execution import BatchResult
from imagelearn.core.kmeans import ASSIGN_CHUNK_ROWS
from imagelearn.core.persistence import PersistentEstimator
from imagelearn.core.progress import progress
from imagelearn.core.schema import Skipped, StateSchema
from imagelearn.features import Detector, LocalFeatures, make_detector
from imagelearn.features.extract import map_features

ASSIGNMENTS = ("hard", "soft")
WEIGHTINGS = ("tfidf", "none")

#: Prefix of the vocabulary's arrays in a saved ``BagOfFeatures``.
_VOCABULARY_PREFIX = "vocabulary."
#: Parameters of ``BagOfFeatures`` given to a named vocabulary whose class takes them.
SHARED_VOCABULARY_PARAMS = ("n_words", "branching", "depth", "n_iter", "n_jobs", "random_state")


def sample_descriptors(
    features: Sequence[LocalFeatures],
    sample_size: int,
    random_state: int | np.random.RandomState | None = 0,
) -> np.ndarray:
    """A uniform random sample of ``sample_size`` descriptor rows over all images.

    Without concatenating every descriptor first (a million 128-D rows is 0.5 GB). All rows,
    in order, when there are no more than ``sample_size``.

    Returns
    -------
    ndarray, shape (min(sample_size, n_total), d)
    """
    counts = np.array([len(item) for item in features], dtype=np.int64)
    total = int(counts.sum())
    if total <= sample_size:
        return np.concatenate([item.descriptors for item in features])
    chosen = np.sort(
        check_random_state(random_state).choice(total, size=sample_size, replace=False)
    )
    offsets = np.concatenate(([0], np.cumsum(counts)))
    per_image = np.split(chosen, np.searchsorted(chosen, offsets[1:-1]))
    return np.concatenate(
        [
            item.descriptors[rows - offset]
            for item, rows, offset in zip(features, per_image, offsets, strict=False)
            if len(rows)
        ]
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
        Descriptors drawn at random (over all training images) to build the vocabulary.
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
        Training images that could not be read (by ``fit`` / ``fit_transform``).
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
        """Local features of ``images`` (paths or uint8 arrays) with this model's detector.

        Returns
        -------
        BatchResult
            Features of the readable images (``values``, at indices ``kept``) and the
            unreadable files with reasons (``failures``); ``per_input()`` gives the list
            that :meth:`fit_features` and :meth:`transform_features` take (None if unreadable).
        """
        if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
            raise ValueError(
                f"images must be a sequence of paths or arrays; got {type(images).__name__}"
            )
        return map_features(
            images,
            self._make_detector(),
            n_jobs=self.n_jobs,
            cache_dir=self.cache_dir,
            strict=strict,
            description=description,
        )

    @property
    def _n_features_out(self) -> int:
        return self.n_features_out_

    # ------------------------------------------------------------------------------ fitting

    def fit(self, images: Sequence[Any], y: Any = None) -> BagOfFeatures:
        """Build the vocabulary (and idf) from ``images``: paths or uint8 arrays."""
        extracted = self.extract(images, description="features (fit)")
        self._fit(extracted.per_input(), encode=False)
        self.skipped_ = extracted.failures
        return self

    def fit_transform(self, images: Sequence[Any], y: Any = None, **fit_params: Any) -> np.ndarray:
        """``fit(images).transform(images)``, extracting features once."""
        extracted = self.extract(images, description="features (fit)")
        histograms = self._fit(extracted.per_input(), encode=True)
        self.skipped_ = extracted.failures
        return histograms

    def fit_features(
        self, features: Sequence[LocalFeatures | None], y: Any = None
    ) -> BagOfFeatures:
        """Fit on features already extracted (None entries are ignored)."""
        self._fit(features, encode=False)
        self.skipped_ = []
        return self

    def _fit(self, features: Sequence[LocalFeatures | None], encode: bool) -> np.ndarray | None:
        self._check_params()
        vocabulary = self._make_vocabulary()
        usable = [item for item in features if item is not None and len(item)]
        if not usable:
            raise ValueError(
                "no local features to build a vocabulary: every image was unreadable or empty"
            )
        sample = sample_descriptors(usable, int(self.sample_size), self.random_state)
        self.vocabulary_ = vocabulary.fit(sample)
        n_words = self.vocabulary_.n_words_
        self.n_features_out_ = n_words * n_pyramid_cells(self.pyramid)
        tfidf = self.weighting == "tfidf"
        words, weights = self._quantize(features) if encode or tfidf else (None, None)
        self.idf_ = (
            compute_idf(words, n_words, weights) if tfidf else np.ones(n_words, dtype=np.float32)
        )
        return self._encode(features, words, weights) if encode else None

    # -------------------------------------------------------------------------- transforming

    def transform(self, images: Sequence[Any]) -> np.ndarray:
        """Histograms of ``images`` (paths or uint8 arrays).

        Returns
        -------
        ndarray of float32, shape (n_images, n_features_out_); all-zero rows for unreadable
        images (:meth:`extract` then :meth:`transform_features` also says which they are).
        """
        check_is_fitted(self, "vocabulary_")
        return self.transform_features(self.extract(images).per_input())

    def transform_features(self, features: Sequence[LocalFeatures | None]) -> np.ndarray:
        """Histograms of features already extracted; None or empty entries give zero rows."""
        check_is_fitted(self, "vocabulary_")
        words, weights = self._quantize(features)
        return self._encode(features, words, weights)

    def _batches(self, features: Sequence[LocalFeatures | None]) -> Iterator[list[int]]:
        """Indices of images with descriptors, grouped into batches of about ASSIGN_CHUNK_ROWS rows."""
        batch, rows = [], 0
        for index, item in enumerate(features):
            if item is None or len(item) == 0:
                continue
            batch.append(index)
            rows += len(item)
            if rows >= ASSIGN_CHUNK_ROWS:
                yield batch
                batch, rows = [], 0
        if batch:
            yield batch

    def _quantize(self, features: Sequence[LocalFeatures | None]) -> tuple[list, list | None]:
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

    def _encode(
        self, features: Sequence[LocalFeatures | None], words: list, weights: list | None
    ) -> np.ndarray:
        return encode_histograms(
            words,
            self.vocabulary_.n_words_,
            weights=weights,
            positions=[None if item is None else item.keypoints[:, :2] for item in features],
            image_shapes=[None if item is None else item.image_shape for item in features],
            pyramid=self.pyramid,
            idf=self.idf_,
            normalization=self.normalization,
        )

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
