"""The folders of the package are its layers: ``core`` < ``data``, ``explain``, ``metrics`` <
``models`` < ``studies`` < ``report`` < ``pipeline`` < ``cli`` (< the package's curated API,
``stablesal/__init__.py``). A module's layer is its top folder; it imports only from its own layer
or below, the graph has no cycles (imports inside functions included), and no module imports
another module's private (``_name``) objects. The only exemptions are the declared compatibility
re-exports of moved modules (``_MOVED`` tables), which are checked to be nothing else."""

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
# the one-release aliases at old flat paths (stablesal/seeds.py → models.training), declared in the
# package's _MOVED table
ALIASES = {old: new.removeprefix("stablesal.") for old, new in declared_moves(PACKAGE / "__init__.py").items()}


def compatibility_edges(name: str) -> set[str]:
    """The imports of ``name`` that are declared compatibility re-exports: an alias module's import
    of its new home (and that home's submodules), and the imports inside a ``__getattr__`` of a
    module with a ``_MOVED`` table of the modules that table names."""
    if name in ALIASES:
        return {target for target, _ in GRAPH[name]
                if target == ALIASES[name] or target.startswith(ALIASES[name] + ".")}
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
    folder (or a flat module other than cli.py and the declared aliases) must be placed in LAYERS."""
    unplaced = [name for name in MODULES if name.split(".")[0] not in LAYER_OF and name not in ALIASES]
    assert not unplaced, "place new top folders in LAYERS (and remove deleted ones)"
    assert all(old in MODULES and new in MODULES for old, new in ALIASES.items()), "a _MOVED alias without its module"


def test_aliases_are_only_aliases():
    """An old-path module imports its new home and nothing else; a ``_MOVED`` __getattr__ imports
    only what its table names."""
    for name in ALIASES:
        assert {target for target, _ in GRAPH[name]} == compatibility_edges(name), name
    assert compatibility_edges("report") == {"pipeline.run"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_pipeline(name):
    if name in ALIASES:
        return  # checked by test_aliases_are_only_aliases
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
    """Every module sits in a layer folder (or is cli.py, the package API or a declared alias), and
    an upward import is found in a module the graph has never seen."""
    assert {name.split(".")[0] for name in MODULES} - set(ALIASES) == set(LAYER_OF)
    assert layer_of("studies.new_study.run") == LAYER_OF["studies"] > layer_of("metrics.new_metric")
