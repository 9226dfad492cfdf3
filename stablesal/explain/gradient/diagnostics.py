"""The mechanism behind suppression sampling, measured: how confident and how uncertain is the
model on the samples each sampler feeds it, as a function of sampling strength?

Luo, McDermott & O'Riordan (*Sampling Matters in Explanations*, arXiv 2506.19442) argue that
suppressed samples stay closer to the natural-image distribution than noisy ones. We measure the
model's softmax probability of the explained class and the entropy of its prediction on the
samples of Gaussian noise (σ as a fraction of the input range) and of suppression (keep rate π),
at matched strengths: σ ∈ levels and 1 − π ∈ levels.
"""

from __future__ import annotations

import torch

from ...core.seeding import image_seeds
from .sampling import GaussianNoise, Sampler, Suppression


@torch.inference_mode()
def sample_confidence(model, images: torch.Tensor, targets: torch.Tensor, sampler: Sampler, seed: int = 0) -> dict:
    """Mean probability of the target class and mean predictive entropy (nats) over the samples of
    ``sampler`` for every image."""
    probabilities, entropies = [], []
    seeds = image_seeds(images, seed)
    for index in range(images.shape[0]):
        generator = torch.Generator(device=images.device).manual_seed(seeds[index])
        samples, _ = sampler.draw(images[index], 0, sampler.n_samples, generator)
        soft = torch.softmax(model(samples), dim=1)
        probabilities.append(soft[:, targets[index]].mean())
        entropies.append(-(soft * soft.clamp(min=1e-12).log()).sum(1).mean())
    return {"probability": float(torch.stack(probabilities).mean()), "entropy": float(torch.stack(entropies).mean())}


def confidence_by_strength(model, images: torch.Tensor, targets: torch.Tensor,
                           levels=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9), n_samples: int = 16, seed: int = 0) -> list[dict]:
    """Rows (sampler, strength, probability, entropy): Gaussian noise with σ = strength, and
    suppression with a fixed keep rate π = 1 − strength (erasing to black)."""
    rows = []
    for level in levels:
        for name, sampler in (("gaussian noise", GaussianNoise(n_samples, noise_level=level)),
                              ("suppression", Suppression(n_samples, mode="fixed", keep_rate=1.0 - level))):
            rows.append({"sampler": name, "strength": float(level),
                         **sample_confidence(model, images, targets, sampler, seed)})
    return rows
