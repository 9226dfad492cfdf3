"""The proxies of stablesal.models.proxies: each against a hand-derived or independent answer."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from stablesal.core.seeding import derive
from stablesal.core.settings import TrainConfig
from stablesal.models.proxies import (
    ProxySettings, dropout_variants, finetune_copies, laplace_posterior, laplace_subset, laplace_variants, make_variants,
    SwagMoments, proxy_cost, recompute_batch_norm, spawn_children, swag_moments, swag_variants,
)
from stablesal.models.training import seed_plan, train_one


def _parameters(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _head_model(seed=0, classes=3, width=5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, width), nn.Tanh(), nn.Linear(width, classes)).eval()


def test_finetune_copies_move_a_little_each_their_own_way(tiny_shapes, tiny_config):
    trained = train_one(tiny_shapes, seed_plan(1, "seed", 0, 240)[0], tiny_config, progress=False).model
    images, labels = tiny_shapes.train_images, tiny_shapes.train_labels
    settings = ProxySettings(finetune_fraction=0.5)
    first, second = finetune_copies(trained, images, labels, 2, settings, tiny_config, seed=0)
    again = finetune_copies(trained, images, labels, 1, settings, tiny_config, seed=0)[0]
    original = _parameters(trained)
    assert torch.equal(_parameters(first), _parameters(again))  # seeded
    assert not torch.equal(_parameters(first), _parameters(second))  # each its own data order
    moved = (_parameters(first) - original).norm() / original.norm()
    assert 0 < moved < 0.2, moved  # fine-tuned, not retrained
    assert not any(p.requires_grad for p in first.parameters()) and not first.training
    assert all(p.requires_grad is False for p in trained.parameters())  # the original is untouched
    boot = finetune_copies(trained, images, labels, 1, settings, tiny_config, seed=0, bootstrap=True)[0]
    assert not torch.equal(_parameters(boot), _parameters(first))  # another stream and a resample


def test_a_spawned_child_is_the_run_that_switches_seed_at_epoch_t(tiny_shapes, tmp_path):
    """A child resumes from its parent's state after epoch t; it must equal one uninterrupted run
    that trains epochs < t with the parent's seed and the rest with the child's (computed here
    without any checkpoint)."""
    config = TrainConfig(epochs=3, batch_size=64, model_options={"width": 4})
    run = seed_plan(1, "seed", 5, 240)[0]
    first, second = spawn_children(tiny_shapes, run, config, epoch=1, k=2, out_dir=tmp_path, progress=False, seed=7)
    child_seed = first.meta["child_seed"]
    reference = train_one(tiny_shapes, {**run, "spawn_epoch": 1, "spawn_child": 0, "child_seed": child_seed},
                          config, out_dir=None, progress=False)
    assert torch.equal(_parameters(first.model), _parameters(reference.model))
    assert not torch.equal(_parameters(first.model), _parameters(second.model))
    for path in tmp_path.glob("model-*.pt"):  # the children's finished checkpoints gone: a re-run spawns again
        if "partial" not in path.name:
            path.unlink()
    again = spawn_children(tiny_shapes, run, config, epoch=1, k=1, out_dir=tmp_path, progress=False, seed=7)[0]
    assert torch.equal(_parameters(again.model), _parameters(first.model))  # from the kept state, not one epoch on
    at_zero = spawn_children(tiny_shapes, run, config, epoch=0, k=1, out_dir=tmp_path, progress=False, seed=7)[0]
    assert not torch.equal(_parameters(at_zero.model), _parameters(first.model))
    with pytest.raises(ValueError, match=r"spawn epoch must be an integer in \[0, 3\)"):
        spawn_children(tiny_shapes, run, config, epoch=3, k=2, out_dir=tmp_path, progress=False)


def test_dropout_variants_are_fixed_thinned_networks_and_need_dropout():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Dropout2d(0.5), nn.Flatten(), nn.Dropout(0.3),
                          nn.Linear(6 * 6 * 6, 4)).eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    first, second = dropout_variants(model, 2, seed=0)
    assert torch.equal(first(x), first(x)) and not torch.equal(first(x), second(x))
    # by hand: a Dropout2d mask zeroes whole channels; the kept ones are scaled by 1/(1 − p)
    features = model[1](model[0](x))
    thinned = first[2](features)
    kept = thinned.abs().sum((0, 2, 3)) > 0
    assert torch.allclose(thinned[:, kept], features[:, kept] / 0.5)
    assert not torch.equal(first(x), model(x))
    with pytest.raises(ValueError, match="proxy 'dropout' needs a model with dropout layers"):
        dropout_variants(_head_model(), 2)


def test_laplace_precision_is_the_hessian_of_the_summed_cross_entropy():
    """For a linear head under softmax cross-entropy the Gauss–Newton matrix is the exact Hessian:
    compare with torch.autograd.functional.hessian of the loss in the head's parameters."""
    model = _head_model(seed=2)
    x = torch.randn(7, 3, 2, 2, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    head = model[3]
    features = model[2](model[1](model[0](x))).double()

    def loss(flat):  # flat in (feature, class) order, then the biases
        weight = flat[:5 * 3].reshape(5, 3).T
        return nn.functional.cross_entropy(features @ weight.T + flat[5 * 3:], labels, reduction="sum")

    flat = torch.cat([head.weight.detach().double().T.reshape(-1), head.bias.detach().double()])
    hessian = torch.autograd.functional.hessian(loss, flat)
    probabilities = torch.softmax(features @ head.weight.detach().double().T + head.bias.detach().double(), 1)
    precision = laplace_posterior(features, probabilities, prior_precision=0.5)
    assert torch.allclose(precision, hessian + 0.5 * torch.eye(len(flat), dtype=torch.float64), atol=1e-10)
    assert torch.allclose(laplace_posterior(features, probabilities, 0.5, scale=3.0),
                          3 * hessian + 0.5 * torch.eye(len(flat), dtype=torch.float64), atol=1e-10)


def test_laplace_samples_have_the_posterior_covariance():
    """The head weights of many variants: their mean is the trained head's and their covariance the
    inverse precision (2 000 draws: about 3 % relative error on each variance)."""
    model = _head_model(seed=4)
    images = torch.randn(40, 3, 2, 2, generator=torch.Generator().manual_seed(5))
    settings = ProxySettings(prior_precision=2.0)
    variants = laplace_variants(model, images, 2000, settings, seed=1)
    draws = torch.stack([torch.cat([v[3].weight.T.reshape(-1), v[3].bias]) for v in variants]).double()
    head = model[3]
    mean = torch.cat([head.weight.T.reshape(-1), head.bias]).double()
    features = model[2](model[1](model[0](images))).double()
    probabilities = torch.softmax(model(images).double(), 1)
    covariance = torch.linalg.inv(laplace_posterior(features, probabilities, 2.0))
    assert torch.allclose(draws.mean(0), mean, atol=float(4 * covariance.diagonal().sqrt().max() / 2000 ** 0.5))
    empirical = torch.cov(draws.T)
    assert torch.allclose(empirical.diagonal(), covariance.diagonal(), rtol=0.15)
    assert all(torch.equal(v[1].weight, model[1].weight) for v in variants[:3])  # the body is shared


def test_the_laplace_subset_is_a_seeded_draw_without_replacement():
    subset = laplace_subset(100, 30, seed=3)
    assert len(subset) == 30 and len(set(subset.tolist())) == 30
    assert torch.equal(subset, subset.sort().values) and 0 <= int(subset.min()) and int(subset.max()) < 100
    assert torch.equal(subset, laplace_subset(100, 30, seed=3))
    assert not torch.equal(subset, laplace_subset(100, 30, seed=4))
    assert int(subset.max()) >= 30  # not the first 30
    assert torch.equal(laplace_subset(20, 30), torch.arange(20))
    # over many seeds every index is drawn about equally often (30 % each)
    counts = torch.zeros(100)
    for seed in range(400):
        counts[laplace_subset(100, 30, seed=seed)] += 1
    assert float((counts / 400 - 0.3).abs().max()) < 0.1


def test_laplace_variants_fit_the_curvature_on_the_drawn_subset_scaled_to_all_images():
    model = _head_model(seed=6)
    images = torch.randn(40, 3, 2, 2, generator=torch.Generator().manual_seed(7))
    settings = ProxySettings(laplace_images=10, prior_precision=2.0)
    drawn = laplace_variants(model, images, 3, settings, seed=2)
    subset = images[laplace_subset(40, 10, seed=2)]
    by_hand = laplace_variants(model, subset, 3, ProxySettings(laplace_images=10, prior_precision=2.0), n_train=40,
                               seed=2)
    first = laplace_variants(model, images[:10], 3, ProxySettings(laplace_images=10, prior_precision=2.0),
                             n_train=40, seed=2)
    for a, b, c in zip(drawn, by_hand, first):
        assert torch.equal(a[3].weight, b[3].weight) and torch.equal(a[3].bias, b[3].bias)
        assert not torch.equal(a[3].weight, c[3].weight)


def test_a_swag_sample_has_half_the_diagonal_plus_low_rank_covariance():
    """2 000 draws of :meth:`SwagMoments.sample` against ½ (Σ_diag + D Dᵀ/(R − 1)) computed by
    NumPy from the same moments (Maddox et al. 2019, eq. for the SWAG covariance)."""
    rng = np.random.default_rng(0)
    iterates = rng.normal(0, 1, (6, 4)) * np.array([1.0, 0.5, 2.0, 0.1]) + np.array([1.0, -2.0, 0.5, 3.0])
    running = np.cumsum(iterates, 0) / np.arange(1, 7)[:, None]
    deviations = (iterates - running).T  # [P, R]: each iterate minus the running mean when taken
    moments = SwagMoments(torch.tensor(iterates.mean(0)), torch.tensor((iterates ** 2).mean(0)),
                          torch.tensor(deviations))
    diagonal = iterates.var(0)
    expected = 0.5 * (np.diag(diagonal) + deviations @ deviations.T / 5)
    generator = torch.Generator().manual_seed(1)
    draws = torch.stack([moments.sample(generator) for _ in range(4000)]).numpy()
    assert np.allclose(moments.diagonal.numpy(), diagonal)
    assert np.allclose(draws.mean(0), iterates.mean(0), atol=4 * np.sqrt(expected.diagonal().max() / 4000))
    assert np.allclose(np.cov(draws.T), expected, atol=0.12 * expected.diagonal().max())
    # one draw exactly: z₁ [P] then z₂ [R] from the same generator, by the formula
    replay = torch.Generator().manual_seed(5)
    z1 = torch.randn(4, generator=replay, dtype=torch.float64).numpy()
    z2 = torch.randn(6, generator=replay, dtype=torch.float64).numpy()
    by_hand = iterates.mean(0) + np.sqrt(diagonal) * z1 / np.sqrt(2) + deviations @ z2 / np.sqrt(2 * 5)
    assert np.allclose(moments.sample(torch.Generator().manual_seed(5)).numpy(), by_hand, atol=1e-12)


def test_swag_moments_are_the_mean_and_second_moment_of_the_snapshots_taken():
    model = _head_model(seed=8)
    images = torch.randn(64, 3, 2, 2, generator=torch.Generator().manual_seed(9))
    labels = torch.randint(3, (64,), generator=torch.Generator().manual_seed(10))
    config = TrainConfig(batch_size=8, epochs=1, flip=False)
    settings = ProxySettings(swag_fraction=1.0, swag_snapshots=4)  # 8 steps: snapshots after steps 2, 4, 6, 8
    moments = swag_moments(model, images, labels, settings, config, seed=3)
    # the same run by hand: the fine-tuning's 8 steps, parameters recorded after each
    recorded = []
    copy_ = __import__("copy").deepcopy(model)
    torch.manual_seed(derive(3, "swag-global"))
    from stablesal.models.proxies import _train_steps
    _train_steps(copy_, images, labels, torch.arange(64), 8, settings, config,
                 torch.Generator().manual_seed(derive(3, "swag")), "cpu",
                 lambda step: recorded.append(torch.nn.utils.parameters_to_vector(copy_.parameters()).detach().double()))
    snapshots = torch.stack([recorded[i] for i in (1, 3, 5, 7)]).numpy()
    assert np.allclose(moments.mean.numpy(), snapshots.mean(0))
    assert np.allclose(moments.sq_mean.numpy(), (snapshots ** 2).mean(0))
    running = np.cumsum(snapshots, 0) / np.arange(1, 5)[:, None]
    assert np.allclose(moments.deviations.numpy(), (snapshots - running).T, atol=1e-6)  # stored in float32
    assert not np.allclose(snapshots[0], snapshots[-1])  # the iterates moved


def test_batch_norm_is_recomputed_as_the_plain_mean_and_variance_of_the_given_images():
    torch.manual_seed(11)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 16, 3)).eval()
    images = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(12))
    model.train()
    with torch.no_grad():  # stale statistics from other data, as a trained model carries
        model(5 + 3 * torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(13)))
    model.eval()
    recompute_batch_norm(model, images, batch_size=8)
    with torch.no_grad():
        activations = model[0](images)  # [N, 2, 4, 4]: what the batch-norm layer normalises
    norm = model[1]
    assert torch.allclose(norm.running_mean, activations.mean((0, 2, 3)), atol=1e-6)
    # each batch's unbiased variance, averaged (the batches of 8 are equal): momentum None's mean
    per_batch = torch.stack([activations[i:i + 8].transpose(0, 1).reshape(2, -1).var(1) for i in range(0, 40, 8)])
    assert torch.allclose(norm.running_var, per_batch.mean(0), atol=1e-6)
    assert norm.momentum == 0.1 and not model.training
    plain = _head_model()
    before = _parameters(plain)
    assert recompute_batch_norm(plain, images.reshape(40, 16)[:, :12].reshape(40, 3, 2, 2)) is plain
    assert torch.equal(_parameters(plain), before)


def test_swag_variants_are_seeded_frozen_distinct_and_centred_on_the_iterates(tiny_shapes, tiny_config):
    trained = train_one(tiny_shapes, seed_plan(1, "seed", 0, 240)[0], tiny_config, progress=False).model
    images, labels = tiny_shapes.train_images, tiny_shapes.train_labels
    settings = ProxySettings(swag_fraction=0.5, swag_snapshots=4, bn_images=64)
    variants = make_variants("swag", trained, 3, images=images, labels=labels, settings=settings, config=tiny_config,
                             seed=0)
    again = swag_variants(trained, images, labels, 1, settings, tiny_config, seed=0)[0]
    assert torch.equal(_parameters(variants[0]), _parameters(again))
    assert not torch.equal(_parameters(variants[0]), _parameters(variants[1]))
    assert all(not v.training and not any(p.requires_grad for p in v.parameters()) for v in variants)
    moments = swag_moments(trained, images, labels, settings, tiny_config, seed=0)
    spread = (moments.diagonal + moments.deviations.square().sum(1) / 3).sqrt() / math.sqrt(2)
    # each sample within 6 of its own standard deviations of the SWAG mean, coordinate by coordinate
    for variant in variants:
        z = (_parameters(variant).double() - moments.mean) / spread.clamp_min(1e-12)
        assert float(z.abs().max()) < 6
    # each variant's batch-norm statistics are those of its own weights on the drawn bn_images
    from stablesal.models.proxies import _subset
    norms = [m for m in variants[0].modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms, "the tiny model has batch norm"
    reference = __import__("copy").deepcopy(variants[0])
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    recompute_batch_norm(reference, images[_subset(len(images), 64, 0, "swag-bn")])
    for ours, theirs in zip(norms, [m for m in reference.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]):
        assert torch.allclose(ours.running_mean, theirs.running_mean, atol=1e-6)
        assert torch.allclose(ours.running_var, theirs.running_var, atol=1e-6)
    trained_norm = [m for m in trained.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)][0]
    assert not torch.allclose(norms[0].running_mean, trained_norm.running_mean)
    with pytest.raises(ValueError, match="needs the training images and labels"):
        make_variants("swag", trained, 2, images=images)


def test_proxy_cost_by_hand():
    settings = ProxySettings(finetune_fraction=0.25, spawn_epoch=2, laplace_images=300)
    assert proxy_cost("finetune", 8, settings, epochs=8, n_train=1000) == pytest.approx(0.25)
    assert proxy_cost("spawn", 4, settings, epochs=8, n_train=1000) == pytest.approx((2 + 4 * 6) / 8)
    assert proxy_cost("laplace", 8, settings, epochs=8, n_train=1000) == pytest.approx(300 / 3 / 8000)
    assert proxy_cost("dropout", 8, settings, epochs=8, n_train=1000) == 0.0
    swag = ProxySettings(swag_fraction=0.5, bn_images=300)
    assert proxy_cost("swag", 8, swag, epochs=8, n_train=1000) == pytest.approx((0.5 + 8 * 300 / 3 / 1000) / 8)
    assert proxy_cost("swag", 8, ProxySettings(swag_fraction=0.5, bn_images=5000), epochs=8,
                      n_train=1000) == pytest.approx((0.5 + 8 / 3) / 8)
    with pytest.raises(ValueError, match="unknown proxy 'ensemble'"):
        proxy_cost("ensemble", 8, settings, epochs=8, n_train=1000)


def test_make_variants_refuses_bad_input_in_one_line():
    model = _head_model()
    with pytest.raises(ValueError, match=r"proxy must be one of \['finetune'"):
        make_variants("ensemble", model, 4)
    with pytest.raises(ValueError, match="k must be an integer ≥ 2"):
        make_variants("laplace", model, 1, images=torch.rand(4, 3, 2, 2))
    with pytest.raises(ValueError, match="proxy 'finetune' needs the training images and labels"):
        make_variants("finetune", model, 4)
    with pytest.raises(ValueError, match="a checkpoint alone cannot spawn"):
        make_variants("spawn", model, 4)
    with pytest.raises(ValueError, match="finetune_fraction"):
        ProxySettings(finetune_fraction=0)
