"""Classifiers: a small CNN, a CIFAR-style ResNet-20, and a registry for user factories.

Every model built here starts with :class:`Normalize`, so it takes images with pixel values in
``[0, 1]``. Wrap a model of your own that expects normalised inputs with
``Normalize(mean, std)`` in an ``nn.Sequential`` to use it the same way.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

from ..core.registry import Registry


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; stored as buffers so checkpoints carry the statistics."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """Three stages of two conv-BN-ReLU layers (width, 2·width, 4·width channels), the first two
    pooled by 2, then a global average pool and a linear layer (about 70 k parameters at width 16)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 16):
        super().__init__()
        layers = []
        channels = in_channels
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=False),
                nn.Conv2d(out, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=False),
            ]
            if stage < 2:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class _BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """ResNet for 32×32 inputs (He et al., 2016, §4.2): depth 6n+2, widths 16/32/64."""

    def __init__(self, depth: int = 20, in_channels: int = 3, num_classes: int = 10, width: int = 16):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 (20, 32, 44, ...), got {depth}")
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, channels = [], width
        for index, out in enumerate((width, 2 * width, 4 * width)):
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(_BasicBlock(channels, out, stride))
                channels = out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean(dim=(2, 3)))


ModelFactory = Callable[..., nn.Module]

MODEL_FACTORIES = Registry("model")
MODEL_FACTORIES.register("small_cnn", SmallCNN)
MODEL_FACTORIES.register("resnet20", lambda **kw: ResNetCIFAR(depth=20, **kw))


def register_model(name: str, factory: ModelFactory) -> None:
    """Make ``factory(in_channels=..., num_classes=..., **options)`` available by ``name``
    (replacing an entry of that name: re-running a notebook cell must not fail)."""
    if name in MODEL_FACTORIES:
        MODEL_FACTORIES.unregister(name)
    MODEL_FACTORIES.register(name, factory)


def build_model(name: str, in_channels: int, num_classes: int, mean, std, **options) -> nn.Sequential:
    """Build a registered architecture behind a :class:`Normalize` layer."""
    network = MODEL_FACTORIES.lookup(name)(in_channels=in_channels, num_classes=num_classes, **options)
    return nn.Sequential(Normalize(mean, std), network)
