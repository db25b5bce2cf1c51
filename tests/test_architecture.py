"""genbench's imports point down and never form a cycle.

Every module of ``genbench/`` is parsed with :mod:`ast`; every import it makes (at module level,
inside functions and under ``if TYPE_CHECKING:`` alike: an import hidden in a function is still a
dependency) is mapped to a layer, bottom to top:

0. ``genbench.errors``, ``genbench._io``, ``genbench.registry``, ``genbench.config`` (the
   YAML half of the registry: the preset tree and its Hydra composition) and
   ``genbench.catalog`` (both halves read for ``genbench list``), ``genbench.progress``
   (progress bars), ``genbench.distributed`` (the process group), ``genbench.process`` (the
   thread setup before torch is imported) and ``genbench.precision`` (autocast dtypes, loss
   scaling and compile, for training and sampling): the foundation;
1. the components ``data``, ``diffusion``, ``backbones``, ``latents``, ``metrics``, ``samplers``,
   ``training``, ``report``: they may use one another only as an acyclic graph (of them, only
   ``report`` reads the config tree, for the published baselines' presets);
2. ``genbench.harness``: build, run and record a cell, and the grid; ``genbench.schema``: the
   typed configuration schema (it reads the trainers' settings and the registered factories);
3. ``genbench.cli`` and ``genbench.__main__``: the command line.

A module may import its own layer's units (subject to the cycle check) and any layer below, never
one above. The tests print every violation, one per line, with the file and line of the import.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genbench"

# Each unit (a top-level module or subpackage of genbench) and its layer.
LAYERS: dict[str, int] = {
    "genbench": 0,  # the package's __init__ (imports nothing of genbench)
    "genbench.errors": 0,
    "genbench._io": 0,
    "genbench.registry": 0,
    **{f"genbench.{name}": 1 for name in (
        "data", "diffusion", "backbones", "latents", "metrics", "samplers", "training", "report")},
    "genbench.config": 0,
    "genbench.catalog": 0,  # the registry and the presets, read without importing components
    "genbench.progress": 0,  # progress bars named by their grid cell
    "genbench.distributed": 0,  # the torch.distributed group a command runs in (rank, world)
    "genbench.process": 0,  # the OpenMP thread setup, before torch is imported
    "genbench.precision": 0,  # autocast dtypes, loss scaling, compile (training and sampling)
    "genbench.harness": 2,
    "genbench.schema": 2,  # the typed configuration schema: reads the trainers' settings
    "genbench.cli": 3,
    "genbench.__main__": 3,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """``genbench.metrics.quality`` -> ``genbench.metrics``; ``genbench.cli`` stays."""
    return ".".join(module.split(".")[:2])


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _submodule(package: str, name: str) -> str:
    """``from package import name``: the module ``package.name`` if there is one, else package."""
    folder = PACKAGE.parent.joinpath(*f"{package}.{name}".split("."))
    is_module = folder.with_suffix(".py").is_file() or (folder / "__init__.py").is_file()
    return f"{package}.{name}" if is_module else package


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported genbench module, line) for every import in ``path``, at any depth."""
    module = _module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, path.name == "__init__.py")
            # ``from genbench import _io`` imports the module genbench._io
            targets = [_submodule(target, a.name) for a in node.names]
        else:
            continue
        found += [(t, node.lineno) for t in targets if t == "genbench" or t.startswith("genbench.")]
    return found


def _edges(level=_unit) -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> ``file:line`` of each import behind that edge, between units
    (``level=_unit``) or between modules (``level=str``)."""
    edges: dict[tuple[str, str], set[tuple[str, int]]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        source = level(_module_name(path))
        for target, line in _imports(path):
            if level(target) != source:
                edges[(source, level(target))].add((str(path.relative_to(PACKAGE.parent)), line))
    return {edge: [f"{f}:{n}" for f, n in sorted(where)] for edge, where in edges.items()}


def _cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """Every elementary cycle of the unit graph, each once (rotated to start at its least unit)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    found: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                found.add(tuple(path))
            elif nxt > start and nxt not in path:
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return [list(cycle) for cycle in sorted(found)]


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert not units - set(LAYERS), f"give these a layer: {sorted(units - set(LAYERS))}"


def test_no_upward_imports() -> None:
    violations = [
        f"{source} (layer {LAYERS[source]}) imports {target} (layer {LAYERS[target]}) at "
        f"{', '.join(where)}"
        for (source, target), where in sorted(_edges().items())
        if source in LAYERS and target in LAYERS and LAYERS[target] > LAYERS[source]
    ]
    print("\n".join(violations))
    assert not violations, "upward imports:\n" + "\n".join(violations)


def test_hydra_composition_stays_at_the_edge() -> None:
    """Library code takes plain arguments: of the components, only ``report`` composes presets
    (the published baselines'), and no component imports hydra or omegaconf itself."""
    components = {u for u, layer in LAYERS.items() if layer == 1}
    composing = sorted(source for (source, target) in _edges()
                       if target == "genbench.config" and source in components)
    assert composing == ["genbench.report"]
    hydra_users = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if _unit(_module_name(path)) not in components:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            hydra_users += [f"{path.name}:{node.lineno}" for n in names
                            if n.split(".")[0] in ("hydra", "omegaconf")]
    assert not hydra_users, hydra_users


@pytest.mark.parametrize("level", [_unit, str], ids=["between-units", "between-modules"])
def test_no_import_cycles(level) -> None:
    edges = _edges(level)
    lines = []
    for cycle in _cycles(edges):
        steps = zip(cycle, [*cycle[1:], cycle[0]])
        lines.append(" -> ".join([*cycle, cycle[0]]) + ": " + "; ".join(
            f"{a} -> {b} at {', '.join(edges[(a, b)])}" for a, b in steps))
    print("\n".join(lines))
    assert not lines, "import cycles:\n" + "\n".join(lines)


@pytest.mark.parametrize("source, expected", [
    ("from genbench import _io\nfrom . import quality\n", {"genbench._io", "genbench.metrics"}),
    ("def f():\n    from ..harness.cell import run_cell\n", {"genbench.harness"}),
    ("from genbench.metrics import features\n", {"genbench.metrics"}),
    ("import genbench.cli as c\n", {"genbench.cli"}),
])
def test_the_parser_sees_relative_nested_and_aliased_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: set[str]
) -> None:
    package = tmp_path / "genbench"
    (package / "metrics").mkdir(parents=True)
    for module in ("_io.py", "metrics/__init__.py", "metrics/quality.py"):
        (package / module).write_text("")
    (package / "metrics" / "features.py").write_text(source)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    assert {_unit(t) for t, _ in _imports(package / "metrics" / "features.py")} == expected


def test_the_checks_catch_a_cycle_and_an_upward_import() -> None:
    edges = {("genbench.latents", "genbench.training"): ["a.py:1"],
             ("genbench.training", "genbench.latents"): ["b.py:2"],
             ("genbench.latents", "genbench.harness"): ["c.py:3"]}
    assert _cycles(edges) == [["genbench.latents", "genbench.training"]]
    assert [e for e in edges if LAYERS[e[1]] > LAYERS[e[0]]] == [
        ("genbench.latents", "genbench.harness")]
