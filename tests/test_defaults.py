"""One source of defaults: the settings dataclasses of the Python API, the TOML sections (and
experiments/default.toml, which lists every key) and the command line agree on every default
they share."""

import dataclasses
import tomllib
from pathlib import Path

import pytest

from stablesal.cli import build_parser, resolve_config
from stablesal.pipeline.config import StudyConfig, config_keys, settings_of
from stablesal.core.settings import ConsensusSettings, FactorSettings, InpainterConfig, RemovalSettings, StudySettings, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
CONFIG = StudyConfig()

# (API object, API field, config section, config key)
SHARED = [
    *[(StudySettings(), key, "gradient", key)
      for key in ("methods", "groupings", "n_segments", "n_samples", "n_steps", "noise_level", "seed", "draws", "rng")],
    (StudySettings(), "seed", "perturbation", "seed"), (StudySettings(), "draws", "perturbation", "draws"),
    *[(FactorSettings(), key, "factors", key)
      for key in ("segmentations", "samplers", "sample_sizes", "calculators", "maps", "n_segments", "n_images",
                  "srg_steps", "seed")],
    *[(InpainterConfig(), key, "inpainting", key) for key in ("conditional", "steps", "width")],
    *[(RemovalSettings(), key, "inpainting", key)
      for key in ("n_images", "lime_samples", "mp_iterations", "robustness", "seed")],
    *[(ConsensusSettings(), f.name, "consensus", f.name) for f in dataclasses.fields(ConsensusSettings)],
]


@pytest.mark.parametrize("api, field, section, key", SHARED, ids=[f"{s}.{k}" for _, _, s, k in SHARED])
def test_api_and_toml_defaults_agree(api, field, section, key):
    assert getattr(api, field) == getattr(getattr(CONFIG, section), key)


def test_models_section_is_the_training_settings():
    """[models] holds TrainConfig's fields themselves (no copies to keep equal): its training is
    TrainConfig's defaults, and every TrainConfig field is a [models] key."""
    assert isinstance(CONFIG.models, TrainConfig) and CONFIG.models.training() == TrainConfig()
    assert set(TrainConfig.__dataclass_fields__) <= set(config_keys(CONFIG.models))


def test_factor_replacement_agrees_as_a_number():
    assert float(CONFIG.factors.replacement) == FactorSettings().replacement


def test_default_toml_lists_every_key_with_its_default():
    """Every key with its default, except the copies into the repository that only the built-in run
    makes (stablesal.pipeline.config.BUILT_IN_COPIES; the section's defaults copy nothing)."""
    from stablesal.pipeline.config import BUILT_IN_COPIES

    raw = tomllib.loads((ROOT / "experiments" / "default.toml").read_text())
    for section in dataclasses.fields(CONFIG):
        values = raw.get(section.name, {})
        assert set(values) <= set(config_keys(getattr(CONFIG, section.name))), section.name
        for field in config_keys(getattr(CONFIG, section.name)).values():
            assert field.name in values, f"[{section.name}] {field.name} missing from default.toml"
            expected = getattr(getattr(CONFIG, section.name), field.name)
            if section.name == "report" and field.name in BUILT_IN_COPIES:
                expected = BUILT_IN_COPIES[field.name]
            assert values[field.name] == expected, f"[{section.name}] {field.name}"


@pytest.mark.parametrize("argv, flag, section, key", [
    (["train-seeds"], "models", "models", "k"), (["train-seeds"], "vary", "models", "vary"),
    (["train-seeds"], "arch", "models", "arch"), (["train-seeds"], "epochs", "models", "epochs"),
    (["train-seeds"], "batch_size", "models", "batch_size"), (["train-seeds"], "lr", "models", "lr"),
    (["train-seeds"], "base_seed", "models", "base_seed"), (["train-seeds"], "device", "models", "device"),
    (["explain"], "n_segments", "gradient", "n_segments"), (["explain"], "n_samples", "gradient", "n_samples"),
    (["explain"], "n_steps", "gradient", "n_steps"), (["explain"], "noise_level", "gradient", "noise_level"),
    (["explain"], "rng", "gradient", "rng"),
    (["stability"], "models", "models", "k"), (["stability"], "vary", "models", "vary"),
    (["stability"], "control_k", "models", "control_k"), (["stability"], "untrained_k", "models", "untrained_k"),
    (["stability"], "draws", "gradient", "draws"), (["stability"], "rng", "gradient", "rng"),
])
def test_cli_defaults_agree_with_the_toml(argv, flag, section, key):
    args = build_parser().parse_args(argv)
    value = getattr(args, flag)
    if value is None:  # a flag that sets a configuration key has no default of its own: the key's applies
        value = getattr(getattr(resolve_config(args), section), key)
    assert value == getattr(getattr(CONFIG, section), key)


@pytest.mark.parametrize("section, settings_class", [
    ("gradient", StudySettings), ("factors", FactorSettings), ("inpainting", InpainterConfig),
    ("inpainting", RemovalSettings), ("consensus", ConsensusSettings)])
def test_a_section_is_its_settings_dataclass(section, settings_class):
    """The TOML section is the API's settings dataclass plus keys of its own: every settings field
    is a key with the API's default (but those the pipeline sets), and nothing is copied by hand."""
    values = getattr(CONFIG, section)
    assert isinstance(values, settings_class)
    own = {f.name for f in dataclasses.fields(settings_class) if f.metadata.get("config", True)}
    assert own <= set(config_keys(values))
    assert settings_of(values, settings_class) == settings_class()


def test_a_settings_field_the_pipeline_sets_is_not_a_key():
    from stablesal.pipeline.config import config_from_dict

    with pytest.raises(ValueError, match="unknown key 'retest_sets' in \\[gradient\\]"):
        config_from_dict({"gradient": {"retest_sets": ["main"]}})
    assert "retest_sets" not in CONFIG.to_dict()["gradient"]


def test_a_key_of_two_types_takes_either():
    from stablesal.pipeline.config import config_from_dict

    assert config_from_dict({"factors": {"replacement": 0.5}}).factors.replacement == 0.5
    assert config_from_dict({"factors": {"replacement": "blur"}}).factors.replacement == "blur"
    with pytest.raises(TypeError, match=r"\[factors\] replacement must be of type str or float, got list"):
        config_from_dict({"factors": {"replacement": [1]}})
    with pytest.raises(TypeError, match=r"\[gradient\] n_samples must be of type int, got bool"):
        config_from_dict({"gradient": {"n_samples": True}})
