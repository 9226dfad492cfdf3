"""One registry mechanism for everything stablesal looks up by name.

Explainers, perturbation presets, segmenters, fills, pairwise metrics, model architectures and
datasets each live in a :class:`Registry`, and each entry is registered next to its definition
(as Zennit registers its composites), so adding one touches one file::

    METHODS = Registry("gradient method")

    @METHODS.register("saliency", family="gradient")
    class Saliency(GradientIntegration): ...

A registry is a read-only mapping from name to object, so ``name in METHODS``, ``sorted(METHODS)``
and ``METHODS[name]`` work as on a dict; :meth:`Registry.lookup` is the checked access that every
public entry uses: an unknown name raises a ``ValueError`` naming the argument, the closest valid
name and all of them. Each entry may carry metadata (an explainer's ``family``, a metric's
``higher_is_better``, ...), read back with :meth:`Registry.info`; the studies, the CLI and the
configuration read it instead of keeping lists of their own. Metadata holds only what cannot be
computed from the entry: what an object can say about itself (an explainer's ``random``,
``budget``, ``needs_baselines``) is a property of the object, never a copy kept here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


def unknown_name_error(where: str, name: Any, choices: Iterable, kind: str = "name") -> ValueError:
    """The error for a name that is not one of ``choices``: where it was given (a config key or an
    argument; empty when the ``kind`` says enough), the closest valid name ("did you mean") and
    every valid name."""
    valid = sorted(map(str, choices))
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    prefix = f"{where}: " if where else ""
    return ValueError(f"{prefix}unknown {kind} {name!r}{hint} (expected one of {valid})")


def check_name(where: str, name: Any, choices: Iterable) -> None:
    """Refuse ``name`` unless it is one of ``choices`` (see :func:`unknown_name_error`)."""
    choices = list(choices)
    if name not in choices:
        raise unknown_name_error(where, name, choices)


class Registry(Mapping):
    """Name → object, with per-entry metadata; entries are added with :meth:`register`."""

    def __init__(self, kind: str):
        self.kind = kind  # what an entry is, for error messages: "gradient method", "fill", ...
        self._objects: dict[str, Any] = {}
        self._info: dict[str, dict] = {}

    def register(self, name: str, obj: Any = None, **info):
        """Add ``obj`` under ``name`` with metadata ``info``; without ``obj``, a decorator that
        registers what it decorates and returns it unchanged. A name is registered once."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")

        def add(target):
            if name in self._objects:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._objects[name] = target
            self._info[name] = dict(info)
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for plugins replacing an entry, and for tests)."""
        self.lookup(name)
        del self._objects[name], self._info[name]

    def lookup(self, name: Any, where: str | None = None) -> Any:
        """The object registered as ``name``; an unknown name is a ``ValueError`` naming ``where``
        (default: the registry's kind)."""
        if name not in self._objects:
            raise unknown_name_error(where or "", name, self._objects, self.kind)
        return self._objects[name]

    def check(self, name: Any, where: str | None = None) -> None:
        """Refuse an unknown ``name`` (see :meth:`lookup`)."""
        self.lookup(name, where)

    def info(self, name: str, key: str | None = None, default: Any = None) -> Any:
        """The metadata of ``name`` (a copy), or one ``key`` of it (``default`` when absent)."""
        self.lookup(name)
        if key is None:
            return dict(self._info[name])
        return self._info[name].get(key, default)

    def names(self, **where) -> list[str]:
        """Registered names in registration order, those whose metadata equals every ``where`` item."""
        return [name for name, info in self._info.items()
                if all(info.get(key) == value for key, value in where.items())]

    def __getitem__(self, name: str) -> Any:
        return self._objects[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._objects)})"
