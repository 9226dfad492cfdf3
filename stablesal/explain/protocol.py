"""The one protocol every explainer of stablesal satisfies, and the one call that groups its maps.

An explainer is an object with

- ``attribute(inputs, target=None, *, seed=0) -> Tensor``: ``inputs`` is a batch of images
  ``[N, C, H, W]`` with values in [0, 1]; ``target`` the class explained per image (an int, a
  sequence or a ``LongTensor`` ``[N]``; None where the explainer needs none, e.g. the random map);
  ``seed`` an int (or a ``torch.Generator`` where the explainer says so) from which every random
  draw derives, per image, so that a map does not depend on the batch it was computed in. The
  result is a map per image shaped like ``inputs``, ``[N, C, H, W]`` (perturbation methods and
  Meaningful Perturbation repeat one value over the channels); an explainer may also return
  ``[N, H, W]`` maps, which :func:`stablesal.metrics.similarity.grey_maps` and the metrics take as
  they are. Explainers may take further keywords (``baselines``, ``segments``,
  ``additional_forward_args``, ...), as Captum's methods do.
- three properties derived from the object itself, never declared beside it (as Captum's
  ``multiplies_by_inputs``):

  ``random``
      whether the map depends on ``seed`` (sampled noise, coalitions, masks, jitter, a random
      fill): a test–retest repeat is then informative, and a deterministic explainer reproduces
      itself exactly.
  ``budget``
      the name of the keyword (of the explainer's constructor, and the attribute where it is kept)
      that sets the number of model passes per image: ``"n_samples"``, ``"n_steps"`` (Integrated
      Gradients), ``"iterations"`` (Meaningful Perturbation); None when the count is fixed (one
      pass, or one sample per feature).
  ``needs_baselines``
      whether ``attribute`` must be given ``baselines`` (GradientSHAP's set of reference images):
      without them it raises.

What cannot be computed from the object (its family: ``"gradient"``, ``"perturbation"`` or
``"control"``, a label for figures) is registered next to its definition; see
:mod:`stablesal.explain.explainers`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from .grouping import Partition


@runtime_checkable
class Explainer(Protocol):
    """``attribute(inputs, target=None, *, seed=0)`` and the derived ``random``, ``budget`` and
    ``needs_baselines`` (see the module docstring). ``isinstance(obj, Explainer)`` checks that the
    four are present."""

    def attribute(self, inputs: torch.Tensor, target=None, *, seed: int = 0) -> torch.Tensor:
        ...

    @property
    def random(self) -> bool:
        ...

    @property
    def budget(self) -> str | None:
        ...

    @property
    def needs_baselines(self) -> bool:
        ...


def attribute_groupings(explainer: Explainer, inputs: torch.Tensor, target, groupings: dict, *, seed: int = 0,
                        **kwargs) -> dict[str, torch.Tensor]:
    """Maps of ``explainer`` under every grouping of ``groupings`` (name → segments ``[N, H, W]``,
    or None for the pixel map), drawing from ``seed``.

    An explainer with its own ``attribute_groupings`` (the gradient methods) groups inside each
    sample, before any nonlinearity, from one set of model passes; any other explainer
    (perturbation presets, Meaningful Perturbation, the controls) is run once and its finished map
    projected onto each partition (:class:`~stablesal.explain.grouping.Partition`, segment means).
    ``kwargs`` (e.g. ``baselines``) go to the explainer."""
    own = getattr(explainer, "attribute_groupings", None)
    if own is not None:
        return own(inputs, target=target, groupings=groupings, seed=seed, **kwargs)
    maps = explainer.attribute(inputs, target=target, seed=seed, **kwargs)
    return {name: maps if segments is None else Partition(segments).project(maps)
            for name, segments in groupings.items()}
