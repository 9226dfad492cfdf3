"""Tests of :mod:`stablesal.pipeline.config`."""

import pytest

from stablesal.pipeline.config import BUILT_IN_COPIES, StudyConfig, config_from_dict, load_config


def test_default_file_matches_built_in_defaults():
    """experiments/default.toml is the defaults, plus the copies into the repository that only the
    built-in run makes (the section's defaults copy nothing)."""
    expected = StudyConfig()
    assert (expected.report.copy_figures_to, expected.report.copy_results_to) == ("", "")
    for key, value in BUILT_IN_COPIES.items():
        setattr(expected.report, key, value)
    assert load_config("experiments/default.toml") == expected


def test_unknown_keys_and_types(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'epoch' in \\[models\\]"):
        config_from_dict({"models": {"epoch": 3}})
    with pytest.raises(ValueError, match="unknown configuration section"):
        config_from_dict({"modles": {}})
    with pytest.raises(TypeError, match="\\[models\\] k must be of type int"):
        config_from_dict({"models": {"k": "four"}})
    with pytest.raises(TypeError, match="k must be of type int"):
        config_from_dict({"models": {"k": True}})
    assert config_from_dict({"models": {"lr": 1}}).models.lr == 1.0
    bad = tmp_path / "bad.toml"
    bad.write_text("[models\nk=")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_experiment_files_parse():
    from pathlib import Path

    for path in Path("experiments").glob("*.toml"):
        load_config(path)


def test_design_sizes_and_draws_are_checked():
    with pytest.raises(ValueError, match="control_k must be 0 .off. or at least 3"):
        config_from_dict({"models": {"control_k": 2}})
    with pytest.raises(ValueError, match="untrained_k must be 0"):
        config_from_dict({"models": {"untrained_k": 1}})
    with pytest.raises(ValueError, match=r"\[gradient\] draws must be"):
        config_from_dict({"gradient": {"draws": "shared"}})
    assert config_from_dict({"perturbation": {"draws": "common"}}).perturbation.draws == "common"
    with pytest.raises(ValueError, match=r"\[gradient\] rng must be one of 'auto', 'generator', 'counter', got 'philox'"):
        config_from_dict({"gradient": {"rng": "philox"}})
    assert config_from_dict({"gradient": {"rng": "counter"}}).gradient.rng == "counter"


@pytest.mark.parametrize("raw, message", [
    ({"gradient": {"deletion_substrate": "blurr"}}, r"\[gradient\] deletion_substrate .*did you mean 'blur'"),
    ({"gradient": {"insertion_substrate": "mea"}}, r"\[gradient\] insertion_substrate .*did you mean 'mean'"),
    ({"factors": {"srg_fill": "nois"}}, r"\[factors\] srg_fill .*did you mean 'noise'"),
    ({"inpainting": {"gradient_methods": ["salency"]}}, r"\[inpainting\] gradient_methods.*did you mean 'saliency'"),
])
def test_the_keys_a_section_takes_from_its_settings_are_checked_by_name(raw, message):
    from stablesal.pipeline.config import config_from_dict

    with pytest.raises(ValueError, match=message):
        config_from_dict(raw)
    key = next(iter(next(iter(raw.values()))))
    good = {"deletion_substrate": "blur", "insertion_substrate": "0.5", "srg_fill": "noise",
            "gradient_methods": ["saliency"]}[key]
    section = next(iter(raw))
    assert getattr(getattr(config_from_dict({section: {key: good}}), section), key) == good
