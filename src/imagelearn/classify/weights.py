"""Where backbone weights come from: ``imagenet``, ``none`` or a file.

``imagenet`` looks, in order, in the torch hub cache (``$TORCH_HOME/hub/checkpoints``), in
installed packages that ship the file (see :class:`~imagelearn.classify.backbones.OfflineWeights`),
and finally downloads through torchvision's own mechanism (which fills the hub cache).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import torch

from imagelearn.classify.backbones import (
    BACKBONES,
    DEFAULT_BACKBONE,
    Backbone,
    BackboneSpec,
    get_spec,
)
from imagelearn.core.errors import ParameterError
from imagelearn.core.progress import progress_enabled

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


def hub_checkpoint_dir() -> Path:
    """The folder torchvision downloads weights into (and where to place them by hand)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline_candidates(spec: BackboneSpec) -> list[Path]:
    """Weight files of ``spec`` inside installed packages (packages are located, not imported)."""
    found = []
    for source in spec.offline:
        try:
            package = importlib.util.find_spec(source.package)
        except (ImportError, ValueError):
            continue
        for location in (package.submodule_search_locations or []) if package else []:
            candidate = Path(location) / source.relative_path
            if candidate.is_file():
                found.append(candidate)
    return found


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """A state dict from ``.safetensors`` or a PyTorch file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle and zip errors come in many types
        raise ValueError(f"{path}: not a readable PyTorch weight file ({error})") from error
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        raise ValueError(f"{path}: does not hold a state dict of tensors")
    return loaded


def local_imagenet_weights(spec: BackboneSpec) -> Path | None:
    """The file of ``spec``'s ImageNet weights on this machine (hub cache, then an offline
    package), or None: nothing is downloaded."""
    enum = spec.weights_enum()
    if enum is None and spec.weights_file is None:
        return None
    file_name = spec.weights_file or enum.url.rsplit("/", 1)[-1]
    cached = hub_checkpoint_dir() / file_name
    if cached.is_file():
        return cached
    return next((path for path in offline_candidates(spec) if path.name == file_name), None)


def imagenet_state_dict(spec: BackboneSpec) -> tuple[StateDict, str]:
    """ImageNet weights of ``spec`` in its source library's key format, and their file name.

    Raises
    ------
    ParameterError
        The backbone has no ImageNet weights.
    FileNotFoundError
        Not found offline and the download failed; the message says which file to place where.
    """
    enum = spec.weights_enum()
    if enum is None and spec.weights_file is None:
        raise ParameterError(
            "weights",
            f"backbone {spec.name!r} has no ImageNet weights; use weights 'none' or a weight file",
        )
    file_name = spec.weights_file or enum.url.rsplit("/", 1)[-1]
    found = local_imagenet_weights(spec)
    if found is not None:
        log.debug("ImageNet weights for %s from %s", spec.name, found)
        return read_state_dict(found), file_name
    hints = "".join(
        f" or `{source.install_hint}`" for source in spec.offline if source.install_hint
    )
    if enum is None:  # published outside torchvision, with nothing to download from
        raise FileNotFoundError(
            f"ImageNet weights for {spec.name!r} not found; place {file_name} in "
            f"{hub_checkpoint_dir()}{hints}"
        )
    try:
        state_dict = torch.hub.load_state_dict_from_url(
            enum.url, progress=progress_enabled(), check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError) as error:  # URLError is an OSError; hash mismatch a RuntimeError
        raise FileNotFoundError(
            f"ImageNet weights for {spec.name!r} not found offline and the download of {enum.url} failed "
            f"({error}); place {file_name} in {hub_checkpoint_dir()}{hints}"
        ) from error
    return state_dict, file_name


def state_dict_fingerprint(state_dict: StateDict) -> str:
    """SHA-256 (16 hex digits) over the names and values of a state dict."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def build_backbone(
    name: str = DEFAULT_BACKBONE, weights: str | os.PathLike = "imagenet"
) -> Backbone:
    """A registered backbone with its weights, preprocessing and a weights identifier.

    Parameters
    ----------
    name : str
        A key of :data:`~imagelearn.classify.backbones.BACKBONES`.
    weights : {"imagenet", "none"} or path
        ``imagenet`` (hub cache, offline package, then download), ``none`` (random
        initialisation) or a state-dict file (``.pth``/``.safetensors``) for that architecture.

    Returns
    -------
    Backbone
        In eval mode, with ``name``, ``preprocessing`` (the weights' own transforms) and
        ``weights_id`` (a string that changes when the weights do) set.
    """
    spec = get_spec(name)
    if str(weights) == "none":
        backbone, weights_id = spec.build(None), "none"
    elif str(weights) == "imagenet":
        state_dict, weights_id = imagenet_state_dict(spec)
        backbone = spec.build(state_dict)
    elif Path(weights).is_file():
        state_dict = read_state_dict(weights)
        try:
            backbone = spec.build(state_dict)
        except RuntimeError as error:
            raise ParameterError(
                "weights", f"{weights}: weights do not fit backbone {name!r} ({str(error)[:300]})"
            ) from error
        weights_id = f"file-{state_dict_fingerprint(state_dict)}"
    else:
        raise FileNotFoundError(
            f"{weights}: weights must be 'imagenet', 'none' or an existing weight file"
        )
    backbone.name = name
    backbone.preprocessing = spec.default_preprocessing()
    backbone.weights_id = weights_id
    return backbone.eval()


def imagenet_classifier(name: str = DEFAULT_BACKBONE) -> torch.nn.Linear:
    """The ImageNet classifier of backbone ``name``'s ImageNet weights, in eval mode.

    One linear layer from the average-pooled last feature map ``(n, num_features)`` to the
    logits of the 1000 ImageNet classes, named by :func:`imagenet_categories`.

    Raises
    ------
    ParameterError
        The backbone's ImageNet classifier is not one linear layer (or it has no ImageNet
        weights).
    FileNotFoundError
        As :func:`imagenet_state_dict`.
    """
    spec = get_spec(name)
    if spec.classifier is None:
        usable = ", ".join(sorted(n for n, s in BACKBONES.items() if s.classifier))
        raise ParameterError(
            "backbone",
            f"backbone {name!r} has no ImageNet classifier of one linear layer; use one of: {usable}",
        )
    state_dict, file_name = imagenet_state_dict(spec)
    try:
        weight = state_dict[f"{spec.classifier}.weight"]
        bias = state_dict[f"{spec.classifier}.bias"]
    except KeyError as error:
        raise ValueError(f"{file_name}: no classifier {spec.classifier!r} ({error})") from None
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    layer.load_state_dict({"weight": weight, "bias": bias})
    return layer.eval()


def imagenet_categories() -> list[str]:
    """The names of the 1000 ImageNet classes, in the order of the classifiers' outputs
    (torchvision's weights metadata, on the machine: nothing is downloaded)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])
