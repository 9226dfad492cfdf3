"""Metrics for saliency maps, usable on their own, one module per kind: :mod:`.similarity` (map
preparation, pairwise similarity, maps on a common scale), :mod:`.fidelity` (deletion/insertion,
µFidelity, LIF/MIF/SRG, INPAINT-METRIC, the randomisation check), :mod:`.localisation` and
:mod:`.agreement` (MeGe/ReCo, Kendall τ, mean intervals). Each metric is registered in
:data:`METRICS` (:mod:`.registry`) next to its definition; importing this package registers them all.

Every public name of the former module ``stablesal.metrics`` is re-exported here."""

from .registry import (
    MetricInfo, METRICS, register_metric, metric_info,
)
from .similarity import (
    MIN_SPREAD, grey_maps, SSIM_SIGMA, SSIM_REFERENCE_SIDE, ssim_sigma, ssim, spearman, normalised_l2,
    topk_intersection, pairwise_metrics, pairwise_similarity, unit_maps, flat_scores,
)
from .agreement import (
    mean_ci, mege, reco, kendall_tau_matrix,
)
from .fidelity import (
    removed_probabilities, deletion_insertion, randomised_copy, random_cell_subsets, output_drops,
    MU_FIDELITY_CORRELATIONS, mu_fidelity, removal_curves, srg, inpaint_metric,
)
from .localisation import (
    iou_top, pointing_game, relevance_mass, saliency_metric,
)
