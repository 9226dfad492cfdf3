"""The folders of the package are its layers: ``core`` < ``data``, ``explain``, ``metrics`` <
``models`` < ``studies`` < ``report`` < ``pipeline`` < ``cli`` (< the package's curated API,
``stablesal/__init__.py``). A module's layer is its top folder; it imports only from its own layer
or below, the graph has no cycles (imports inside functions included), and no module imports
another module's private (``_name``) objects. The only exemptions are the declared compatibility
re-exports of moved names (``_MOVED`` tables), which are checked to be nothing else."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "stablesal"

LAYERS = [
    {"core"},
    {"data", "explain", "metrics"},
    {"models"},
    {"studies"},
    {"report"},
    {"pipeline"},
    {"cli"},
    {"stablesal"},  # the curated public API (its __init__), above everything
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def layer_of(module: str) -> int:
    """The layer of a module: the one of its top folder (``studies.stability.run`` → studies)."""
    return LAYER_OF[module.split(".")[0]]


def declared_moves(path: Path) -> dict[str, str]:
    """The module-level ``_MOVED = {...}`` table of a file (old name → new module), or {}."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_MOVED" for t in node.targets):
            return ast.literal_eval(node.value) if isinstance(node.value, ast.Dict) else {}
    return {}


def module_names() -> dict[str, Path]:
    """``{"perturbation.pipeline": path, "stablesal": path of __init__, ...}``."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts) or "stablesal"] = path
    return names


def imports_of(name: str, path: Path, known: set[str], tree: ast.AST | None = None) -> list[tuple[str, str]]:
    """``[(module, imported name)]`` for every stablesal import in the file, relative or absolute,
    at any depth (imports inside functions count)."""
    package = [] if name == "stablesal" else name.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text()) if tree is None else tree):
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
GRAPH = {name: imports_of(name, path, set(MODULES)) for name, path in MODULES.items()}
# the package's table of moved modules (old flat name → new module), served by its import finder
MOVED = declared_moves(PACKAGE / "__init__.py")


def compatibility_edges(name: str) -> set[str]:
    """The imports inside the ``__getattr__`` of a module with a ``_MOVED`` table (old attribute
    names re-exported for one release) of the modules that table names: the declared exemptions."""
    path = MODULES[name]
    moved = {module.removeprefix("stablesal.") for module in declared_moves(path).values()}
    if name == "stablesal" or not moved:
        return set()
    getattrs = [node for node in ast.parse(path.read_text()).body
                if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"]
    inside = {target for function in getattrs
              for target, _ in imports_of(name, path, set(MODULES), tree=function)}
    return inside & moved


def test_every_module_has_a_layer():
    """A module's layer is its folder's: a new module in a folder needs nothing here; a new top
    folder (or a flat module other than cli.py) must be placed in LAYERS."""
    unplaced = [name for name in MODULES if name.split(".")[0] not in LAYER_OF]
    assert not unplaced, "place new top folders in LAYERS (and remove deleted ones)"


def test_moved_modules_are_served_by_the_finder_not_by_files():
    """Every old flat path of the move names an existing module, no file sits at an old path, and
    importing the old path gives the moved module itself (one object), with a DeprecationWarning;
    a ``_MOVED`` __getattr__ imports only what its table names."""
    import importlib
    import warnings

    assert MOVED and all(new.removeprefix("stablesal.") in MODULES for new in MOVED.values())
    assert not [old for old in MOVED if old in MODULES]
    for old, new in MOVED.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(f"stablesal.{old}")
        assert module is importlib.import_module(f"stablesal.{new}"), old
        assert module.__spec__.name == f"stablesal.{new}", old  # its own spec, not the old name's
    moved_submodule = importlib.import_module("stablesal.perturbation.samplers")
    assert moved_submodule is importlib.import_module("stablesal.explain.perturbation.samplers")
    with pytest.warns(DeprecationWarning, match="stablesal.seeds moved to stablesal.models.training"):
        import sys

        sys.modules.pop("stablesal.seeds", None)
        importlib.import_module("stablesal.seeds")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("stablesal.no_such_module")
    assert compatibility_edges("report") == {"pipeline.run"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_pipeline(name):
    exempt = compatibility_edges(name)
    upward = [target for target, _ in GRAPH[name] if layer_of(target) > layer_of(name) and target not in exempt]
    assert not upward, f"{name} (layer {layer_of(name)}) imports upward: {upward}"


def test_no_private_names_cross_modules():
    crossing = [(name, target, imported) for name, edges in GRAPH.items() for target, imported in edges
                if imported.startswith("_") and not imported.startswith("__") and target != name]
    assert not crossing


def test_no_cycles():
    edges = {name: {target for target, _ in found if target != name} for name, found in GRAPH.items()}
    # a package imports its own submodules (its __init__ re-exports them): not a cycle
    edges = {name: {t for t in targets if not t.startswith(name + ".")} if MODULES[name].name == "__init__.py"
             else targets for name, targets in edges.items()}
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


def test_the_layers_are_folders():
    """Every module sits in a layer folder (or is cli.py or the package API), and an upward import
    is found in a module the graph has never seen."""
    assert {name.split(".")[0] for name in MODULES} == set(LAYER_OF)
    assert layer_of("studies.new_study.run") == LAYER_OF["studies"] > layer_of("metrics.new_metric")


# A function imports inside itself only what must stay out of import time: an optional dependency
# (fast-slic, OpenCV, torchvision, Dask, scikit-learn), or anything in a module the command line's
# parser imports, which must not load torch (``stablesal --help`` stays fast); the package's lazy
# re-exports (``__getattr__``) are the third case.
OPTIONAL_DEPENDENCIES = {"fast_slic", "cv2", "torchvision", "distributed", "dask", "dask_jobqueue", "sklearn", "tomli"}
LIGHT_MODULES = {"cli", "pipeline.config", "core.settings", "stablesal"}


def function_imports(path: Path) -> list[tuple[str, int, str]]:
    """``(function, line, imported module)`` for every import inside a function of the file."""
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) and function.name != "__getattr__":
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom):
                    found.append((function.name, node.lineno, "." * node.level + (node.module or "")))
                elif isinstance(node, ast.Import):
                    found.extend((function.name, node.lineno, alias.name) for alias in node.names)
    return found


def test_imports_inside_functions_are_only_optional_dependencies_or_keep_the_cli_light():
    misplaced = [(name, line, module) for name, path in MODULES.items() if name not in LIGHT_MODULES
                 for _, line, module in function_imports(path)
                 if module.startswith(".") or module.split(".")[0] not in OPTIONAL_DEPENDENCIES]
    assert not misplaced, f"move these imports to the top of their module: {misplaced}"


def test_the_function_import_check_sees_one(tmp_path):
    path = tmp_path / "module.py"
    path.write_text("import torch\ndef f():\n    from ..core import seeding\n    import cv2\n    import json\n")
    assert [module for _, _, module in function_imports(path)] == ["..core", "cv2", "json"]
