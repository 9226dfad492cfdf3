"""The metric registry: every metric is registered in :data:`METRICS` next to its definition with
:class:`MetricInfo` metadata (direction, range, kind), which the studies, the Kendall τ and the
report's arrows read.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.registry import Registry


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means: its direction, range and kind. The studies, the Kendall τ between
    metrics and the report's arrows read it (never a hand-kept list).

    ``kind``: ``"pairwise"`` (two maps → a similarity or distance; the stability study computes
    every pairwise metric), ``"models"`` (across retrained models), ``"fidelity"`` (needs the
    model), ``"localisation"`` (needs object masks)."""

    name: str
    higher_is_better: bool
    low: float | None
    high: float | None
    description: str
    kind: str = "fidelity"

    @property
    def arrow(self) -> str:
        """"↑" when higher is better, else "↓" (the report's column labels)."""
        return "↑" if self.higher_is_better else "↓"


# Every metric, registered next to its definition with its MetricInfo (registry metadata "info").
METRICS = Registry("metric")


def register_metric(name: str, *, higher_is_better: bool, low, high, description: str, kind: str = "fidelity",
                    function=None):
    """Register ``function`` (or, as a decorator, what it decorates) as metric ``name``; its
    :class:`MetricInfo` is the registry's metadata and the function's ``info`` attribute. Every
    property is a keyword, so a registration reads as what it declares."""
    info = MetricInfo(name, higher_is_better, low, high, description, kind)

    def add(fn):
        METRICS.register(name, fn, info=info, kind=kind)
        if getattr(fn, "info", None) is None:
            fn.info = info
        return fn

    return add if function is None else add(function)


def metric_info(name: str) -> MetricInfo:
    """The :class:`MetricInfo` of a registered metric."""
    return METRICS.info(name, "info")
