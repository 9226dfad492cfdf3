"""Every explainer a study can name, wherever it is registered: the gradient methods
(:data:`~stablesal.explain.gradient.methods.METHODS`), the perturbation presets
(:data:`~stablesal.explain.perturbation.presets.PRESETS`) and the controls
(:data:`~stablesal.explain.controls.CONTROLS`).

The registries keep what cannot be computed from an explainer: its ``family`` (``"gradient"``,
``"perturbation"``, ``"control"``) and a ``label`` for figures. Everything else (``random``,
``budget``, ``needs_baselines``) is a property of the built explainer
(:mod:`stablesal.explain.protocol`); :func:`describe` builds one with its defaults, around a
stand-in model, to read them before any model exists.
"""

from __future__ import annotations

import torch

from ..core.registry import Registry, unknown_name_error
from .controls import CONTROLS
from .gradient.methods import METHODS
from .perturbation.presets import PRESETS
from .protocol import Explainer

REGISTRIES = (METHODS, PRESETS, CONTROLS)


def explainer_names() -> list[str]:
    """Every registered explainer name, gradient methods first, then presets, then controls."""
    return [name for registry in REGISTRIES for name in registry]


def explainer_registry(name: str) -> Registry:
    """The registry that holds ``name``; an unknown name is a ``ValueError`` with the closest one."""
    for registry in REGISTRIES:
        if name in registry:
            return registry
    raise unknown_name_error("", name, explainer_names(), "explainer")


def family(name: str, default: str | None = None) -> str | None:
    """The registered family of explainer ``name``: ``"gradient"``, ``"perturbation"`` or
    ``"control"``; ``default`` for a name no registry holds (e.g. the removal study's ``SP``)."""
    for registry in REGISTRIES:
        if name in registry:
            return registry.info(name, "family", default)
    return default


def label(name: str) -> str:
    """The registered short label of ``name`` for figures, else the name itself."""
    for registry in REGISTRIES:
        if name in registry:
            return registry.info(name, "label", name)
    return name


def row_family(row: dict) -> str | None:
    """The family of a result row: its ``family`` field, or for a row written before rows carried
    one (an older ``results.json``), the registered family of its ``method``; None when neither
    says (a method no registry holds)."""
    return row.get("family") or family(row.get("method"))


def is_control(row: dict) -> bool:
    """Whether a result row belongs to a control (the random map), not to an explainer under study."""
    return row_family(row) == "control"


def describe(name: str) -> Explainer:
    """Explainer ``name`` built with its defaults around a stand-in model (``nn.Identity``), to read
    its derived properties (``random``, ``budget``, ``needs_baselines``) without a real model.
    Do not run it."""
    return explainer_registry(name).lookup(name)(torch.nn.Identity().eval())
