"""How an index describes images: :class:`IndexParams`, fixed at build time, kept in the manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from imagelearn.bof.vocabulary import HNSW_MIN_WORDS, check_vocabulary_params, words_class
from imagelearn.core.errors import ParameterError
from imagelearn.features import make_detector
from imagelearn.features.detectors import Detector
from imagelearn.features.registry import DETECTORS
from imagelearn.retrieval.global_descriptors import GeMDescriptor

if TYPE_CHECKING:
    from imagelearn.bof.vocabulary import Vocabulary

#: The index's vocabulary parameters by kind when none are given: 10^5 words either way,
#: 10 k-means iterations; 10^5 flat words are searched through an HNSW graph.
DEFAULT_VOCABULARY_PARAMS: dict[str, dict[str, Any]] = {
    "tree": {"branching": 10, "depth": 5, "n_iter": 10},
    "kmeans": {"n_words": 100_000, "n_iter": 10, "index": "hnsw"},
}


def flat_index_kind(n_words: int) -> str:
    """How a flat vocabulary of ``n_words`` words is searched: ``"hnsw"`` from
    :data:`~imagelearn.bof.vocabulary.HNSW_MIN_WORDS` words on, else exact (``"flat"``)."""
    return "hnsw" if n_words >= HNSW_MIN_WORDS else "flat"


@dataclass(frozen=True)
class IndexParams:
    """How an index describes images; stored in its manifest and fixed for its life.

    Every field is checked when the object is made: an unknown detector or vocabulary kind,
    or a vocabulary parameter the chosen kind does not take, raises :class:`ParameterError`.

    Attributes
    ----------
    detector : str
        Local detector registry name (see :func:`imagelearn.features.make_detector`).
    max_keypoints, max_side : int
        Detector limits: strongest keypoints kept, longer side (pixels) detected on.
    vocabulary : {"tree", "kmeans"}
        Vocabulary kind (:data:`imagelearn.bof.vocabulary.VOCABULARIES`).
    vocabulary_params : dict or None
        Constructor parameters of the vocabulary kind (others keep the class's defaults);
        None: :data:`DEFAULT_VOCABULARY_PARAMS` of the kind (a 10 x 5 tree, or 100,000 flat
        words searched through an HNSW graph).
    train_images : int
        Images (a seeded random sample) whose descriptors train the vocabulary and the idf.
    train_descriptors_per_image : int
        Descriptors per training image (a seeded random subset).
    global_descriptor : bool
        Also index GeM CNN descriptors (enables the global and hybrid search modes; hybrid is
        then the default). :func:`~imagelearn.retrieval.runs.build_run` and ``imagelearn
        index build`` turn it on when the backbone's ImageNet weights are on the machine.
    global_backbone : str
        Backbone of the global descriptors.
    global_max_side : int
        Longer side (pixels) images are resized to for the global descriptor.
    whiten_dimensions : int
        PCA-whitened dimensions of the global descriptors (0: no whitening).
    tags : bool
        Also tag every image with its most probable ImageNet classes, from the global
        backbone's ImageNet classifier in the global descriptor's network pass (see
        :mod:`imagelearn.retrieval.tags`). :func:`~imagelearn.retrieval.runs.build_run` turns
        it on with the global descriptor; ``imagelearn index tag`` turns it on for an index
        built without it (the one parameter that may change after the build).
    batch_size : int
        Images per segment while building; each committed batch survives an interruption.

    Raises
    ------
    ParameterError
        ``parameter`` is ``"detector"``, ``"vocabulary"`` or ``"vocabulary_params"``.
    """

    detector: str = "rootsift"
    max_keypoints: int = 1000
    max_side: int = 1024
    vocabulary: str = "tree"
    vocabulary_params: dict[str, Any] | None = None
    train_images: int = 2000
    train_descriptors_per_image: int = 300
    global_descriptor: bool = False
    global_backbone: str = "mobilenet_v2"
    global_max_side: int = 384
    whiten_dimensions: int = 256
    batch_size: int = 500
    tags: bool = False

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ParameterError(
                "detector",
                f"unknown detector {self.detector!r}; choose one of: {', '.join(DETECTORS)}",
            )
        words_class(self.vocabulary)  # an unknown kind names "vocabulary"
        check_vocabulary_params(self.vocabulary, self.resolved_vocabulary_params)  # and its keys

    @property
    def resolved_vocabulary_params(self) -> dict[str, Any]:
        """``vocabulary_params``, or the kind's defaults when None."""
        if self.vocabulary_params is None:
            return dict(DEFAULT_VOCABULARY_PARAMS[self.vocabulary])
        return dict(self.vocabulary_params)

    def to_dict(self) -> dict[str, Any]:
        """The fields as the manifest stores them (JSON-ready; vocabulary parameters resolved,
        so that the index keeps them if the defaults change)."""
        return {**asdict(self), "vocabulary_params": self.resolved_vocabulary_params}

    def make_vocabulary(self) -> Vocabulary:
        """An unfitted vocabulary of the chosen kind and parameters."""
        from imagelearn.bof.vocabulary import make_vocabulary

        return make_vocabulary(self.vocabulary, self.resolved_vocabulary_params)

    def make_detector(self) -> Detector:
        return make_detector(
            self.detector, max_keypoints=self.max_keypoints, max_side=self.max_side
        )

    def make_global(self) -> GeMDescriptor:
        return GeMDescriptor(self.global_backbone, self.global_max_side)
