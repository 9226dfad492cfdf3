"""The null families as model sets (stablesal.models.model_sets): random-label networks trained by
the main recipe on permuted labels (stablesal's loop and the user's function), BN-calibrated
untrained networks, and the reasons a set is empty."""

import dataclasses

import pytest
import torch
from torch import nn

from stablesal.models.training import random_label_plan, seed_plan, train_one, training_labels
from stablesal.pipeline.config import config_from_dict
from stablesal.models.nulls import BN_CALIBRATION_IMAGES, calibrate_batch_norm, has_batch_norm, train_random_label
from stablesal.models.model_sets import bn_calibrated_models, random_label_runs, untrained_models

RECORDED: list[dict] = []


def record_training(train_images, train_labels, seed, out_path):
    """A user's training function that keeps what it was given and writes a small model."""
    RECORDED.append({"labels": train_labels.clone(), "seed": seed, "n": len(train_images)})
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    torch.save(model.state_dict(), out_path)


def small_factory():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))


def test_training_labels_are_a_seeded_permutation_that_keeps_every_class_count():
    labels = torch.arange(4).repeat(25)
    assert training_labels({"seed": 0}, labels) is labels  # a main model trains on its labels
    permuted = training_labels({"label_seed": 7}, labels)
    assert torch.equal(torch.bincount(permuted), torch.bincount(labels))
    assert (permuted != labels).float().mean() > 0.5  # most images get another class
    assert torch.equal(permuted, training_labels({"label_seed": 7}, labels))
    assert not torch.equal(permuted, training_labels({"label_seed": 8}, labels))


def test_random_label_plan_repeats_the_main_recipe_with_its_own_label_seeds():
    main = seed_plan(4, "both", 0, 1000)
    plan = random_label_plan(main, base_seed=0, first_index=7)
    assert [run["index"] for run in plan] == [7, 8, 9, 10]
    for run, original in zip(plan, main):
        assert {k: run[k] for k in ("seed", "split", "splits")} == {k: original[k] for k in ("seed", "split", "splits")}
    assert len({run["label_seed"] for run in plan}) == 4


def test_a_random_label_run_trains_on_permuted_labels_in_its_own_checkpoint(tiny_shapes, tiny_config, tmp_path):
    run = seed_plan(2, "seed", 0, len(tiny_shapes.train_labels))[0]
    main = train_one(tiny_shapes, run, tiny_config, tmp_path, progress=False)
    shuffled = train_one(tiny_shapes, random_label_plan([run], 0, 5)[0], tiny_config, tmp_path, progress=False)
    assert main.meta["config_hash"] != shuffled.meta["config_hash"]
    assert shuffled.meta["label_seed"] is not None and "label_seed" not in main.meta
    assert len(list(tmp_path.glob("model-*.pt"))) == 2
    # same initialisation, same data order: only the labels differ, so the weights do
    differs = [not torch.equal(a, b) for a, b in zip(main.model.state_dict().values(),
                                                      shuffled.model.state_dict().values())]
    assert any(differs)


def test_the_users_training_function_gets_the_permuted_labels(tiny_shapes, tmp_path):
    RECORDED.clear()
    config = config_from_dict({"models": {"k": 3, "vary": "seed", "random_label_k": 3, "control_k": 0,
                                          "train": f"{__name__}:record_training",
                                          "factory": f"{__name__}:small_factory"}})
    runs, identity = random_label_runs(config.models, tiny_shapes, tmp_path, progress=False)
    assert len(runs) == 3 and len(RECORDED) == 3 and len(identity["label_seeds"]) == 3
    plan = random_label_plan(seed_plan(3, "seed", 0, len(tiny_shapes.train_labels)), 0, 3)
    for given, run in zip(RECORDED, plan):
        assert given["seed"] == run["seed"]
        assert torch.equal(given["labels"], training_labels(run, tiny_shapes.train_labels))
        assert not torch.equal(given["labels"], tiny_shapes.train_labels)


def test_checkpoints_alone_have_no_random_label_set_and_say_why(tiny_shapes, tmp_path):
    path = tmp_path / "m.pt"
    torch.save(small_factory().state_dict(), path)
    config = config_from_dict({"models": {"checkpoints": [str(path)], "factory": f"{__name__}:small_factory",
                                          "random_label_k": 3}})
    runs, identity = random_label_runs(config.models, tiny_shapes, tmp_path, progress=False)
    assert runs == [] and "training recipe" in identity["unavailable"]
    off = dataclasses.replace(config, models=dataclasses.replace(config.models, random_label_k=0))
    assert random_label_runs(off.models, tiny_shapes, tmp_path, progress=False) == ([], {})


def test_calibrated_batch_norm_holds_the_exact_statistics_of_the_images_and_nothing_else_moves():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(),
                          nn.Linear(5 * 8 * 8, 2)).eval()
    images = torch.rand(40, 3, 8, 8) * 2 + 1
    calibrated = calibrate_batch_norm(model, images, batch_size=64)  # one batch: the statistics of all 40
    features = torch.nn.functional.conv2d(images, model[0].weight, model[0].bias, padding=1)  # by hand
    torch.testing.assert_close(calibrated[1].running_mean, features.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(calibrated[1].running_var, features.var((0, 2, 3), unbiased=True), rtol=1e-4,
                               atol=1e-5)
    assert torch.equal(model[1].running_mean, torch.zeros(5))  # the original is untouched
    for (name, a), b in zip(model.named_parameters(), calibrated.parameters()):
        assert torch.equal(a, b), name
    assert not calibrated.training and not any(p.requires_grad for p in calibrated.parameters())
    assert calibrated[1].momentum == model[1].momentum


def test_calibration_keeps_dropout_off():
    model = nn.Sequential(nn.Dropout(0.9), nn.BatchNorm2d(3)).eval()
    images = torch.rand(20, 3, 4, 4) + 1
    calibrated = calibrate_batch_norm(model, images, batch_size=64)
    torch.testing.assert_close(calibrated[1].running_mean, images.mean((0, 2, 3)))


def test_train_random_label_is_the_main_plan_on_permuted_labels(tiny_shapes, tiny_config, tmp_path):
    runs = train_random_label(tiny_shapes, k=3, vary="seed", config=tiny_config, out_dir=tmp_path, first_index=50,
                              progress=False)
    assert [run.index for run in runs] == [50, 51, 52] and [run.meta["seed"] for run in runs] == [0, 1, 2]
    assert len({run.meta["label_seed"] for run in runs}) == 3


def test_calibrated_batch_norm_over_batches_is_the_mean_of_the_batch_statistics():
    torch.manual_seed(1)
    model = nn.Sequential(nn.BatchNorm2d(3)).eval()
    images = torch.rand(30, 3, 4, 4)
    calibrated = calibrate_batch_norm(model, images, batch_size=10)
    expected = torch.stack([chunk.mean((0, 2, 3)) for chunk in images.split(10)]).mean(0)
    torch.testing.assert_close(calibrated[0].running_mean, expected)


def test_bn_calibrated_set_is_the_untrained_networks_recalibrated(tiny_shapes):
    config = config_from_dict({"data": {"size": 16}, "models": {"bn_calibrated_k": 3, "untrained_k": 3}})
    calibrated, identity = bn_calibrated_models(config.models, tiny_shapes)
    untrained, _ = untrained_models(config.models, tiny_shapes)
    assert len(calibrated) == 3 and identity["calibration_images"] == min(BN_CALIBRATION_IMAGES,
                                                                         len(tiny_shapes.train_labels) // 4)
    for a, b in zip(calibrated, untrained):
        assert has_batch_norm(a)
        same_weights = all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        assert same_weights
        moved = [m.running_mean.abs().sum() for m in a.modules() if isinstance(m, nn.BatchNorm2d)]
        assert all(value > 0 for value in moved)


def test_an_architecture_without_batch_norm_has_no_bn_calibrated_set(tiny_shapes):
    config = config_from_dict({"models": {"bn_calibrated_k": 3, "train": f"{__name__}:record_training",
                                          "factory": f"{__name__}:small_factory"}})
    models, identity = bn_calibrated_models(config.models, tiny_shapes)
    assert models == [] and "no batch-norm layer" in identity["unavailable"]
    with pytest.raises(ValueError, match="bn_calibrated_k must be 0"):
        config_from_dict({"models": {"bn_calibrated_k": 2}})
    with pytest.raises(ValueError, match="random_label_k must be 0"):
        config_from_dict({"models": {"random_label_k": 1}})


def test_permuted_labels_make_the_whole_report_a_negative_control(tiny_shapes, tmp_path):
    from stablesal.models.model_sets import train_model_sets
    config = config_from_dict({"models": {"k": 3, "vary": "seed", "control_k": 3, "epochs": 1, "permuted_labels": True,
                                          "random_label_k": 3}})
    runs, control = train_model_sets(config.models, tiny_shapes, tmp_path, progress=False)
    seeds = [run.meta["label_seed"] for run in runs + control]
    assert len(set(seeds)) == 6 and None not in seeds
    null, identity = random_label_runs(config.models, tiny_shapes, tmp_path, progress=False)
    assert not set(seeds) & set(identity["label_seeds"])  # the null never repeats a main model's permutation
    with pytest.raises(ValueError, match="permuted_labels"):
        config_from_dict({"models": {"permuted_labels": True, "train": f"{__name__}:record_training",
                                     "factory": f"{__name__}:small_factory"}})


def test_the_untrained_networks_take_the_architecture_options(tiny_shapes):
    from stablesal.models.architectures import build_model
    from stablesal.pipeline.config import ModelsSection

    built, identity = untrained_models(ModelsSection(untrained_k=3, model_options={"width": 4}), tiny_shapes)
    reference = build_model("small_cnn", tiny_shapes.image_shape[0], tiny_shapes.num_classes, tiny_shapes.mean,
                            tiny_shapes.std, width=4)
    assert [p.shape for p in built[0].parameters()] == [p.shape for p in reference.parameters()]
    assert identity["model_options"] == {"width": 4}  # other options: other networks, other cached units
    assert "model_options" not in untrained_models(ModelsSection(untrained_k=3), tiny_shapes)[1]
