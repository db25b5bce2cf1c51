"""The component registry: small named factories, as in timm's ``@register_model``.

Each kind of component (``dataset``, ``backbone``, ``latent``, ``sampler``, ``metric``,
``discriminator``) has a namespace of factories. A factory is a plain function taking typed
keyword arguments and returning the component; its metadata (paper, description, tags) is kept
apart from its arguments.
Presets (sizes, published configurations) are YAML data under ``registry/`` and ``baselines/``,
never subclasses.

Third-party packages add components through the entry-point group ``genbench.plugins``: each entry
point names a module (imported, so that its decorators run) or a callable (called once).

    >>> from genbench import registry
    >>> @registry.register("backbone", "my_net", paper="Me et al. 2026")
    ... def my_net(in_channels: int, resolution: int) -> torch.nn.Module: ...
    >>> net = registry.create("backbone", "my_net", in_channels=3, resolution=32)
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from genbench.errors import UnknownComponentError, UserError

KINDS: tuple[str, ...] = ("dataset", "backbone", "latent", "sampler", "metric", "discriminator")
PLUGIN_GROUP = "genbench.plugins"

# Modules whose import registers the built-in components of each kind.
_BUILTIN_MODULES: tuple[str, ...] = (
    "genbench.data",
    "genbench.backbones",
    "genbench.latents",
    "genbench.samplers",
    "genbench.metrics",
)


@dataclass(frozen=True)
class Entry:
    """One registered component: its factory and metadata (not constructor arguments)."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str = ""
    paper: str = ""
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # module that registered it: "genbench.*" or a plugin's module

    def arguments(self) -> list[str]:
        """Names of the factory's keyword arguments."""
        return [p for p in inspect.signature(self.factory).parameters if p != "self"]

    def accepts(self, argument: str) -> bool:
        """Whether the factory takes ``argument`` (by name or through ``**kwargs``)."""
        params = inspect.signature(self.factory).parameters.values()
        return argument in self.arguments() or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_loaded = False


def _check_kind(kind: str) -> None:
    if kind not in _REGISTRY:
        raise UnknownComponentError(
            f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}"
        )


def register(
    kind: str,
    name: str | None = None,
    *,
    description: str = "",
    paper: str = "",
    tags: tuple[str, ...] | list[str] = (),
    **extra: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``factory`` as component ``name`` of ``kind``.

    ``name`` defaults to the function's name; ``description`` to the first sentence of its
    docstring (:func:`summary`).
    Registering a name twice is an error unless it is the same function (module reloads).
    """
    _check_kind(kind)

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        entry_name = name or factory.__name__
        entry = Entry(
            kind=kind,
            name=entry_name,
            factory=factory,
            description=description or summary(inspect.getdoc(factory) or ""),
            paper=paper,
            tags=tuple(tags),
            extra=dict(extra),
            source=getattr(factory, "__module__", ""),
        )
        previous = _REGISTRY[kind].get(entry_name)
        if previous is not None and previous.factory.__qualname__ != factory.__qualname__:
            raise ValueError(f"{kind} {entry_name!r} is already registered by {previous.source}")
        _REGISTRY[kind][entry_name] = entry
        return factory

    return decorate


# Words whose period does not end a sentence ("Song et al. 2021", "Eq. 12", "e.g. CIFAR-10").
_ABBREVIATIONS = frozenset({"al", "e.g", "i.e", "eq", "eqs", "sec", "fig", "figs", "tab", "no",
                            "vs", "cf", "approx", "resp", "ca", "ref", "refs", "alg", "app", "p",
                            "pp"})


def summary(text: str) -> str:
    """The first sentence of ``text``'s first paragraph, its lines joined: what ``genbench list``
    shows of a docstring or a preset's header comment, never cut mid-sentence.

    A sentence ends at ``.``, ``!`` or ``?`` outside brackets, followed by white space or the end,
    unless the word before is an abbreviation (``et al.``, ``Eq. 12``, ``Sec. 4``, ``e.g.``).
    Without such an end, the whole paragraph.
    """
    paragraph = []
    for line in text.strip().splitlines():
        if not line.strip():
            break
        paragraph.append(line.strip())
    joined = " ".join(paragraph)
    depth = 0
    for i, ch in enumerate(joined):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch in ".!?" and depth == 0:
            rest = joined[i + 1:]
            if rest and not rest[0].isspace():
                continue
            word = joined[:i].rsplit(" ", 1)[-1].lstrip("([{\"'").lower()
            if ch == "." and word in _ABBREVIATIONS:
                continue
            return joined[:i + 1]
    return joined


def load_builtins_and_plugins() -> None:
    """Import the built-in component modules and every ``genbench.plugins`` entry point (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group=PLUGIN_GROUP):
        load_plugin(ep)


def load_plugin(ep: Any) -> bool:
    """Import (and call, when it names a callable) one ``genbench.plugins`` entry point; a
    plugin that fails is one warning line (:func:`_warn_plugin`) and False."""
    try:
        obj = ep.load()
        if callable(obj) and not inspect.ismodule(obj):
            obj()
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the built-ins
        _warn_plugin(ep, exc)
        return False
    return True


def _warn_plugin(ep: Any, exc: BaseException) -> None:
    """One warning line on stderr for a plugin that failed to load; its components are missing,
    every other component (the built-ins, the other plugins) still works."""
    reason = (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__
    print(f"genbench: warning: plugin {ep.name!r} ({ep.value}) failed to load and is skipped: "
          f"{type(exc).__name__}: {reason}; fix or uninstall the package that provides it",
          file=sys.stderr, flush=True)


def get(kind: str, name: str) -> Entry:
    """The entry for ``name``; an unknown name raises with the closest registered names."""
    load_builtins_and_plugins()
    _check_kind(kind)
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY[kind]), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(_REGISTRY[kind]))
        raise UnknownComponentError(
            f"unknown {kind} {name!r}; {hint + ' ' if hint else ''}registered: {known}"
        ) from None


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """Build component ``name`` of ``kind`` with keyword arguments ``kwargs``."""
    entry = get(kind, name)
    params = inspect.signature(entry.factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params]
    if unknown and not takes_any:
        close = difflib.get_close_matches(unknown[0], entry.arguments(), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(
            f"{kind} {name!r} takes no argument(s) {', '.join(unknown)}; "
            f"{hint}it takes: {', '.join(entry.arguments())}"
        )
    return entry.factory(**kwargs)


def names(kind: str | None = None, pattern: str | None = None) -> list[str]:
    """Registered names of ``kind`` (all kinds as ``kind/name`` when None), wildcard-filtered."""
    load_builtins_and_plugins()
    if kind is None:
        found = [f"{k}/{n}" for k in KINDS for n in sorted(_REGISTRY[k])]
    else:
        _check_kind(kind)
        found = sorted(_REGISTRY[kind])
    if pattern:
        found = [n for n in found if fnmatch.fnmatch(n, pattern)]
    return found


def entries(kind: str) -> list[Entry]:
    """Registered entries of ``kind``, sorted by name."""
    return [get(kind, n) for n in names(kind)]
