"""Tests of :mod:`stablesal.explain.gradient.diagnostics`."""

import torch


def test_confidence_diagnostic_endpoints():
    from stablesal.explain.gradient.diagnostics import confidence_by_strength

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    images, targets = torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 2])
    rows = confidence_by_strength(model, images, targets, levels=(0.0, 1.0), n_samples=4)
    at_zero = [r for r in rows if r["strength"] == 0.0]
    # strength 0: both samplers return the image itself
    assert abs(at_zero[0]["probability"] - at_zero[1]["probability"]) < 1e-6
    erased = next(r for r in rows if r["sampler"] == "suppression" and r["strength"] == 1.0)
    black = torch.softmax(model(torch.zeros(1, 3, 8, 8)), 1)[0, :3].mean().item()
    assert abs(erased["probability"] - black) < 1e-5  # everything erased: the black image
