"""ResNets built from the tutorial's ResBlk."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .registry import register


class ResBlk(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus a 1x1 conv + BN shortcut when the shape changes.

    out = relu(bn2(conv2(relu(bn1(conv1(x))))) + extra(x))
    """

    def __init__(self, ch_in: int, ch_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch_in, ch_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch_out)
        self.conv2 = nn.Conv2d(ch_out, ch_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch_out)
        self.extra = nn.Sequential()
        if ch_out != ch_in or stride != 1:
            self.extra = nn.Sequential(
                nn.Conv2d(ch_in, ch_out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(ch_out),
            )

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the branch the block learns, before the shortcut is added."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.residual(x) + self.extra(x))


class ResNet(nn.Module):
    """A CIFAR-style ResNet: a 3x3 stem, stages of ResBlk, global average pooling, a linear head."""

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...], num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers = []
        ch = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stage = []
            for j in range(n):
                stage.append(ResBlk(ch, w, stride=2 if (i > 0 and j == 0) else 1))
                ch = w
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@register("resnet_small", input_size=32, family="ResNet", year=2015, depth=8,
          idea="Shortcut connections: each block learns F(x) and adds x back.")
def resnet_small(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A small CIFAR ResNet (widths 16-32-64, one ResBlk each) that trains fast on CPU."""
    return ResNet((16, 32, 64), (1, 1, 1), num_classes, in_channels)


@register("resnet18_cifar", input_size=32, family="ResNet", year=2015, depth=18,
          idea="Shortcut connections: each block learns F(x) and adds x back.")
def resnet18_cifar(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-18-sized CIFAR ResNet (widths 64-128-256-512, two ResBlk each), for the GPU."""
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2), num_classes, in_channels)
