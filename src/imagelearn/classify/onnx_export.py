"""ONNX export of a trained classifier, and prediction through ONNX Runtime.

The exported graph takes normalised images ``(n, 3, crop, crop)`` float32 and returns class
probabilities ``(n, n_classes)``; class names and preprocessing travel in the model's metadata,
so an ``.onnx`` file alone is enough to predict with the same preprocessing as PyTorch.
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imagelearn.classify.classifier import DeepImageClassifier, Prediction
from imagelearn.classify.embeddings import NetworkBatch
from imagelearn.classify.network import Probabilities
from imagelearn.classify.preprocess import ImageSource, Preprocessing
from imagelearn.classify.runtime import onnx_session
from imagelearn.core.bundle import atomic_write_bytes
from imagelearn.core.execution import map_images

log = logging.getLogger(__name__)

METADATA_KEY = "imagelearn"
#: Largest difference in probability allowed between PyTorch and ONNX Runtime.
PROBABILITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportCheck:
    """PyTorch against ONNX Runtime on the same images."""

    n_images: int
    same_top1: bool
    max_probability_difference: float

    @property
    def passed(self) -> bool:
        return self.same_top1 and self.max_probability_difference <= PROBABILITY_TOLERANCE


def export_onnx(
    model: DeepImageClassifier,
    path: str | os.PathLike,
    check_images: Sequence[ImageSource] = (),
    opset: int = 17,
) -> ExportCheck:
    """Write ``model`` as ONNX and check it against PyTorch on ``check_images``.

    Without check images (or when none is readable) eight random images are used.

    Raises
    ------
    ValueError
        ONNX Runtime disagrees with PyTorch (another top-1 class, or probabilities further
        apart than :data:`PROBABILITY_TOLERANCE`); the file is not written.
    """
    import onnx

    preprocessing = model.preprocessing_
    wrapped = Probabilities(model.network_).cpu().eval()
    example = torch.zeros(1, 3, preprocessing.crop_size, preprocessing.crop_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            wrapped,
            (example,),
            buffer,
            dynamo=False,
            input_names=["images"],
            output_names=["probabilities"],
            dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=opset,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    metadata = {
        "class_names": model.class_names_,
        "preprocessing": preprocessing.as_dict(),
        "backbone": model.backbone_name_,
        "mode": model.mode,
    }
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    data = graph.SerializeToString()
    check = _check(model, OnnxClassifier(data), check_images)
    if not check.passed:
        raise ValueError(
            f"ONNX export disagrees with PyTorch on {check.n_images} images: same top-1 {check.same_top1}, "
            f"max probability difference {check.max_probability_difference:.2e} (tolerance {PROBABILITY_TOLERANCE})"
        )
    atomic_write_bytes(path, data)
    return check


def _check(
    model: DeepImageClassifier, exported: OnnxClassifier, images: Sequence[ImageSource]
) -> ExportCheck:
    reference = model.predict_images(images, strict=False) if len(images) else None
    if reference is None or len(reference.kept) == 0:
        log.warning("no readable check images; checking the export on random images")
        size = model.preprocessing_.resize_size
        images = list(np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8))
        reference = model.predict_images(images, strict=True)
    candidate = exported.predict_images([images[i] for i in reference.kept], strict=True)
    difference = float(np.abs(reference.probabilities - candidate.probabilities).max())
    same = bool(
        np.array_equal(reference.probabilities.argmax(1), candidate.probabilities.argmax(1))
    )
    return ExportCheck(len(reference.kept), same, difference)


class OnnxClassifier:
    """Prediction with ONNX Runtime from an exported file (path or bytes).

    Attributes
    ----------
    class_names_ : list of str
    preprocessing_ : Preprocessing
    """

    def __init__(self, model: str | os.PathLike | bytes, batch_size: int = 32) -> None:
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise FileNotFoundError(
                f"{model}: no such ONNX file (create it with `imagelearn classify export`)"
            )
        self.session = onnx_session(model if isinstance(model, bytes) else str(model))
        metadata = json.loads(self.session.get_modelmeta().custom_metadata_map[METADATA_KEY])
        self.class_names_: list[str] = metadata["class_names"]
        self.preprocessing_ = Preprocessing.from_dict(metadata["preprocessing"])
        self.batch_size = batch_size

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` of normalised images ``(n, 3, crop, crop)`` float32."""
        return self.session.run(None, {"images": np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def predict_images(self, images: Sequence[ImageSource], strict: bool = False) -> Prediction:
        """Like :meth:`DeepImageClassifier.predict_images`, through ONNX Runtime."""
        result = map_images(
            NetworkBatch(
                lambda source: self.preprocessing_.evaluate(self.preprocessing_.load(source)),
                lambda batch: torch.from_numpy(self.run(batch.numpy())),
                torch.device("cpu"),
            ),
            images,
            batched=True,
            batch_size=self.batch_size,
            workers="inline",
            strict=strict,
            description="predicting",
        )
        return Prediction.stack(result, len(self.class_names_))
