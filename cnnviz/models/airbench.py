"""A speedrun CIFAR-10 net in the spirit of airbench (Keller Jordan, 2024).

airbench94 reaches 94% on CIFAR-10 in a few seconds on one A100 with a small VGG-like net:
a 2x2 "whitening" conv, three conv groups (conv3x3 -> maxpool -> BN -> GELU -> conv3x3 -> BN
-> GELU) of widths 64/256/256, a final max-pool and a linear head. This is that architecture,
trained plainly (no frozen whitening init, lookahead or test-time augmentation): the
`speedrun` preset in cnnviz.train pairs it with Nesterov SGD, one-cycle lr, label smoothing,
flip + crop, bf16 and channels_last.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register


class ConvGroup(nn.Module):
    """conv3x3 -> maxpool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU (halves the resolution)."""

    def __init__(self, ch_in: int, ch_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch_in, ch_out, kernel_size=3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(ch_out)
        self.conv2 = nn.Conv2d(ch_out, ch_out, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch_out)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """2x2 conv (24 ch) + GELU, ConvGroups 64/256/256, max-pool 3, linear head. 32x32 -> 1x1."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 widths: tuple[int, int, int] = (64, 256, 256), whiten_width: int = 24) -> None:
        super().__init__()
        self.whiten = nn.Conv2d(in_channels, whiten_width, kernel_size=2, padding=0, bias=True)
        self.act = nn.GELU()
        self.layers = nn.Sequential(ConvGroup(whiten_width, widths[0]), ConvGroup(widths[0], widths[1]),
                                    ConvGroup(widths[1], widths[2]))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.act(self.whiten(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register("airbench", input_size=32, family="VGG-like (speedrun)", year=2024,
          idea="Small, wide, shallow and fast: the CIFAR-10 speedrun recipe (airbench) reaches 94% in seconds.")
def airbench(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """airbench94-style speedrun net (2x2 conv, conv groups 64/256/256; ~2M parameters), for the GPU."""
    return AirbenchNet(num_classes, in_channels)
