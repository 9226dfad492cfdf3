"""Meaningful Perturbation (Fong & Vedaldi, ICCV 2017) and its inpainting version MP-G
(GEN-REMOVE, docs/methods.md §5).

A low-resolution keep mask m (upsampled bilinearly) is optimised with Adam to minimise

    λ₁ ||1 − m||₁ + λ₂ TV_β(m) + p_c(x ⊙ m + x̃ ⊙ (1 − m))

with random jitter of the image each iteration. MP's filler x̃ is a Gaussian blur of the image
(radius 10 px at 224 px); MP-G fills with an inpainter given the binarised mask (m < 0.5 is the
hole), uses the binarised mask in the composite and passes gradients straight through to m
(where the binarised mask keeps the image, the filler is the blur: otherwise the gradient would
vanish while no pixel is yet removed, a detail GEN-REMOVE leaves open). The saliency is 1 − m. Batched: every image's mask is optimised in the same passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...core.fills import fill_images
from ...core.checks import check_eval_model, check_images, check_targets, model_device


def total_variation(masks: torch.Tensor, beta: float = 3.0) -> torch.Tensor:
    """Σ |∇m|^β per mask ``[B]`` (anisotropic differences, Fong & Vedaldi's TV_β)."""
    dy = (masks[:, :, 1:, :] - masks[:, :, :-1, :]).abs().pow(beta).flatten(1).sum(1)
    dx = (masks[:, :, :, 1:] - masks[:, :, :, :-1]).abs().pow(beta).flatten(1).sum(1)
    return dy + dx


class MeaningfulPerturbation:
    """``attribute(images, target, seed)`` → saliency ``[B, C, H, W]`` (1 − m, same in each channel).

    Parameters follow docs/methods.md §5, scaled from 224-pixel images: ``mask_side`` 28 at 224 (one
    eighth of the side, at least 4), jitter 4 px and blur σ 10 px scaled likewise, and λ₁ (1e-4
    for a 28×28 mask) scaled by (28 / mask_side)² so that it weighs the same image area. ``inpainter``
    None gives MP (blur filler); an inpainter gives MP-G.
    """

    def __init__(self, model, inpainter=None, iterations: int = 300, lr: float = 0.1, l1: float | None = None,
                 tv: float = 1e-2, tv_beta: float = 3.0, mask_side: int | None = None, jitter: int | None = None,
                 blur_sigma: float | None = None):
        self.model = check_eval_model(model)
        if iterations < 1:
            raise ValueError(f"iterations must be positive, got {iterations}")
        self.inpainter, self.iterations, self.lr = inpainter, int(iterations), float(lr)
        self.l1 = None if l1 is None else float(l1)
        self.tv, self.tv_beta = float(tv), float(tv_beta)
        self.mask_side, self.jitter, self.blur_sigma = mask_side, jitter, blur_sigma

    def __str__(self) -> str:
        return "mp-g" if self.inpainter is not None else "mp"

    @property
    def random(self) -> bool:
        """Whether the map depends on the seed: the seed draws the random jitter of every
        iteration, so the map is deterministic only without jitter (``jitter=0``)."""
        return self.jitter != 0

    @property
    def budget(self) -> str:
        """``"iterations"``: the optimisation steps, one model pass each per image."""
        return "iterations"

    @property
    def needs_baselines(self) -> bool:
        """False: the filler (blur, or the inpainter) is computed from the image itself."""
        return False

    def attribute(self, images: torch.Tensor, target=None, seed: int = 0) -> torch.Tensor:
        """Saliency ``[B, C, H, W]`` (1 − m) of ``images`` ``[B, C, H, W]`` for ``target``; ``seed``
        draws the jitter."""
        check_images(images, "images")
        device = model_device(self.model)
        images = images.to(device)
        batch, channels, height, width = images.shape
        with torch.inference_mode():
            classes = self.model(images).shape[1]
        target = check_targets(target, batch, classes).to(device)
        side = self.mask_side or max(4, round(height * 28 / 224))
        jitter = self.jitter if self.jitter is not None else max(1, round(4 * height / 224))
        sigma = self.blur_sigma or max(1.0, 10 * height / 224)  # the paper's σ = 10 px at 224 px
        # λ₁ = 1e-4 weighs the L1 sum over a 28×28 mask; a smaller mask has fewer elements, so the
        # same weight per unit of image area is 1e-4 · (28 / side)²
        l1 = self.l1 if self.l1 is not None else 1e-4 * (28 / side) ** 2
        blurred = fill_images("blur", images, sigma=sigma)  # the fill vocabulary's blur, MP's own σ
        generator = torch.Generator().manual_seed(seed)
        logit = torch.full((batch, 1, side, side), 2.0, device=device, requires_grad=True)  # m starts near 1
        optimiser = torch.optim.Adam([logit], lr=self.lr)
        parameters = [p for p in self.model.parameters()] if isinstance(self.model, torch.nn.Module) else []
        flags = [p.requires_grad for p in parameters]
        for p in parameters:
            p.requires_grad_(False)
        try:
            for _ in range(self.iterations):
                small = torch.sigmoid(logit)
                mask = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
                dy, dx = (int(v) for v in torch.randint(0, jitter + 1, (2,), generator=generator))
                shifted = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
                if self.inpainter is None:
                    filler = torch.roll(blurred, shifts=(dy, dx), dims=(2, 3))
                    composite = shifted * mask + filler * (1 - mask)
                else:
                    hard = (mask > 0.5).to(mask.dtype)
                    straight = mask + (hard - mask).detach()  # forward: binary; backward: identity
                    with torch.no_grad():
                        hole = hard < 0.5
                        # inside the hole the inpainted fill; outside it (where the composite shows the
                        # image) the blur, so that the straight-through gradient is not zero at the start
                        filler = torch.where(hole, self.inpainter(shifted.detach(), hole),
                                             torch.roll(blurred, shifts=(dy, dx), dims=(2, 3)))
                    composite = shifted * straight + filler * (1 - straight)
                probability = torch.softmax(self.model(composite), 1).gather(1, target.view(-1, 1))[:, 0]
                loss = (l1 * (1 - small).abs().flatten(1).sum(1) + self.tv * total_variation(small, self.tv_beta)
                        + probability).sum()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        finally:
            for p, flag in zip(parameters, flags):
                p.requires_grad_(flag)
        with torch.no_grad():
            mask = F.interpolate(torch.sigmoid(logit), size=(height, width), mode="bilinear", align_corners=False)
        return (1 - mask).expand(-1, channels, -1, -1).detach().clone()
