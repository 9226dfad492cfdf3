"""Controls: explainers that explain nothing, run beside the real ones so that every number has a
floor to be read against. Registered in :data:`CONTROLS` (family ``"control"``) and built,
called and grouped through the same code as every other explainer
(:mod:`stablesal.explain.protocol`).
"""

from __future__ import annotations

import torch

from ..core.registry import Registry
from ..core.seeding import image_seeds

# Every control, registered next to its definition; the family is what the studies and the report
# read to tell a control from an explainer under study.
CONTROLS = Registry("control")

RANDOM_MAP = "random"  # the name the random-map control is registered (and reported) under


@CONTROLS.register(RANDOM_MAP, family="control")
class RandomMap:
    """The i.i.d. random-map null: every pixel of every channel uniform on [0, 1), independently of
    the model, the target and the other images; the random attribution that Hooker, Erhan,
    Kindermans & Kim (*A Benchmark for Interpretability Methods in Deep Neural Networks*, NeurIPS
    2019) compare every method against.

    Each image draws from its own ``torch.Generator`` seeded with
    :func:`stablesal.core.seeding.image_seeds` (``seed`` and the image's bytes), so a map does not
    depend on the batch, and an edited image gets a new map (a fixed map would 'explain' every edit
    perfectly under INPAINT-METRIC). The draws are made on the CPU in float32 and the maps moved to
    the inputs' device and floating dtype.

    ``forward_func`` is accepted, and ignored, so that the control is built like every registered
    explainer (``CONTROLS[RANDOM_MAP](model)``).
    """

    random = True  # the map is its draws
    budget = None  # no model pass at all
    needs_baselines = False

    def __init__(self, forward_func=None):
        self.forward_func = forward_func

    def __str__(self) -> str:
        return "random-map"

    def attribute(self, inputs: torch.Tensor, target=None, *, seed: int | torch.Generator = 0) -> torch.Tensor:
        """Uniform maps ``[N, C, H, W]`` shaped like ``inputs``; ``target`` is ignored."""
        maps = torch.stack([torch.rand(image.shape, generator=torch.Generator().manual_seed(s))
                            for image, s in zip(inputs.detach().cpu(), image_seeds(inputs, seed))])
        return maps.to(device=inputs.device, dtype=inputs.dtype if inputs.is_floating_point() else None)
