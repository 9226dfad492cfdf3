"""ImageNet-layout ResNet-18 and ResNet-50 in plain PyTorch (He et al., CVPR 2016; the layout of
torchvision's ``resnet18``/``resnet50``: 7×7 stride-2 stem, max-pool, four stages), for the
224-pixel benchmarks on machines where torchvision cannot be installed beside the CPU build of
torch. Registered with :func:`stablesal.models.register_model` as ``resnet18_imagenet`` and
``resnet50_imagenet`` when imported."""

from __future__ import annotations

import torch
from torch import nn

from stablesal.models import register_model


class Basic(nn.Module):
    expansion = 1

    def __init__(self, inputs: int, width: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(inputs, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))
        self.shortcut = (nn.Sequential(nn.Conv2d(inputs, width, 1, stride, bias=False), nn.BatchNorm2d(width))
                         if stride != 1 or inputs != width else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inputs: int, width: int, stride: int):
        super().__init__()
        outputs = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(inputs, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, outputs, 1, bias=False), nn.BatchNorm2d(outputs))
        self.shortcut = (nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))
                         if stride != 1 or inputs != outputs else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, depths, in_channels: int = 3, num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        layers, inputs = [], 64
        for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            for index in range(depth):
                layers.append(block(inputs, width, 2 if stage > 0 and index == 0 else 1))
                inputs = width * block.expansion
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(inputs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)).mean(dim=(2, 3)))


register_model("resnet18_imagenet", lambda in_channels=3, num_classes=1000: ResNet(Basic, (2, 2, 2, 2), in_channels,
                                                                                  num_classes))
register_model("resnet50_imagenet", lambda in_channels=3, num_classes=1000: ResNet(Bottleneck, (3, 4, 6, 3),
                                                                                  in_channels, num_classes))


def benchmark_model(arch: str, device="cpu") -> torch.nn.Module:
    """The benchmarks' model in eval mode with 10 outputs and stablesal's normalisation in front:
    a registered architecture, or ``"torchvision:<name>"`` (torchvision's own network, no weights)
    where torchvision is installed (``make test-torchvision`` builds such an environment)."""
    from stablesal.models import build_model
    from stablesal.models.user_models import model_factory, prepare

    if arch.startswith("torchvision:"):
        network = model_factory(arch=arch, num_classes=10)().eval()
        return prepare(network, arch, mean=[0.5] * 3, std=[0.25] * 3).to(device)
    return build_model(arch, 3, 10, [0.5] * 3, [0.25] * 3).eval().to(device)
