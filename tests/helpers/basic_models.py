"""Tiny models and images the tests share (Captum's ``tests/helpers/basic_models.py`` pattern): analytic
models whose attributions are known, small CNNs, and models that look at one region."""

import torch
from torch import nn


class Quadratic(nn.Module):
    """logit_c = Σ a_c ⊙ x²: gradient 2 a_c ⊙ x, IG with a zero baseline = a_c ⊙ x² exactly."""

    def __init__(self, shape=(3, 8, 8), classes=3):
        super().__init__()
        self.a = nn.Parameter(torch.randn(classes, *shape))

    def forward(self, x):
        return (self.a.unsqueeze(0) * x.unsqueeze(1).square()).flatten(2).sum(2)


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)).eval()


class Spot(nn.Module):
    """A nonlinear model whose class-0 logit depends on the top-left quarter only, through tanh."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        quarter = x[:, :, : x.shape[2] // 2, : x.shape[3] // 2]
        logit = torch.tanh(self.scale * quarter.square().flatten(1)).sum(1, keepdim=True)
        return torch.cat([logit, -logit], 1)


class Spread(nn.Module):
    """Every quarter of the image counts alike, with a random weight per network."""

    def __init__(self, seed: int):
        super().__init__()
        self.weights = torch.rand(4, generator=torch.Generator().manual_seed(seed))

    def forward(self, x):
        h, w = x.shape[2] // 2, x.shape[3] // 2
        quarters = [x[:, :, :h, :w], x[:, :, :h, w:], x[:, :, h:, :w], x[:, :, h:, w:]]
        logit = sum(wt * torch.tanh(q.square().flatten(1)).sum(1, keepdim=True) for wt, q in zip(self.weights, quarters))
        return torch.cat([logit, -logit], 1)


def nonlinear_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()


def smooth_images(count=3, side=16, seed=0):
    """Images that are smooth ramps: a good inpainter should recover them almost exactly."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    a = torch.rand(count, 3, 1, 1, generator=generator)
    b = torch.rand(count, 3, 1, 1, generator=generator)
    return (0.2 + 0.3 * a * ys + 0.3 * b * xs).float()


class Quadrant(nn.Module):
    def forward(self, x):
        score = 10 * (x[:, :, :8, :8].mean((1, 2, 3)) - x[:, :, 8:, 8:].mean((1, 2, 3)))
        return torch.stack([score, -score, 0 * score], 1)


def small_model(channels=3, side=16, classes=4, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.Tanh(), nn.Flatten(),
                          nn.Linear(6 * side * side, classes)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
