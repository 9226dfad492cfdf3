"""The import graph follows the pipeline: data → models and seeds → segmentation → attribution →
perturbation → metrics → studies → report → CLI. Every module has a layer; a module imports only
from its own layer or below, the graph has no cycles (imports inside functions included), and no
module imports another module's private (``_name``) objects."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "stablesal"

LAYERS = [
    # 0: generic helpers, no stablesal imports above them
    {"stablesal", "checks", "seeding", "counter_streams", "storage", "intervals", "executor", "tables", "html",
     "chunking", "imaging", "settings", "multiple_testing", "registry", "fills"},
    {"data", "image_files"},
    {"models", "seeds", "user_models"},
    {"segmentation", "grouping"},
    {"sampling", "attribution", "diagnostics"},
    {"perturbation", "perturbation.samplers", "perturbation.calculators", "perturbation.features",
     "perturbation.replacement", "perturbation.pipeline", "perturbation.presets", "inpainting", "meaningful"},
    {"metrics", "fill_quality"},
    {"stability", "stability_statistics", "fold_study", "factor_effects", "factor_study", "removal_study", "config",
     "consensus", "planner", "consensus_study", "map_store"},
    {"figures", "stability_sections", "consensus_sections", "report_sections", "report"},
    {"cli"},
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def module_names() -> dict[str, Path]:
    """``{"perturbation.pipeline": path, "stablesal": path of __init__, ...}``."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts) or "stablesal"] = path
    return names


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, str]]:
    """``[(module, imported name)]`` for every stablesal import in the file, relative or absolute,
    at any depth (imports inside functions count)."""
    package = [] if name == "stablesal" else name.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "stablesal":
                target = node.module.removeprefix("stablesal").removeprefix(".")
            else:
                continue
            target = target or "stablesal"
            for alias in node.names:
                submodule = f"{target}.{alias.name}" if target != "stablesal" else alias.name
                if submodule in known:
                    found.append((submodule, ""))
                else:
                    found.append((target, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "stablesal":
                    found.append((alias.name.removeprefix("stablesal").removeprefix(".") or "stablesal", ""))
    return found


MODULES = module_names()
# a report section module (stablesal/<name>_sections.py) sits in the report's layer without being listed:
# adding a section is one new module
LAYER_OF.update({name: LAYER_OF["report"] for name in MODULES if name.endswith("_sections")})
GRAPH = {name: imports_of(name, path, set(MODULES)) for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    assert set(MODULES) == set(LAYER_OF), "place new modules in LAYERS (and remove deleted ones)"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_pipeline(name):
    upward = [target for target, _ in GRAPH[name] if LAYER_OF[target] > LAYER_OF[name]]
    assert not upward, f"{name} (layer {LAYER_OF[name]}) imports upward: {upward}"


def test_no_private_names_cross_modules():
    crossing = [(name, target, imported) for name, edges in GRAPH.items() for target, imported in edges
                if imported.startswith("_") and not imported.startswith("__") and target != name]
    assert not crossing


def test_no_cycles():
    edges = {name: {target for target, _ in found if target != name} for name, found in GRAPH.items()}
    # a package imports its own submodules (its __init__ re-exports them): not a cycle
    edges = {name: {t for t in targets if not t.startswith(name + ".")} if "." not in name else targets
             for name, targets in edges.items()}
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not cycles


def test_the_checker_sees_upward_and_private_imports(tmp_path):
    """The walker is not blind: a relative import inside a function, a package-relative one and
    an absolute one are all found, with the names they take."""
    source = ("from .metrics import _hidden\n"
              "def f():\n    from ..report import build\n"
              "import stablesal.cli\n")
    path = tmp_path / "pipeline.py"
    path.write_text(source)
    found = imports_of("perturbation.pipeline", path, set(MODULES))
    assert ("perturbation.metrics", "_hidden") in found
    assert ("report", "build") in found and ("cli", "") in found
