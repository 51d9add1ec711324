"""One snapshot of an index: what its manifest names, with the learned models loaded.

The writer (:mod:`imagelearn.retrieval.writer`) and the reader
(:class:`imagelearn.retrieval.Index`) both start from a :class:`Snapshot`: the writer to
quantise new images and commit the next snapshot, the reader to search this one. The learned
models are their fitted halves (:mod:`imagelearn.bof.vocabulary.words`,
:class:`~imagelearn.retrieval.global_descriptors.Whitening`), so that opening an index imports
neither scikit-learn nor SciPy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from safetensors.numpy import load_file

from imagelearn.bof.vocabulary import Vocabulary, words_class
from imagelearn.core.bundle import BundleError, member_path
from imagelearn.core.persistence import decode_params
from imagelearn.core.schema import describe
from imagelearn.retrieval.global_descriptors import Whitening
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
        Fitted (the kind's fitted half, :func:`~imagelearn.bof.vocabulary.words_class`);
        assigns on all cores.
    idf : ndarray of float32, shape (n_words,)
    whitening : Whitening or None
        The global descriptors' whitening, when the index learned one.
    global_descriptor : GeMDescriptor
        Describes queries for the global path (unused when the index has none).
    fingerprint : str
        16 hex digits that differ between any two snapshots: of this content, in this
        directory, of this build (the vocabulary file's identity, new at every build). Keys
        what is computed from a snapshot and cached outside the index.

    Raises
    ------
    BundleError
        Parameters that are not valid ``IndexParams``; ``vocabulary.safetensors`` missing,
        corrupt, or not the vocabulary the parameters describe.
    """

    def __init__(self, directory: Path, content: dict[str, Any]) -> None:
        self.directory = directory
        self.content = content
        self.params = _checked_params(directory, content["params"])
        vocabulary_path = member_path(directory, VOCABULARY_NAME, what="index")
        try:
            arrays = load_file(str(vocabulary_path))
        except FileNotFoundError:
            raise BundleError(
                f"{directory / VOCABULARY_NAME}: missing; the index is corrupt"
            ) from None
        except Exception as error:  # safetensors has its own error types for corrupt files
            raise BundleError(f"{directory / VOCABULARY_NAME}: corrupt ({error})") from error
        try:
            self.vocabulary: Vocabulary = words_class(self.params.vocabulary).from_arrays(
                {**self.params.resolved_vocabulary_params, "n_jobs": -1},
                {
                    name[len(VOCABULARY_PREFIX) :]: array
                    for name, array in arrays.items()
                    if name.startswith(VOCABULARY_PREFIX)
                },
            )
            self.idf = arrays["idf"]
            self.whitening = Whitening.from_arrays(arrays)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise BundleError(
                f"{vocabulary_path}: incomplete or corrupt vocabulary ({error})"
            ) from error
        if len(self.idf) != self.vocabulary.n_words_:
            raise BundleError(
                f"{vocabulary_path}: {len(self.idf)} idf weights for "
                f"{self.vocabulary.n_words_} words; the index is corrupt"
            )
        self.global_descriptor = self.params.make_global()
        self.fingerprint = _fingerprint(directory, content, vocabulary_path)


def _fingerprint(directory: Path, content: dict[str, Any], vocabulary: Path) -> str:
    built = os.stat(vocabulary)
    identity = [
        str(directory.resolve()),
        json.dumps(content, sort_keys=True, default=str),
        built.st_ino,
        built.st_size,
        built.st_mtime_ns,
    ]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def _checked_params(directory: Path, params: dict[str, Any]) -> IndexParams:
    """The manifest's ``params`` as :class:`IndexParams`, each field's type checked.

    Raises
    ------
    BundleError
        ``"DIRECTORY: not a valid index: params.FIELD: PROBLEM"``.
    """
    try:
        checked = _PARAMS_ADAPTER.validate_python(params)
    except ValidationError as error:
        raise BundleError(f"{directory}: not a valid index: {describe(error, 'params')}") from None
    vocabulary_params = checked.vocabulary_params
    if vocabulary_params is not None:
        decode_params(words_class(checked.vocabulary), vocabulary_params, directory)
    return checked


_PARAMS_ADAPTER = TypeAdapter(IndexParams)
