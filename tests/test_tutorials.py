"""Every tutorial of the documentation (docs/tutorials/*.md) runs: its Python blocks in order as one
session, in a fresh folder, with a small generated dataset standing in for ``load_dataset("shapes")``
(32-px images, so the shipped calibration of the estimate tutorial applies); its TOML blocks are
read by the configuration reader after the session, so the files they name exist."""

import sys
from pathlib import Path

import pytest

from tests.test_readme import readme_blocks

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))


@pytest.fixture(scope="module")
def small_shapes():
    from stablesal.data import shapes_dataset

    return shapes_dataset(n_train=480, n_test=48, size=32, seed=5, cache_dir=False)


def test_the_four_tutorials_are_there_and_in_the_site():
    assert {page.stem for page in TUTORIALS} == {"own-models", "consensus-maps", "planner", "estimate"}
    site = (ROOT / "mkdocs.yml").read_text()
    assert all(f"tutorials/{page.name}" in site for page in TUTORIALS)


@pytest.mark.parametrize("page", TUTORIALS, ids=lambda page: page.stem)
def test_the_tutorial_runs(page, tmp_path, monkeypatch, small_shapes):
    import tomllib

    import stablesal.data
    from stablesal.pipeline.config import config_from_dict

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(stablesal.data, "load_dataset", lambda name="shapes", **options: small_shapes)
    blocks = readme_blocks([page])
    python = [b for b in blocks if b["language"] == "python"]
    assert len(python) >= 2, f"{page.name}: a tutorial is a session of several steps"
    namespace: dict = {"__name__": f"tutorial_{page.stem}"}
    for number, block in enumerate(python):
        assert block["marker"] is None, f"{page.name} python block {number + 1} is not run: {block['marker']}"
        try:
            exec(compile(block["code"], f"{page.name} python block {number + 1}", "exec"), namespace)
        except Exception as error:  # name the block that failed
            pytest.fail(f"{page.name} python block {number + 1} failed: {error!r}\n{block['code']}")
    for block in blocks:
        if block["language"] == "toml":
            assert (block["marker"] or "").startswith("parsed by tests"), block["code"][:60]
            # the factory the file names: the tutorial's architecture, as the user keeps it in a file
            (tmp_path / "my_architecture.py").write_text("from torch import nn\n\ndef build(num_classes=10):\n"
                                                         "    return nn.Linear(3, num_classes)\n")
            config_from_dict(tomllib.loads(block["code"]))
        else:
            assert block["language"] == "python", f"{page.name}: a {block['language']} block is neither run nor read"
    _check_outcome(page.stem, namespace)


def _check_outcome(name: str, namespace: dict) -> None:
    """What each tutorial promises its reader, checked on what the session computed."""
    if name == "own-models":
        assert len(namespace["models"]) == 3 and len(namespace["untrained"]) == 3
        assert {(r["method"], r["grouping"]) for r in namespace["rows"]} == {
            (m, g) for m in ("saliency", "smoothgrad", "random") for g in ("pixel", "fastslic")}
        for row in namespace["rows"]:
            assert -1 <= row["spearman_ci_low"] <= row["spearman"] <= row["spearman_ci_high"] <= 1
    elif name == "consensus-maps":
        assert tuple(namespace["mask"].shape) == (6, 32, 32)
        assert Path("consensus.npz").is_file() and 0 <= namespace["found_by_chance"] <= 6
    elif name == "planner":
        assert {plan.method for plan in namespace["plans"]} == {"saliency", "smoothgrad"}
        assert all(value != value or -1 <= value <= 1 for value in namespace["predicted"].values())
    elif name == "estimate":
        row = namespace["row"]
        assert row["kind"] == "estimate" and row["k_variants"] == 8
        assert row["predicted_cross_seed_agreement_ci_low"] < row["predicted_cross_seed_agreement"] \
            < row["predicted_cross_seed_agreement_ci_high"]
        assert "covers 3 × 32 px only" in namespace["refused"]
    else:  # pragma: no cover
        raise AssertionError(f"no outcome check for the tutorial {name!r}")


HOWTOS = sorted((ROOT / "docs" / "howto").glob("*.md"))


@pytest.fixture
def registries_restored():
    """The how-to pages register a method, a metric, a stage and sections: every registry is put back
    as it was after each page."""
    import gc

    from stablesal.core.registry import Registry

    saved = [(r, dict(r._objects), dict(r._info)) for r in gc.get_objects() if isinstance(r, Registry)]
    yield
    for registry, objects, info in saved:
        registry._objects.clear(), registry._objects.update(objects)
        registry._info.clear(), registry._info.update(info)


@pytest.mark.parametrize("page", HOWTOS, ids=lambda page: page.stem)
def test_the_how_to_runs(page, tmp_path, monkeypatch, registries_restored, quick_report):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(quick_report, tmp_path / "reports" / "quick")  # what `stablesal report --quick` writes
    blocks = readme_blocks([page])
    assert blocks and all(b["language"] == "python" and b["marker"] is None for b in blocks), page.name
    namespace: dict = {"__name__": f"howto_{page.stem}"}
    for number, block in enumerate(blocks):
        try:
            exec(compile(block["code"], f"{page.name} python block {number + 1}", "exec"), namespace)
        except Exception as error:
            pytest.fail(f"{page.name} python block {number + 1} failed: {error!r}\n{block['code']}")
    if page.stem == "add-method":
        import torch

        assert namespace["maps"].shape == (2, 3, 16, 16) and bool((namespace["maps"] >= 0).all())
        assert namespace["method"].random and namespace["method"].budget == "n_samples"
        grouped = namespace["grouped"]  # constant on each of the 16 grid cells
        assert torch.unique(grouped[0, 0]).numel() <= 16
    elif page.stem == "add-metric":
        assert namespace["arrow"] == "↑"
    elif page.stem == "add-study":
        results = namespace["results"]
        assert results["stages"] == ["brightness"] and (namespace["out"] / "brightness.csv").is_file()
        assert "Brightness" in (namespace["out"] / "index.html").read_text()
    elif page.stem == "add-section":
        titles = namespace["titles"]
        assert titles.index("Accuracy") == titles.index("Setup") + 1
    else:  # pragma: no cover
        raise AssertionError(f"no outcome check for the how-to {page.stem!r}")


def test_the_four_how_tos_are_there_and_in_the_site():
    assert {page.stem for page in HOWTOS} == {"add-method", "add-metric", "add-study", "add-section"}
    site = (ROOT / "mkdocs.yml").read_text()
    assert all(f"howto/{page.name}" in site for page in HOWTOS)
