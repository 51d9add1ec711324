"""Per-pixel features from the early stages of a pretrained CNN (optional in PixelFeatures).

The image runs through a registered backbone (ImageNet weights, its own normalisation) up to
stride ``CNN_MAX_STRIDE``; the last feature map at each stride (2, 4, 8) is upsampled back to
the image bilinearly, giving every pixel a learned description of its surroundings, the way
hypercolumns (Hariharan et al., 2015) and ilastik's neural-network features do.

Unlike the filter features, a CNN's output near a border depends on its zero padding, so a
tile's CNN features differ slightly from the whole image's within ``CNN_MARGIN`` pixels of the
tile's halo edge; the halo is widened by that much to keep such pixels out of the output.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

#: Deepest stride whose feature maps are used, pixels.
CNN_MAX_STRIDE = 8
#: Extra halo, pixels, that keeps tile borders' padding effects out of tiled predictions.
CNN_MARGIN = 32


@lru_cache(maxsize=2)
def _stages(backbone_name: str):
    """The backbone's stages and preprocessing, built once per process."""
    from imagelearn.classify.weights import build_backbone

    backbone = build_backbone(backbone_name, "imagenet")
    return backbone.stages(), backbone.preprocessing


def _normalised(image: np.ndarray, mean, std) -> torch.Tensor:
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"CNN pixel features need 8-bit grey or RGB images, got {image.shape[2]} "
            f"band(s) of {image.dtype}"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return ((tensor - mean) / std)[None]


def _early_maps(image: np.ndarray, backbone_name: str) -> dict[int, torch.Tensor]:
    """The last feature map ``(1, C, h, w)`` at each stride up to ``CNN_MAX_STRIDE``, by stride."""
    stages, preprocessing = _stages(backbone_name)
    activations = _normalised(image, preprocessing.mean, preprocessing.std)
    by_stride: dict[int, torch.Tensor] = {}
    stride = 1
    with torch.inference_mode():
        for stage in stages:
            previous_height = activations.shape[-2]
            activations = stage(activations)
            if activations.shape[-2] < previous_height:  # every downsampling halves the map
                stride *= 2
            if stride > CNN_MAX_STRIDE:
                break
            by_stride[stride] = activations
    return by_stride


@lru_cache(maxsize=8)
def cnn_feature_names(backbone_name: str) -> list[str]:
    """Names of the channels :func:`cnn_pixel_features` returns: ``cnn_<backbone>_s<stride>_<i>``."""
    maps = _early_maps(np.zeros((32, 32, 3), np.uint8), backbone_name)
    return [
        f"cnn_{backbone_name}_s{stride}_{channel}"
        for stride, stride_maps in maps.items()
        for channel in range(stride_maps.shape[1])
    ]


def cnn_pixel_features(image: np.ndarray, backbone_name: str) -> np.ndarray:
    """Early feature maps of ``backbone_name`` upsampled to every pixel: float32 ``(H, W, C)``.

    ``image`` is uint8 ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` RGB.
    """
    height, width = image.shape[:2]
    with torch.inference_mode():
        upsampled = [
            F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
            for maps in _early_maps(image, backbone_name).values()
        ]
    return torch.cat(upsampled, dim=1)[0].permute(1, 2, 0).contiguous().numpy()
