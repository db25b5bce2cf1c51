"""What ``genbench list`` shows, read from source instead of importing the components.

Importing the components to learn their names costs seconds (torch, torchvision, timm and
diffusers come with them). The registrations are plain decorators with literal arguments
(``@register("backbone", "uvit_tiny", paper=PAPER)``), so they are read here with :mod:`ast`, as
:func:`genbench.registry.register` would record them: the modules that importing
``genbench.data``, ``genbench.backbones``... runs (the package itself and every module of
``genbench`` it imports at module level, transitively) are parsed, never executed. A plugin's
entry-point module is read the same way within its own top-level package; a plugin whose entry
point is a callable, whose module cannot be found as a ``.py`` file, that registers nothing
readable or that registers with arguments that are not literals is imported (and warned about
when that fails), exactly as :func:`genbench.registry.load_builtins_and_plugins` does.
``tests/test_catalog.py`` checks that the reading equals the imported registry.

Presets (``registry/<group>/*.yaml``, ``baselines/``, ``registry/grid/``) are described by the
first sentence of their header comment; a preset names the component it builds (its ``name``
key, or its defaults' within the group). A component with a preset of the same name is listed
once, as that preset, which is what ``group=name`` selects.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from genbench import registry
from genbench.registry import KINDS, PLUGIN_GROUP, summary

REGISTRY_MODULE = "genbench.registry"
COMPONENT_GROUPS = ("dataset", "latent", "backbone", "sampler")  # config groups of components
PRESET_KINDS = ("train", "eval", "baseline", "grid")  # presets that build no one component


@dataclass(frozen=True)
class Component:
    """A registration as :class:`genbench.registry.Entry` records it, without its factory."""

    kind: str
    name: str
    description: str
    paper: str
    source: str  # the module that registers it


@dataclass(frozen=True)
class Row:
    """One line of ``genbench list``: what ``kind=name`` selects."""

    kind: str
    name: str
    component: str  # the registered component it builds ("" for train/eval/baseline/grid)
    source: str  # registry/, baselines/, registry/grid/, genbench or the plugin's module
    description: str
    paper: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


class Unreadable(Exception):
    """A module whose registrations cannot be read without running it."""


# --------------------------------------------------------------------------- finding modules


def module_spec(module: str) -> Any:
    """The import system's spec of ``module``, found without executing any package's
    ``__init__`` (``importlib.util.find_spec`` would import the parents): each meta-path finder
    is asked with the parent's search locations, as the import system asks them."""
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(loaded, "__spec__", None) is not None:
        return loaded.__spec__
    parent, _, _ = module.rpartition(".")
    path = None
    if parent:
        parent_spec = module_spec(parent)
        if parent_spec is None or parent_spec.submodule_search_locations is None:
            return None
        path = list(parent_spec.submodule_search_locations)
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(module, path)
        except (ImportError, ValueError, AttributeError):
            continue
        if spec is not None:
            return spec
    return None


def _parse(module: str) -> tuple[ast.Module, bool, str]:
    """The syntax tree of ``module``'s source, whether it is a package, and the source."""
    spec = module_spec(module)
    origin = getattr(spec, "origin", None)
    if spec is None or not origin or not str(origin).endswith(".py"):
        raise Unreadable(f"no Python source found for {module}")
    path = Path(origin)
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise Unreadable(f"{path}: {exc}") from None
    return tree, spec.submodule_search_locations is not None, source


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run when the module is imported (``if``/``try``/``with`` blocks
    included, ``if TYPE_CHECKING:`` and function bodies not)."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
                yield from _module_level(node.orelse)
                continue
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(h.body for h in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _prefixes(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its parents too."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _imports(tree: ast.Module, module: str, is_package: bool, scope: str) -> list[str]:
    """The modules of package ``scope`` that importing ``module`` imports."""
    found: list[str] = []
    for node in _module_level(tree.body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found += _prefixes(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            found += _prefixes(base)
            if base == scope or base.startswith(scope + "."):
                found += [f"{base}.{a.name}" for a in node.names
                          if a.name != "*" and module_spec(f"{base}.{a.name}") is not None]
    return [m for m in dict.fromkeys(found) if m == scope or m.startswith(scope + ".")]


# --------------------------------------------------------------------------- registrations


def _value(node: ast.expr, constants: dict[str, Any]) -> Any:
    """A literal (``"x"``, ``("a", "b")``), a module constant holding one, or a sum of strings."""
    if isinstance(node, ast.Name):
        if node.id in constants:
            return constants[node.id]
        raise Unreadable(f"{node.id} is not a module-level literal")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _value(node.left, constants) + _value(node.right, constants)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise Unreadable(f"not a literal: {ast.unparse(node)}") from None


def _constants(tree: ast.Module) -> dict[str, Any]:
    """Module-level names assigned a literal (``PAPER = "Bao et al. 2023 ..."``)."""
    constants: dict[str, Any] = {}
    for node in _module_level(tree.body):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                constants[target.id] = _value(value, constants)
            except Unreadable:
                constants.pop(target.id, None)  # reassigned to something else: not a constant
    return constants


def _register_names(nodes: list[ast.AST], module: str,
                    is_package: bool) -> tuple[set[str], set[str]]:
    """Local names bound to ``genbench.registry.register`` and to the module
    ``genbench.registry`` (``from genbench.registry import register``, ``from genbench import
    registry``, ``import genbench.registry as r``) by the import statements ``nodes``."""
    functions, modules = set(), set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            for alias in node.names:
                if base == REGISTRY_MODULE and alias.name == "register":
                    functions.add(alias.asname or alias.name)
                elif f"{base}.{alias.name}" == REGISTRY_MODULE:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == REGISTRY_MODULE:
                    modules.add(alias.asname or REGISTRY_MODULE)
    return functions, modules


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _registrations(tree: ast.Module, module: str, is_package: bool) -> list[Component]:
    """The components ``module`` registers, as :func:`genbench.registry.register` records them;
    :class:`Unreadable` when a registration is not a decorator with literal arguments on a
    module-level function or class."""
    nodes = list(ast.walk(tree))
    functions, modules = _register_names(
        [n for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))], module, is_package)
    if not functions and not modules:
        return []

    def is_register(node: ast.AST) -> bool:
        if not isinstance(node, ast.Call):
            return False
        name = _dotted(node.func)
        return name in functions or (name.rpartition(".")[0] in modules
                                     and name.endswith(".register"))

    constants = _constants(tree)
    found: list[Component] = []
    read: set[int] = set()
    for node in _module_level(tree.body):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for decorator in node.decorator_list:
            if not is_register(decorator):
                continue
            assert isinstance(decorator, ast.Call)
            args = [_value(a, constants) for a in decorator.args]
            kwargs = {k.arg: k.value for k in decorator.keywords if k.arg}
            if not args or len(args) > 2 or not isinstance(args[0], str):
                raise Unreadable(f"{module}:{decorator.lineno}: register() without a literal kind")
            name = args[1] if len(args) == 2 else (
                _value(kwargs["name"], constants) if "name" in kwargs else None)
            description = (_value(kwargs["description"], constants)
                           if "description" in kwargs else "")
            paper = _value(kwargs["paper"], constants) if "paper" in kwargs else ""
            found.append(Component(
                kind=args[0], name=str(name or node.name),
                description=str(description or summary(ast.get_docstring(node) or "")),
                paper=str(paper), source=module))
            read.add(id(decorator))
    others = [n.lineno for n in nodes if is_register(n) and id(n) not in read]
    if others:
        raise Unreadable(f"{module}: registrations that are not literal decorators at lines "
                         f"{', '.join(map(str, others))}")
    return found


def read_components(roots: list[str], scope: str) -> list[Component]:
    """The components that importing ``roots`` registers, read from the source of the roots and
    of every module of package ``scope`` they import at module level, transitively."""
    queue = [m for root in roots for m in _prefixes(root)
             if m == scope or m.startswith(scope + ".")]
    seen: set[str] = set()
    found: list[Component] = []
    while queue:
        module = queue.pop(0)
        if module in seen:
            continue
        seen.add(module)
        tree, is_package, source = _parse(module)
        if "registry" in source:  # a module that never names the registry registers nothing
            found += _registrations(tree, module, is_package)
        queue += [m for m in _imports(tree, module, is_package, scope) if m not in seen]
    return found


# --------------------------------------------------------------------------- components


def _live(kinds: tuple[str, ...] = KINDS) -> list[Component]:
    return [Component(e.kind, e.name, e.description, e.paper, e.source)
            for kind in kinds for e in registry.entries(kind)]


def builtin_components() -> list[Component]:
    """genbench's own components, read from source (imported only if that fails)."""
    try:
        return read_components(list(registry._BUILTIN_MODULES), "genbench")
    except Unreadable:
        registry.load_builtins_and_plugins()
        return [c for c in _live() if c.source.split(".")[0] == "genbench"]


def plugin_components(known: set[tuple[str, str]]) -> list[Component]:
    """The components of every installed ``genbench.plugins`` entry point, not in ``known``.

    A module entry point is read from source within its top-level package; any other, or one
    that cannot be read or reads as registering nothing, is loaded as the registry loads it
    (:func:`genbench.registry.load_plugin`: a failing one is one warning line)."""
    found: list[Component] = []
    imported = False
    for ep in entry_points(group=PLUGIN_GROUP):
        module = ep.value.split(":", 1)[0].strip()
        read: list[Component] = []
        if ":" not in ep.value:
            try:
                read = read_components([module], module.split(".")[0])
            except Unreadable:
                read = []
        if read:
            found += read
        else:
            imported = registry.load_plugin(ep) or imported
    if imported:  # what the imported plugins registered (their imports may add built-ins)
        found += [c for c in _live_registered() if c.source.split(".")[0] != "genbench"]
    unique: dict[tuple[str, str], Component] = {}
    for component in found:
        key = (component.kind, component.name)
        if key not in known and key not in unique:
            unique[key] = component
    return list(unique.values())


def _live_registered() -> list[Component]:
    """What is registered so far, without loading anything more."""
    return [Component(e.kind, e.name, e.description, e.paper, e.source)
            for kind in KINDS for e in sorted(registry._REGISTRY[kind].values(),
                                              key=lambda e: e.name)]


def components() -> list[Component]:
    """Every registered component, genbench's and the plugins', as the registry would hold them
    after :func:`genbench.registry.load_builtins_and_plugins`."""
    builtins = builtin_components()
    return builtins + plugin_components({(c.kind, c.name) for c in builtins})


# --------------------------------------------------------------------------- presets


def header(path: Path) -> str:
    """The first sentence of a YAML preset's header comment (``# @package`` lines skipped)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# @package"):
            continue
        text = line[1:].strip()
        if not text:
            break
        lines.append(text)
    return summary("\n".join(lines))


def _builds(folder: Path, preset: str, depth: int = 0) -> str:
    """The component a preset of a group builds: its ``name``, else its defaults' in the group."""
    import yaml

    path = folder / f"{preset}.yaml"
    if depth > 10 or not path.is_file():
        return ""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
    if isinstance(data.get("name"), str):
        return data["name"]
    for parent in reversed(data.get("defaults") or []):
        if isinstance(parent, str) and parent != "_self_":
            built = _builds(folder, parent, depth + 1)
            if built:
                return built
    return ""


def rows(kind: str | None = None) -> list[Row]:
    """What ``genbench list [KIND]`` shows: per kind, one row per selectable name."""
    from genbench.config import baselines_root, config_root, group_options

    kinds = [kind] if kind else [*KINDS, *PRESET_KINDS]
    listed = components() if any(k in KINDS for k in kinds) else []
    out: list[Row] = []
    for k in kinds:
        presets = group_options(k) if k in (*COMPONENT_GROUPS, *PRESET_KINDS) else []
        folder = (baselines_root() if k == "baseline" else config_root() / k)
        source = {"baseline": "baselines/", "grid": "registry/grid/"}.get(k, "registry/")
        by_name: dict[str, Row] = {}
        for name in presets:
            builds = _builds(folder, name) if k in COMPONENT_GROUPS else ""
            paper = next((c.paper for c in listed if c.kind == k and c.name == builds), "")
            by_name[name] = Row(k, name, builds, source, header(folder / f"{name}.yaml"), paper)
        for c in listed:
            if c.kind == k and c.name not in by_name:
                origin = "genbench" if c.source.split(".")[0] == "genbench" else c.source
                by_name[c.name] = Row(k, c.name, c.name, origin, c.description or c.paper,
                                      c.paper)
        out += [by_name[name] for name in sorted(by_name)]
    return out


def known_kinds() -> tuple[str, ...]:
    return (*KINDS, *PRESET_KINDS)


__all__ = ["Component", "Row", "builtin_components", "components", "header", "known_kinds",
           "module_spec", "plugin_components", "read_components", "rows"]
