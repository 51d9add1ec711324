"""Deep image classification and transfer learning on torchvision backbones.

* :mod:`~imagelearn.classify.backbones`: the backbone registry (:data:`BACKBONES`).
* :mod:`~imagelearn.classify.weights`: :func:`build_backbone` with ``imagenet``/``none``/file weights.
* :mod:`~imagelearn.classify.embeddings`: :func:`embed`, global embeddings with an on-disk cache.
* :mod:`~imagelearn.classify.classifier`: :class:`DeepImageClassifier` (features, finetune, scratch).
* :mod:`~imagelearn.classify.onnx_export`: :func:`export_onnx` and :class:`OnnxClassifier`.
* :mod:`~imagelearn.classify.transfer`: :func:`compare_transfer`.
* :mod:`~imagelearn.classify.runs`: one run function per ``imagelearn classify`` verb
  (``train_run``, ``predict_images``, ``evaluate_run``, ``export_run``, ``list_backbones``).

Each name is imported on first use (PyTorch with the first that needs it), so importing the
package itself is cheap.
"""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.classify.backbones import (
        BACKBONES,
        DEFAULT_BACKBONE,
        Backbone,
        BackboneSpec,
        register,
    )
    from imagelearn.classify.classifier import DeepImageClassifier, Prediction
    from imagelearn.classify.embeddings import embed, gem_pool
    from imagelearn.classify.preprocess import Preprocessing
    from imagelearn.classify.transfer import compare_transfer
    from imagelearn.classify.weights import build_backbone

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneSpec",
    "DeepImageClassifier",
    "Prediction",
    "Preprocessing",
    "build_backbone",
    "compare_transfer",
    "embed",
    "gem_pool",
    "register",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
