"""Where networks run: PyTorch on a device, or ONNX Runtime on the CPU, with the thread policy of
:mod:`imagelearn.core.threads`.

Inference over many images (embeddings, GeM descriptors) picks its engine with
:func:`resolve_backend`: ONNX Runtime on the CPU when it is installed (3 to 5 times faster
than PyTorch eager for MobileNetV2: it fuses batch normalisation into the convolutions), PyTorch
on a GPU or when ONNX Runtime is absent; :func:`inference_engine` also keeps PyTorch for a few
images of a network not exported yet. :class:`OnnxNetwork` exports a network once: the
export is kept in the process and on disk (``<embedding cache>/networks/<key>.onnx``), keyed by
the network's structure, its weights and the PyTorch version.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from imagelearn.classify.sessions import onnx_available, onnx_session
from imagelearn.core.errors import ParameterError
from imagelearn.core.threads import cap_torch_threads, native_threads

__all__ = [
    "INFERENCE_BACKENDS",
    "OnnxNetwork",
    "configure_torch",
    "inference_engine",
    "network_runner",
    "onnx_session",
    "resolve_backend",
    "single_thread",
]

log = logging.getLogger(__name__)

InferenceBackend = Literal["auto", "torch", "onnx"]
#: ``auto``: ONNX Runtime on the CPU when installed, else PyTorch.
INFERENCE_BACKENDS = ("auto", "torch", "onnx")
#: ONNX operator set of the exports.
ONNX_OPSET = 17
#: Images from which ``auto`` exports a network that has no export yet (an export takes a few
#: seconds, which a few images of a new network, such as a fine-tuned one, do not repay).
EXPORT_MIN_IMAGES = 32
#: ONNX Runtime sessions a process keeps, by export key.
KEPT_SESSIONS = 4
_sessions: dict[str, Any] = {}
_runners: weakref.WeakKeyDictionary[torch.nn.Module, OnnxNetwork] = weakref.WeakKeyDictionary()
_small_on_torch: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def configure_torch(device: str | None = None) -> torch.device:
    """Use at most :func:`~imagelearn.core.threads.thread_count` threads; return ``device`` or the GPU when there is one."""
    cap_torch_threads()
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def single_thread() -> AbstractContextManager[None]:
    """Run tiny tensor work (a linear head on embeddings) on one thread: thread start-up and
    synchronisation cost more than they gain there."""
    return native_threads(1, ("torch",))


def resolve_backend(backend: str, device: torch.device) -> Literal["torch", "onnx"]:
    """The engine that runs a network placed on ``device``.

    Parameters
    ----------
    backend : {"auto", "torch", "onnx"}
        ``auto``: ONNX Runtime when ``device`` is the CPU and ONNX Runtime is installed, else
        PyTorch.

    Raises
    ------
    ParameterError
        An unknown backend, or ``onnx`` without ONNX Runtime or for a network off the CPU.
    """
    if backend not in INFERENCE_BACKENDS:
        raise ParameterError("backend", f"must be one of {INFERENCE_BACKENDS}; got {backend!r}")
    if backend == "auto":
        return "onnx" if device.type == "cpu" and onnx_available() else "torch"
    if backend == "onnx" and not onnx_available():
        raise ParameterError("backend", "onnx needs ONNX Runtime (pip install onnxruntime)")
    if backend == "onnx" and device.type != "cpu":
        raise ParameterError("backend", f"onnx runs on the CPU; the network is on {device}")
    return backend


def inference_engine(
    backend: str, network: torch.nn.Module, n_images: int, export_folder: Path | None
) -> Literal["torch", "onnx"]:
    """The engine that runs ``network`` on ``n_images`` images (:func:`resolve_backend` on its
    device); ``auto`` keeps PyTorch for fewer than :data:`EXPORT_MIN_IMAGES` images when
    the network has no export yet, in the process or in ``export_folder``."""
    engine = resolve_backend(backend, next(network.parameters()).device)
    if engine == "onnx" and backend == "auto" and n_images < EXPORT_MIN_IMAGES:
        key = export_key(network)
        exported = export_folder is not None and (export_folder / f"{key}.onnx").is_file()
        return "onnx" if key in _sessions or exported else "torch"
    return engine


def network_runner(
    backend: str, network: torch.nn.Module, n_images: int, export_folder: Path | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """What runs ``network`` on ``n_images`` images: ``network`` itself, or its
    :class:`OnnxNetwork` (:func:`inference_engine`).

    The :class:`OnnxNetwork` stays with the network object, so a network kept between calls
    (a GeM descriptor describing one query after another) neither hashes its weights nor looks
    up its session again: such a network's weights must not change once it ran on ONNX Runtime
    (callers that train build a new wrapper per call).
    """
    if backend == "torch":
        return network
    runner = _runners.get(network)
    if runner is not None:
        return runner
    if backend == "auto" and n_images < EXPORT_MIN_IMAGES and network in _small_on_torch:
        return network  # decided before: not exported, too few images to export it
    if inference_engine(backend, network, n_images, export_folder) == "torch":
        if n_images < EXPORT_MIN_IMAGES and onnx_available():
            _small_on_torch.add(network)
        return network
    runner = _runners[network] = OnnxNetwork(network, export_folder)
    return runner


class OnnxNetwork:
    """A PyTorch network run by ONNX Runtime: ``(n, 3, h, w)`` float32 -> its output.

    The network is exported (batch, height and width dynamic) on the first call, or read from
    the export cache; the export stays in the process for the next networks of the same key.

    Parameters
    ----------
    network : torch.nn.Module
        On the CPU, in eval mode when called; one input, one output.
    cache_folder : Path or None
        Where exports are kept on disk; None: only in the process.
    """

    def __init__(self, network: torch.nn.Module, cache_folder: Path | None) -> None:
        self.network = network
        self.cache_folder = cache_folder
        self._session: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its session (a worker of another engine opens its own)."""
        return {**self.__dict__, "_session": None}

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self._session is None:
            self._session = _session_of(self)
        inputs = np.ascontiguousarray(batch.numpy(), dtype=np.float32)
        return torch.from_numpy(self._session.run(None, {"images": inputs})[0])

    def export(self, key: str) -> bytes:
        """The network as ONNX bytes: from the disk cache (``<key>.onnx``), else exported there."""
        path = self.cache_folder / f"{key}.onnx" if self.cache_folder is not None else None
        if path is not None and path.is_file():
            return path.read_bytes()
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(
                self.network,
                (torch.zeros(1, 3, 224, 224),),
                buffer,
                dynamo=False,
                input_names=["images"],
                output_names=["outputs"],
                dynamic_axes={
                    "images": {0: "batch", 2: "height", 3: "width"},
                    "outputs": {0: "batch"},
                },
                opset_version=ONNX_OPSET,
            )
        data = buffer.getvalue()
        if path is not None:
            from imagelearn.core.bundle import atomic_write_bytes

            try:
                atomic_write_bytes(path, data)
            except OSError as error:  # a read-only cache costs an export per process
                log.warning("could not keep the ONNX export in %s: %s", path, error)
        return data


def export_key(network: torch.nn.Module) -> str:
    """SHA-256 (24 hex digits) of the network's structure, weights, PyTorch version and opset."""
    digest = hashlib.sha256(f"{network!r}|{torch.__version__}|{ONNX_OPSET}".encode())
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def _session_of(network: OnnxNetwork) -> Any:
    """The process's session of ``network``'s export key (the least recently used of more than
    :data:`KEPT_SESSIONS` is dropped)."""
    key = export_key(network.network)
    session = _sessions.pop(key, None) or onnx_session(network.export(key))
    _sessions[key] = session
    while len(_sessions) > KEPT_SESSIONS:
        del _sessions[next(iter(_sessions))]
    return session
