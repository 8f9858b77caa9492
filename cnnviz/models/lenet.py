"""LeNet5 exactly as the tutorial writes it (no ReLU after the convolutions)."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register


class LeNet5(nn.Module):
    """Conv 3->16 k5, MaxPool 2, Conv 16->32 k5, MaxPool 2, Linear 800->32, ReLU, Linear 32->10."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv_unit = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=5, stride=1, padding=0),
            nn.MaxPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(16, 32, kernel_size=5, stride=1, padding=0),
            nn.MaxPool2d(kernel_size=2, stride=2, padding=0),
        )
        self.fc_unit = nn.Sequential(
            nn.Linear(32 * 5 * 5, 32),
            nn.ReLU(),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_unit(x)
        x = torch.flatten(x, 1)
        return self.fc_unit(x)


@register("lenet5", input_size=32, family="LeNet", year=1998, depth=4,
          idea="Convolution + pooling + fully connected: the template every CNN since follows.")
def lenet5(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """LeNet5 from the tutorial notes (40,010 parameters at 3 channels, 10 classes; 32x32 input)."""
    return LeNet5(num_classes, in_channels)
