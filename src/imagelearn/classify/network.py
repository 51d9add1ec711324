"""A backbone with a linear head, and the freezing and learning-rate groups used to train it."""

from __future__ import annotations

import math

import torch
from torch import nn

from imagelearn.classify.backbones import Backbone


class ClassifierNet(nn.Module):
    """``backbone`` -> dropout -> linear: normalised images ``(n, 3, H, W)`` -> logits ``(n, n_classes)``."""

    def __init__(self, backbone: Backbone, n_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.num_features, n_classes))

    @property
    def linear(self) -> nn.Linear:
        return self.head[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class Probabilities(nn.Module):
    """Softmax over a network's logits (what prediction and ONNX export return)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(images), dim=1)


def n_trainable_stages(backbone: Backbone, unfreeze: float) -> int:
    """How many top stages a fraction ``unfreeze`` in (0, 1] of the backbone means (at least one)."""
    if not 0.0 < unfreeze <= 1.0:
        raise ValueError(f"unfreeze must be a fraction in (0, 1], got {unfreeze}")
    return max(1, math.ceil(unfreeze * len(backbone.stages())))


def freeze_backbone(network: ClassifierNet, n_trainable: int) -> None:
    """Train only the top ``n_trainable`` stages and the head. Call after ``network.train()``.

    Frozen stages stay in eval mode, and every batch-norm layer keeps its ImageNet statistics
    (inference mode; its scale and shift still train when unfrozen): batch statistics of small
    fine-tuning batches would shift the features the head was fitted on.
    """
    stages = network.backbone.stages()
    network.backbone.requires_grad_(n_trainable >= len(stages))
    for stage in stages[len(stages) - n_trainable :]:
        stage.requires_grad_(True)
    for index, stage in enumerate(stages):
        if index < len(stages) - n_trainable:
            stage.eval()
    for module in network.backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def discriminative_groups(
    network: ClassifierNet, n_trainable: int, learning_rate: float, backbone_ratio: float = 0.1
) -> list[dict]:
    """Optimizer parameter groups: the head at ``learning_rate``, unfrozen stages lower.

    The top stage gets ``learning_rate * backbone_ratio``, the lowest unfrozen stage ten times
    less, geometrically in between (fastai's ``slice(lr / 100, lr / 10)``). Parameters of the
    backbone outside any stage (a ViT's class token) go with the lowest group.
    """
    stages = network.backbone.stages()[-n_trainable:] if n_trainable else []
    groups = [{"params": list(network.head.parameters()), "lr": learning_rate}]
    in_stages: set[int] = set()
    for position, stage in enumerate(reversed(stages)):
        fraction = position / max(1, len(stages) - 1)
        parameters = list(stage.parameters())
        in_stages.update(id(parameter) for parameter in parameters)
        groups.append({"params": parameters, "lr": learning_rate * backbone_ratio * 0.1**fraction})
    if n_trainable >= len(network.backbone.stages()):
        rest = [p for p in network.backbone.parameters() if id(p) not in in_stages]
        if rest:
            groups[-1]["params"] = groups[-1]["params"] + rest
    return [group for group in groups if group["params"]]
