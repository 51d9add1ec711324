"""ONNX Runtime sessions of exported networks, and where the exports are kept; no PyTorch.

:mod:`imagelearn.classify.runtime` exports networks (with PyTorch) into :func:`export_folder`
and runs them through :func:`onnx_session`; a retrieval search opens a cached export with
the same function without importing PyTorch
(:meth:`~imagelearn.retrieval.global_descriptors.GeMDescriptor.describe`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from imagelearn.core.cache import cache_root
from imagelearn.core.threads import thread_count


def export_folder() -> Path:
    """``<embedding cache>/networks``: the ONNX exports, ``<export key>.onnx``."""
    return cache_root("embeddings") / "networks"


def onnx_available() -> bool:
    """Whether ONNX Runtime can be imported."""
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_session(model: bytes | str, spinning: bool = True) -> Any:
    """An ONNX Runtime CPU session of a model (bytes or file) on :func:`thread_count` threads.

    Parameters
    ----------
    model : bytes or str
        The ONNX model, or its file.
    spinning : bool
        Whether idle worker threads spin-wait for the next operator (ONNX Runtime's default,
        best for back-to-back batches); False puts them to sleep at once, for a session that
        runs one image now and then between other native work (a search's query), which the
        spinning threads would otherwise slow down.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = thread_count()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
