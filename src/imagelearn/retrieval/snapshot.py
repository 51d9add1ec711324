"""One snapshot of an index: what its manifest names, with the learned models loaded.

The writer (:mod:`imagelearn.retrieval.writer`) and the reader
(:class:`imagelearn.retrieval.Index`) both start from a :class:`Snapshot`: the writer to
quantise new images and commit the next snapshot, the reader to search this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.numpy import load_file

from imagelearn.bof.vocabulary import Vocabulary, vocabulary_class
from imagelearn.core.bundle import BundleError
from imagelearn.retrieval.global_descriptors import PCAWhitening
from imagelearn.retrieval.params import IndexParams
from imagelearn.retrieval.storage import VOCABULARY_NAME

#: Prefix of the vocabulary's arrays in ``vocabulary.safetensors``.
VOCABULARY_PREFIX = "vocabulary."


class Snapshot:
    """The manifest content of an index and the learned models it refers to, loaded once.

    Parameters
    ----------
    directory : Path
        The index directory.
    content : dict
        The manifest's content (:func:`imagelearn.retrieval.storage.read_index_manifest`).

    Attributes
    ----------
    params : IndexParams
    vocabulary : Vocabulary
        Fitted; assigns on all cores.
    idf : ndarray of float32, shape (n_words,)
    whitening : PCAWhitening or None
        The global descriptors' whitening, when the index learned one.
    global_descriptor : GeMDescriptor
        Describes queries for the global path (unused when the index has none).

    Raises
    ------
    BundleError
        ``vocabulary.safetensors`` is missing or corrupt.
    """

    def __init__(self, directory: Path, content: dict[str, Any]) -> None:
        self.directory = directory
        self.content = content
        self.params = IndexParams(**content["params"])
        try:
            arrays = load_file(str(directory / VOCABULARY_NAME))
        except FileNotFoundError:
            raise BundleError(
                f"{directory / VOCABULARY_NAME}: missing; the index is corrupt"
            ) from None
        except Exception as error:  # safetensors has its own error types for corrupt files
            raise BundleError(f"{directory / VOCABULARY_NAME}: corrupt ({error})") from error
        self.vocabulary: Vocabulary = vocabulary_class(self.params.vocabulary).from_arrays(
            {**self.params.resolved_vocabulary_params, "n_jobs": -1},
            {
                name[len(VOCABULARY_PREFIX) :]: array
                for name, array in arrays.items()
                if name.startswith(VOCABULARY_PREFIX)
            },
        )
        self.idf = arrays["idf"]
        self.whitening = (
            PCAWhitening.from_arrays({}, arrays) if "whitening.projection" in arrays else None
        )
        self.global_descriptor = self.params.make_global()
