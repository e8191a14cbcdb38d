"""IResNet: the "improved" ResNet of face recognition (insightface's arcface backbones), written from the
architecture as published (Deng et al., ArcFace, CVPR 2019; Duta et al., Improved Residual Networks).

112 x 112 input; a 3x3 stem (64 channels, BN, PReLU); four stages of pre-activation-style blocks
``BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN`` plus a 1x1-conv shortcut where the shape
changes, each stage halving the resolution (112 -> 56 -> 28 -> 14 -> 7); then the embedding head
``BN2d -> dropout -> flatten -> FC(512 x 7 x 7 -> 512) -> BN1d`` whose BN1d has a fixed scale of 1.
The output is the 512-d face embedding (``num_features``), so face runs use ``--embedding-dim 0``.

Example:
    >>> net = iresnet18()
    >>> net(torch.zeros(2, 3, 112, 112)).shape
    torch.Size([2, 512])
"""

from __future__ import annotations

import torch
from torch import nn

from compat_core.errors import CompatError

BN_EPS = 1e-5
DEPTHS = {"iresnet18": (2, 2, 2, 2), "iresnet34": (3, 4, 6, 3), "iresnet50": (3, 4, 14, 3),
          "iresnet100": (3, 13, 30, 3)}


class IBasicBlock(nn.Module):
    """``BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN`` + shortcut (no activation after the sum)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=BN_EPS)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes, eps=BN_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """Images (B, 3, 112, 112) -> face embeddings (B, num_features).

    Args:
        depths: blocks per stage.
        widths: channels per stage (the published models: 64, 128, 256, 512).
        num_features: embedding size (512).
        dropout: dropout before the FC (0 in the published recipes).
        input_size: the square input the FC is sized for (112; the stages divide it by 16).
    """

    def __init__(self, depths, widths=(64, 128, 256, 512), num_features: int = 512, dropout: float = 0.0,
                 input_size: int = 112):
        super().__init__()
        if input_size % 16:
            raise CompatError(f"IResNet needs an input size divisible by 16 (112 for the published models), got "
                              f"{input_size}.")
        self.input_size, self.num_features = input_size, num_features
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=BN_EPS)
        self.prelu = nn.PReLU(widths[0])
        stages, inplanes = [], widths[0]
        for depth, planes in zip(depths, widths, strict=True):
            blocks = [IBasicBlock(inplanes, planes, stride=2)] + [IBasicBlock(planes, planes) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        side = input_size // 16
        self.bn2 = nn.BatchNorm2d(widths[-1], eps=BN_EPS)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1] * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=BN_EPS)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # the published head fixes the final BN's scale at 1
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            raise CompatError(f"IResNet expects {self.input_size}x{self.input_size} images, got "
                              f"{x.shape[-2]}x{x.shape[-1]}. Train with --image-size {self.input_size}.")
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def iresnet18() -> IResNet:
    return IResNet(DEPTHS["iresnet18"])


def iresnet34() -> IResNet:
    return IResNet(DEPTHS["iresnet34"])


def iresnet50() -> IResNet:
    return IResNet(DEPTHS["iresnet50"])


def iresnet100() -> IResNet:
    return IResNet(DEPTHS["iresnet100"])


def test_iresnet() -> IResNet:
    """A tiny IResNet for tests (one block per stage, 8-64 channels, 64-d, 32 x 32 input)."""
    return IResNet((1, 1, 1, 1), widths=(8, 16, 32, 64), num_features=64, input_size=32)


test_iresnet.__test__ = False  # not a pytest test despite its name (timm's naming of tiny models)
