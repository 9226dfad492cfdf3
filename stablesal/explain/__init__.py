"""Explainers and what they group by: :mod:`.segmentation` and :mod:`.grouping` (super-pixels),
:mod:`.inpainting`, the gradient methods (:mod:`.gradient`) and the perturbation methods
(:mod:`.perturbation`)."""
