"""Which value a command runs with, for every command that reads a TOML file (--config) and every
configuration key one of its flags sets:

- flag absent, the TOML file sets the key -> the TOML's value;
- flag given (with or without the TOML setting the key) -> the flag's value;
- neither -> the configuration's default (stablesal.pipeline.config, taken from stablesal.core.settings).

The table of (command, flag, section, key) below is checked against the parser itself, and every
flag of such a command must be either in it or listed as not a configuration key, so a new flag
cannot escape these tests. Resolution is tested on ``resolve_config`` (no data, no training); a few
tests check that the commands run with what it resolves.
"""

import json

import pytest

from stablesal.cli import build_parser, config_flags, main, resolve_config, subcommands
from stablesal.pipeline.config import BUILT_IN_COPIES, StudyConfig

DEFAULTS = StudyConfig()

# command -> {argparse dest: (flag, section, key)}
TABLE = {
    "stability": {
        "models": ("-k/--models", "models", "k"), "vary": ("--vary", "models", "vary"),
        "control_k": ("--control-k", "models", "control_k"), "untrained_k": ("--untrained-k", "models", "untrained_k"),
        "random_label_k": ("--random-label-k", "models", "random_label_k"),
        "bn_calibrated_k": ("--bn-calibrated-k", "models", "bn_calibrated_k"),
        "draws": ("--draws", "gradient", "draws"), "rng": ("--rng", "gradient", "rng"),
        "fidelity": ("--fidelity", "gradient", "fidelity"),
        "methods": ("--methods", "gradient", "methods"), "groupings": ("--groupings", "gradient", "groupings"),
        "n_images": ("--n-images", "gradient", "n_images"),
        "name": ("--name", "report", "name"), "runs": ("--runs", "report", "runs_dir"),
    },
    "consensus": {
        "models": ("-k/--models", "models", "k"), "vary": ("--vary", "models", "vary"),
        "untrained_k": ("--untrained-k", "models", "untrained_k"),
        "random_label_k": ("--random-label-k", "models", "random_label_k"),
        "reference": ("--reference", "consensus", "reference"),
        "methods": ("--methods", "consensus", "methods"), "groupings": ("--groupings", "consensus", "groupings"),
        "n_images": ("--n-images", "consensus", "n_images"), "target": ("--target", "consensus", "target"),
        "max_samples": ("--max-samples", "consensus", "max_samples"), "q": ("--q", "consensus", "q"),
        "procedure": ("--procedure", "consensus", "procedure"), "scope": ("--scope", "consensus", "scope"),
        "n_permutations": ("--n-permutations", "consensus", "n_permutations"),
        "n_models": ("--n-models", "consensus", "n_models"),
        "calibration_studies": ("--calibration-studies", "consensus", "calibration_studies"),
        "runs": ("--runs", "report", "runs_dir"),
    },
    "plan": {
        "models": ("-k/--models", "models", "k"), "vary": ("--vary", "models", "vary"),
        "methods": ("--methods", "consensus", "methods"), "groupings": ("--groupings", "consensus", "groupings"),
        "n_images": ("--n-images", "consensus", "n_images"), "target": ("--target", "consensus", "target"),
        "max_samples": ("--max-samples", "consensus", "max_samples"), "runs": ("--runs", "report", "runs_dir"),
    },
    "factor-study": {
        "n_images": ("--n-images", "factors", "n_images"), "name": ("--name", "report", "name"),
        "runs": ("--runs", "report", "runs_dir"), "out": ("--out", "report", "out_dir"),
    },
    "report": {
        "name": ("--name", "report", "name"), "out": ("--out", "report", "out_dir"),
        "runs": ("--runs", "report", "runs_dir"),
    },
    "estimate": {
        "proxy_k": ("--proxy-k", "proxy", "k"), "calibration": ("--calibration", "proxy", "calibration"),
        "name": ("--name", "report", "name"), "runs": ("--runs", "report", "runs_dir"),
    },
    **{command: {
        "dataset": ("--dataset", "data", "dataset"), "data_root": ("--data-root", "data", "root"),
        "n_train": ("--n-train", "data", "n_train"), "n_test": ("--n-test", "data", "n_test"),
        "image_size": ("--image-size", "data", "size"), "checkpoint": ("--checkpoint", "models", "checkpoints"),
        "device": ("--device", "models", "device"), "runs": ("--runs", "report", "runs_dir"),
    } for command in ("explain", "perturb")},
    "train-seeds": {
        "dataset": ("--dataset", "data", "dataset"), "data_root": ("--data-root", "data", "root"),
        "n_train": ("--n-train", "data", "n_train"), "n_test": ("--n-test", "data", "n_test"),
        "image_size": ("--image-size", "data", "size"), "models": ("-k/--models", "models", "k"),
        "arch": ("--arch", "models", "arch"), "epochs": ("--epochs", "models", "epochs"),
        "batch_size": ("--batch-size", "models", "batch_size"), "lr": ("--lr", "models", "lr"),
        "base_seed": ("--base-seed", "models", "base_seed"), "device": ("--device", "models", "device"),
    },
}
# the other flags of those commands: not configuration keys
NOT_CONFIG = {
    "stability": {"help", "config", "set", "out", "workers", "dask", "scheduler", "quiet"},
    "consensus": {"help", "config", "set", "png", "out", "workers", "dask", "scheduler", "quiet"},
    "plan": {"help", "config", "set", "what", "at_models", "quiet"},
    "factor-study": {"help", "config", "set", "workers", "dask", "scheduler", "quiet"},
    "report": {"help", "config", "set", "quick", "workers", "dask", "scheduler", "quiet"},
    "estimate": {"help", "config", "set", "out", "quiet"},
    # explain and perturb read [data] and [models] (and [report] runs_dir) from the file; the
    # explainers' settings are their own flags
    # train-seeds: --vary also takes leave-fold-out, which [models] vary does not; --out is its folder
    "train-seeds": {"help", "config", "set", "vary", "out", "workers", "dask", "scheduler", "quiet"},
    "explain": {"help", "config", "set", "model_index", "method", "grouping", "n_segments", "n_samples", "n_steps",
                "noise_level", "rng", "suppression_mode", "suppression_unit", "images", "seed", "out", "quiet"},
    "perturb": {"help", "config", "set", "model_index", "preset", "segmenter", "smoothing", "sampler", "replacement",
                "calculator", "map", "n_samples", "n_segments", "images", "seed", "out", "quiet"},
}
# commands that read no TOML file: their flags' defaults are the only ones (tests/test_defaults.py)
WITHOUT_CONFIG = {"render", "list"}

# Documented exceptions to "neither -> the configuration's default":
# the run's name (the folder under --runs) of stability, consensus and plan is the command's name
# when neither --name nor the TOML's [report] name gives one ([report] name's default is the report's);
RUN_NAME = {"stability": "stability", "consensus": "consensus", "plan": "plan", "estimate": "estimate"}
# consensus and plan train no control models, plan no untrained networks, and factor-study explains
# one model of a one-seed plan, whatever the TOML says.
_NO_NULLS = {("models", "untrained_k"): 0, ("models", "random_label_k"): 0, ("models", "bn_calibrated_k"): 0}
FIXED = {"consensus": {("models", "control_k"): 0},
         "plan": {("models", "control_k"): 0},
         "factor-study": {("models", "k"): 1, ("models", "vary"): "seed", ("models", "control_k"): 0, **_NO_NULLS}}

# (section, key) -> two valid values: A differs from the default, B from A
VALUES = {
    ("models", "k"): (5, 6), ("models", "vary"): ("split", "seed"), ("models", "control_k"): (0, 5),
    ("models", "untrained_k"): (3, 0), ("models", "random_label_k"): (3, 0), ("models", "bn_calibrated_k"): (3, 0),
    ("consensus", "reference"): ("untrained", "bn_calibrated"),
    ("gradient", "draws"): ("common", "independent"), ("gradient", "rng"): ("generator", "counter"),
    ("gradient", "fidelity"): ("on", "off"),
    ("gradient", "methods"): (["saliency"], ["smoothgrad", "vargrad"]),
    ("gradient", "groupings"): (["grid"], ["pixel", "slic"]), ("gradient", "n_images"): (7, 9),
    ("consensus", "methods"): (["smoothgrad"], ["saliency", "vargrad"]),
    ("consensus", "groupings"): (["grid"], ["pixel", "slic"]), ("consensus", "n_images"): (7, 9),
    ("consensus", "target"): (0.8, 0.95), ("consensus", "max_samples"): (64, 128), ("consensus", "q"): (0.1, 0.01),
    ("consensus", "procedure"): ("by", "bh"), ("consensus", "scope"): ("set", "image"),
    ("consensus", "n_permutations"): (99, 999), ("consensus", "n_models"): (3, 5),
    ("consensus", "calibration_studies"): (5, 7), ("factors", "n_images"): (3, 4),
    ("report", "name"): ("from-toml", "from-flag"), ("report", "runs_dir"): ("toml-runs", "flag-runs"),
    ("report", "out_dir"): ("toml-reports", "flag-reports"),
    ("data", "dataset"): ("lfw", "shapes"), ("data", "root"): ("toml-root", "flag-root"),
    ("data", "n_train"): (300, 400), ("data", "n_test"): (50, 60), ("data", "size"): (24, 48),
    # any existing files: reading the configuration checks only that the patterns match a file
    ("models", "checkpoints"): (["pyproject.toml"], ["Makefile"]), ("models", "device"): ("cuda", "cpu"),
    ("models", "arch"): ("resnet20", "small_cnn"), ("models", "epochs"): (3, 5), ("models", "batch_size"): (32, 64),
    ("models", "lr"): (0.01, 0.02), ("models", "base_seed"): (7, 9),
    ("proxy", "k"): (4, 6), ("proxy", "calibration"): ("toml-calibration.json", "flag-calibration.json"),
}

ROWS = [(command, dest, *entry) for command, entries in TABLE.items() for dest, entry in entries.items()]
IDS = [f"{command} {flag}" for command, _, flag, _, _ in ROWS]


def toml_value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def write_toml(path, values: dict) -> str:
    """``values``: {(section, key): value} as a TOML file."""
    sections: dict = {}
    for (section, key), value in values.items():
        sections.setdefault(section, []).append(f"{key} = {toml_value(value)}")
    path.write_text("".join(f"[{section}]\n" + "\n".join(lines) + "\n" for section, lines in sections.items()))
    return str(path)


def tokens(flag: str, value) -> list[str]:
    return [flag.split("/")[-1], *(map(str, value) if isinstance(value, list) else [str(value)])]


def resolve(command: str, *argv: str, toml: str | None = None) -> StudyConfig:
    return resolve_config(build_parser().parse_args([command, *(["--config", toml] if toml else []), *argv]))


def value(config: StudyConfig, section: str, key: str):
    return getattr(getattr(config, section), key)


def default(command: str, section: str, key: str):
    if (section, key) == ("report", "name") and command in RUN_NAME:
        return RUN_NAME[command]
    return FIXED.get(command, {}).get((section, key), value(DEFAULTS, section, key))


# --- the table is the parser's --------------------------------------------------------------------


def test_the_table_is_the_parsers():
    parsers = subcommands(build_parser())
    found = {command: {dest: tuple(flag) for dest, flag in config_flags(parser).items()}
             for command, parser in parsers.items() if config_flags(parser)}
    assert found == TABLE


def test_every_flag_of_a_command_with_a_toml_file_is_classified():
    """A new flag on a command that reads --config must join TABLE (and be tested below) or
    NOT_CONFIG; a new command must be classified too."""
    parsers = subcommands(build_parser())
    assert set(parsers) == set(TABLE) | WITHOUT_CONFIG
    for command, parser in parsers.items():
        dests = {action.dest for action in parser._actions}
        if command in WITHOUT_CONFIG:
            assert "config" not in dests and not config_flags(parser), command
        else:
            assert dests == set(TABLE[command]) | NOT_CONFIG[command], command


@pytest.mark.parametrize("command", sorted(TABLE))
def test_no_flag_that_sets_a_key_has_a_parser_default(command):
    args = build_parser().parse_args([command])
    assert {dest: getattr(args, dest) for dest in TABLE[command]} == dict.fromkeys(TABLE[command])


def test_the_test_values_tell_the_three_sources_apart():
    for (section, key), (a, b) in VALUES.items():
        assert a != value(DEFAULTS, section, key) and a != b, (section, key)
    assert {(s, k) for _, _, _, s, k in ROWS} <= set(VALUES)


# --- every command x every key it can override ------------------------------------------------------


@pytest.mark.parametrize("command, dest, flag, section, key", ROWS, ids=IDS)
def test_flag_absent_gives_the_toml_value(command, dest, flag, section, key, tmp_path):
    a, _ = VALUES[section, key]
    config = resolve(command, toml=write_toml(tmp_path / "c.toml", {(section, key): a}))
    assert value(config, section, key) == a


@pytest.mark.parametrize("command, dest, flag, section, key", ROWS, ids=IDS)
def test_flag_given_overrides_the_toml(command, dest, flag, section, key, tmp_path):
    a, b = VALUES[section, key]
    config = resolve(command, *tokens(flag, b), toml=write_toml(tmp_path / "c.toml", {(section, key): a}))
    assert value(config, section, key) == b


@pytest.mark.parametrize("command, dest, flag, section, key", ROWS, ids=IDS)
def test_flag_given_without_a_toml_file(command, dest, flag, section, key):
    a, _ = VALUES[section, key]
    assert value(resolve(command, *tokens(flag, a)), section, key) == a


@pytest.mark.parametrize("command, dest, flag, section, key", ROWS, ids=IDS)
def test_neither_gives_the_default(command, dest, flag, section, key, tmp_path):
    expected = default(command, section, key)
    assert value(resolve(command), section, key) == expected
    # a TOML file that sets other keys only changes nothing here either
    other = write_toml(tmp_path / "c.toml", {("data", "seed"): 3, ("gradient", "n_samples"): 5})
    assert value(resolve(command, toml=other), section, key) == expected


@pytest.mark.parametrize("command", sorted(TABLE))
def test_without_flags_the_configuration_is_the_toml_files(command, tmp_path):
    """Nothing but the documented exceptions (FIXED) changes a TOML file that sets every key the
    command has a flag for, and keys it has none for."""
    values = {(section, key): VALUES[section, key][0] for _, section, key in TABLE[command].values()}
    for extra, raw in {("models", "control_k"): 5, ("models", "untrained_k"): 5, ("models", "epochs"): 2,
                       ("gradient", "n_samples"): 5, ("data", "seed"): 3, ("report", "name"): "mine"}.items():
        values.setdefault(extra, raw)
    expected = StudyConfig()
    for (section, key), raw in {**values, **FIXED.get(command, {})}.items():
        setattr(getattr(expected, section), key, raw)
    assert resolve(command, toml=write_toml(tmp_path / "c.toml", values)) == expected


@pytest.mark.parametrize("command", sorted(TABLE))
def test_without_flags_or_file_the_configuration_is_the_default(command):
    expected = StudyConfig()
    if command in RUN_NAME:
        expected.report.name = RUN_NAME[command]
    for (section, key), raw in FIXED.get(command, {}).items():
        setattr(getattr(expected, section), key, raw)
    if command == "report":  # the built-in study as it is (`make report`) refreshes the repository's copies
        for key, raw in BUILT_IN_COPIES.items():
            setattr(expected.report, key, raw)
    assert resolve(command) == expected


def test_only_the_built_in_report_copies_into_the_repository(tmp_path):
    """The section's defaults copy nothing; `stablesal report` with no --config and no --set under
    its default name is the built-in study and refreshes figures/ and experiments/results/, as
    experiments/default.toml asks explicitly; a user's file, --set, --name or --quick copy nothing."""
    none = ("", "")
    copies = lambda config: (config.report.copy_figures_to, config.report.copy_results_to)  # noqa: E731
    assert copies(StudyConfig()) == none
    assert copies(resolve("report")) == tuple(BUILT_IN_COPIES.values()) == ("figures", "experiments/results")
    assert copies(resolve("report", "--out", "elsewhere")) == tuple(BUILT_IN_COPIES.values())
    assert copies(resolve("report", toml="experiments/default.toml")) == tuple(BUILT_IN_COPIES.values())
    user = write_toml(tmp_path / "mine.toml", {("models", "k"): 3})
    for argv, toml in (((), user), (("--set", "models.k=6"), None), (("--name", "mine"), None), (("--quick",), None),
                       (("--quick",), "experiments/default.toml")):
        assert copies(resolve("report", *argv, toml=toml)) == none, (argv, toml)
    # a user who wants the copies sets them
    assert copies(resolve("report", "--set", 'report.copy_figures_to="figs"', toml=user)) == ("figs", "")


def test_the_reported_case_untrained_k_from_the_toml_file(tmp_path):
    """`stablesal stability --config my.toml` with [models] untrained_k = 3 ran 4 untrained networks."""
    config = resolve("stability", toml=write_toml(tmp_path / "my.toml", {("models", "untrained_k"): 3}))
    assert config.models.untrained_k == 3
    assert (config.models.k, config.models.vary, config.models.control_k) == (4, "both", 3)
    assert (config.gradient.draws, config.gradient.rng) == ("independent", "auto")


def test_consensus_uses_the_toml_file_of_the_consensus_experiment():
    config = resolve("consensus", toml="experiments/consensus.toml")
    assert (config.models.k, config.models.vary, config.models.untrained_k) == (19, "seed", 40)
    assert config.models.control_k == 0 and config.report.name == "consensus"


# --- checks on the resolved values -------------------------------------------------------------------


@pytest.mark.parametrize("command, message", [
    ("consensus", "[models] k (-k/--models): a consensus map needs at least 3 retrained models, got 2"),
    ("plan", "[models] k (-k/--models): the planner needs a pilot of at least 3 models, got 2"),
])
def test_model_counts_are_checked_after_the_toml_and_flags(command, message, tmp_path):
    two = write_toml(tmp_path / "two.toml", {("models", "k"): 2})
    with pytest.raises(ValueError) as error:
        resolve(command, toml=two)  # from the file
    assert str(error.value) == message
    with pytest.raises(ValueError) as error:
        resolve(command, "-k", "2")  # from the flag
    assert str(error.value) == message
    assert resolve(command, "-k", "3", toml=two).models.k == 3  # the flag mends the file


def test_a_bad_flag_value_is_named_by_key_and_flag(tmp_path, capsys):
    assert main(["consensus", "--untrained-k", "-1", "--runs", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err
    assert "[models] untrained_k must be 0 (off) or at least 3" in error and "got -1 (given as --untrained-k)" in error
    assert not (tmp_path / "runs").exists()
    # the same value from the file is named by its key only
    bad = write_toml(tmp_path / "bad.toml", {("models", "untrained_k"): 1})
    with pytest.raises(ValueError, match=r"\[models\] untrained_k must be 0 .* got 1$"):
        resolve("stability", toml=bad)


# --- the commands run with the resolved configuration -------------------------------------------------


class Stop(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    """Stop each command where it would first train, keeping what it was given."""
    import stablesal.data.datasets
    import stablesal.models.training
    import stablesal.pipeline.context
    import stablesal.pipeline.run

    seen = {}

    def train_model_sets(models, dataset, runs_dir, *args, **kwargs):
        seen.update(models=models, runs_dir=runs_dir)
        raise Stop

    def train_seeds(dataset, *, out_dir, **kwargs):
        seen.update(runs_dir=out_dir.parent)
        raise Stop

    def run_report(config, **kwargs):
        seen.update(config=config)
        raise Stop

    # patched where the commands look them up: the CLI's plan imports from these modules when it
    # runs; every other study command runs the pipeline, which trains through its context
    monkeypatch.setattr(stablesal.data.datasets, "load_configured", lambda data: seen.setdefault("data", data))
    monkeypatch.setattr(stablesal.pipeline.run, "load_configured", lambda data: seen.setdefault("data", data))
    monkeypatch.setattr(stablesal.pipeline.run, "ordered_for_explaining", lambda data, *args: data)
    monkeypatch.setattr(stablesal.pipeline.run, "train_model_sets", train_model_sets)
    monkeypatch.setattr(stablesal.pipeline.context, "train_model_sets", train_model_sets)
    monkeypatch.setattr(stablesal.models.training, "train_seeds", train_seeds)
    monkeypatch.setattr(stablesal.pipeline.run, "run_report", run_report)
    return seen


@pytest.mark.parametrize("command", ["stability", "consensus", "plan"])
def test_the_commands_train_what_the_file_says(command, captured, tmp_path):
    toml = write_toml(tmp_path / "c.toml", {("models", "k"): 5, ("models", "untrained_k"): 3,
                                            ("report", "runs_dir"): str(tmp_path / "toml-runs")})
    with pytest.raises(Stop):
        main([command, "--config", toml, "-q"])
    assert captured["models"].k == 5
    assert captured["models"].untrained_k == 3  # plan builds its [consensus] reference family too
    assert captured["runs_dir"] == tmp_path / "toml-runs" / command
    with pytest.raises(Stop):
        main([command, "--config", toml, "-k", "6", "--runs", str(tmp_path / "flag-runs"), "-q"])
    assert captured["models"].k == 6 and captured["runs_dir"] == tmp_path / "flag-runs" / command


def test_factor_study_and_report_use_the_files_folders(captured, tmp_path):
    toml = write_toml(tmp_path / "c.toml", {("report", "runs_dir"): str(tmp_path / "toml-runs"),
                                            ("report", "name"): "mine", ("factors", "n_images"): 3})
    with pytest.raises(Stop):
        main(["factor-study", "--config", toml, "-q"])
    assert captured["runs_dir"] == tmp_path / "toml-runs" / "mine"
    with pytest.raises(Stop):
        main(["report", "--config", toml, "-q"])
    assert captured["config"].report.runs_dir == str(tmp_path / "toml-runs")
    assert captured["config"].report.name == "mine" and captured["config"].factors.n_images == 3


# --- --set: any key over the TOML file, under the named flags -------------------------------------

@pytest.mark.parametrize("command", sorted(TABLE))
def test_set_overrides_the_file_and_a_named_flag_overrides_set(command, tmp_path):
    toml = write_toml(tmp_path / "c.toml", {("data", "seed"): 3, ("gradient", "n_samples"): 5})
    section = "models" if command in ("explain", "perturb") else "gradient"  # the sections they read
    config = resolve(command, "--set", "data.seed=4", "--set", f"{section}.lr=0.25" if section == "models" else
                     "gradient.noise_level=0.25", toml=toml)
    assert config.data.seed == 4 and config.gradient.n_samples == 5
    assert (config.models.lr if section == "models" else config.gradient.noise_level) == 0.25
    later = resolve(command, "--set", "data.seed=4", "--set", "data.seed=6", toml=toml)
    assert later.data.seed == 6  # in the order given
    keys = {(section, key) for _, section, key in TABLE[command].values()}
    if ("report", "runs_dir") in keys:  # every such command has --runs
        both = resolve(command, "--set", "report.runs_dir=from-set", "--runs", "from-flag", toml=toml)
        assert both.report.runs_dir == "from-flag"
        assert resolve(command, "--set", "report.runs_dir=from-set", toml=toml).report.runs_dir == "from-set"
    fixed = FIXED.get(command, {})
    if fixed:  # what the command fixes stays fixed
        (section, key), raw = next(iter(fixed.items()))
        assert value(resolve(command, "--set", f"{section}.{key}=7"), section, key) == raw


@pytest.mark.parametrize("command", ["explain", "perturb"])
def test_explain_and_perturb_refuse_a_set_they_would_not_read(command, tmp_path):
    """They read [data], [models] and [report] (a report's file holds every section, read or not);
    --set gradient.n_samples would change nothing, so it is refused naming it and the flags."""
    with pytest.raises(ValueError, match=rf"--set gradient.n_samples: {command} reads only \[data\], \[models\], "
                                         rf"\[report\] from the configuration; its explainer's settings are its own "
                                         rf"flags \(stablesal {command} --help\)"):
        resolve(command, "--set", "gradient.n_samples=64")
    assert resolve(command, toml="experiments/default.toml").gradient == StudyConfig().gradient


def test_set_reads_values_as_toml_and_bare_words_as_strings():
    config = resolve("report", "--set", 'gradient.methods=["saliency", "smoothgrad"]', "--set", "folds.enabled=false",
                     "--set", "data.dataset=lfw", "--set", "models.lr=0.01", "--set", 'report.name="x y"')
    assert config.gradient.methods == ["saliency", "smoothgrad"] and config.folds.enabled is False
    assert config.data.dataset == "lfw" and config.models.lr == 0.01 and config.report.name == "x y"


def test_set_names_the_run_as_the_file_would():
    assert resolve("stability").report.name == "stability"
    assert resolve("stability", "--set", "report.name=mine").report.name == "mine"


@pytest.mark.parametrize("assignment, message", [
    ("models.k", "expected SECTION.KEY=VALUE"),
    ("k=3", "expected SECTION.KEY=VALUE"),
    ("models.k.x=3", "expected SECTION.KEY=VALUE"),
    ("modelz.k=3", r"unknown configuration section \[modelz\].*\(given as --set modelz.k\)"),
    ("models.kk=3", r"unknown key 'kk' in \[models\].*\(given as --set models.kk\)"),
    ("models.k=abc", r"\[models\] k must be of type int.*\(given as --set models.k\)"),
])
def test_a_bad_set_is_refused_naming_it(assignment, message):
    with pytest.raises((ValueError, TypeError), match=message):
        resolve("report", "--set", assignment)


def test_a_bad_value_elsewhere_is_not_blamed_on_set(tmp_path):
    toml = write_toml(tmp_path / "c.toml", {("models", "vary"): "sideways"})
    with pytest.raises(ValueError) as error:
        resolve("report", "--set", "models.k=3", toml=toml)
    assert "--set" not in str(error.value)


def test_list_prints_every_registry_and_refuses_an_unknown_kind(capsys):
    from stablesal.explain.gradient.methods import METHODS
    from stablesal.explain.perturbation.presets import PRESETS

    assert main(["list", "methods", "presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"methods: {', '.join(METHODS)}", f"presets: {', '.join(PRESETS)}"]
    assert main(["list", "method"]) == 2
    assert "did you mean 'methods'" in capsys.readouterr().err
