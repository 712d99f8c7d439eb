"""Methods by name: the ``@register_method`` decorator is the one source of what a method is.

A paper's ``method.py`` registers each method once, with where it applies::

    @register_method("naflow", kinds=["cnn"], archs=["vgg_small", "vgg16"], blocks=True)
    class NAFlow(Explainer): ...

- ``kinds`` (``cnn`` / ``vit``), ``tasks`` (``classifier`` / ``embedding``) and ``archs`` (a list
  of architecture names, or None for any) say which models it explains; building it on any
  other model raises :class:`MethodNotApplicable`.
- ``leaderboard=False`` keeps a variant off the leaderboard.
- ``label="..."``: the name readers see in tables and figures (default: the registered name),
  e.g. ``label="SFAM (derived CIS)"`` for a method whose formula is ours, not the paper's.
  Files, result keys and JSON records always use the registered name.
- ``blocks=True``: the method takes ``block=k`` and is also available as ``<name>_b<k>``, the
  method at the output of the model's k-th block (:func:`shared.explain.layers.block_layers`).
  Block variants are never on the leaderboard.
- any other keyword is a fixed constructor argument of this registered name
  (``@register_method("normgrad_3x3", kernel_size=3)``).

The keywords must be literals: the workflow reads them from ``method.py`` without importing it
(:mod:`shared.registry_meta`, no torch at parse time); a test checks both readings agree. The
shared code never imports a paper statically: :func:`get_method` imports the paper's module on
demand.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.models.adapter import ModelAdapter, nearest_names
from shared.registry_meta import BLOCK_VARIANT, KINDS, TASKS, applies, method_table, variant_label


class MethodNotApplicable(ValueError):
    """A method was asked to explain a model it is not defined for (kind, task or architecture)."""


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its factory, fixed constructor arguments and where it applies."""

    name: str
    factory: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    kinds: tuple[str, ...] = KINDS
    tasks: tuple[str, ...] = TASKS
    archs: tuple[str, ...] | None = None
    leaderboard: bool = True
    blocks: bool = False
    label: str | None = None  # what readers see (tables, figures); None: the name

    def __post_init__(self) -> None:
        if self.label is None:
            object.__setattr__(self, "label", self.name)

    def applies(self, kind: str, task: str, arch: str | None = None) -> bool:
        """Whether the method is defined for a model of this kind, task and architecture."""
        return applies({"kinds": self.kinds, "tasks": self.tasks, "archs": self.archs}, kind, task, arch)

    def check(self, adapter: ModelAdapter) -> None:
        """Raise :class:`MethodNotApplicable` (saying where it applies) unless it explains ``adapter``."""
        arch = getattr(adapter, "arch", None)
        if not self.applies(adapter.kind, adapter.task, arch):
            where = f"{'/'.join(self.kinds)} models, tasks {'/'.join(self.tasks)}"
            if self.archs is not None:
                where += f", architectures {', '.join(self.archs)}"
            raise MethodNotApplicable(
                f"method {self.name!r} does not apply to model {adapter.name!r} "
                f"(a {adapter.kind} {adapter.task}{f', arch {arch}' if arch else ''}); it is defined for {where}"
            )

    def build(self, adapter: ModelAdapter, **overrides: Any) -> Any:
        if not isinstance(adapter, ModelAdapter):
            raise TypeError(
                f"method {self.name!r} explains a ModelAdapter, got a {type(adapter).__name__}; "
                f"wrap your model first: shared.models.wrap(model) (or wrap(model, layer=...))"
            )
        self.check(adapter)
        return self.factory(adapter, **{**self.kwargs, **overrides})

    def variant(self, block: int) -> MethodSpec:
        """``<name>_b<block>``: this method at the output of the model's ``block``-th block."""
        if not self.blocks:
            raise KeyError(f"method {self.name!r} has no block variants (it is not registered with blocks=True)")
        name = f"{self.name}_b{block}"
        return MethodSpec(
            name, self.factory, {**self.kwargs, "block": block},
            self.kinds, self.tasks, self.archs, leaderboard=False, blocks=False,
            label=variant_label(self.name, self.label, block),
        )


_METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    kinds: Sequence[str] = KINDS,
    tasks: Sequence[str] = TASKS,
    archs: Sequence[str] | None = None,
    leaderboard: bool = True,
    blocks: bool = False,
    label: str | None = None,
    **kwargs: Any,
) -> Callable:
    """Class decorator: register ``cls`` under ``name`` (see the module docstring).

    Stack it to register named variants: ``@register_method("normgrad_meta", meta=True)``.
    """
    bad = sorted(set(kinds) - set(KINDS)) + sorted(set(tasks) - set(TASKS))
    if bad:
        raise ValueError(f"method {name!r}: unknown kinds/tasks {bad}; kinds are {KINDS}, tasks {TASKS}")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise ValueError(f"method {name!r}: label must be a non-empty string (what readers see), got {label!r}")
    if BLOCK_VARIANT.match(name):
        raise ValueError(f"method name {name!r} ends in _b<k>, which names block variants; register the base with blocks=True")

    def decorate(cls: Callable) -> Callable:
        # the class checks where it applies when built directly too: one source, the decorator
        for attr, value in (("kinds", tuple(kinds)), ("tasks", tuple(tasks))):
            own = cls.__dict__.get(attr)
            if own is not None and tuple(own) != value:
                raise ValueError(f"{cls.__qualname__} is registered with {attr}={list(own)} and {list(value)}; one class, one {attr}")
            setattr(cls, attr, value)
        existing = _METHODS.get(name)
        if existing is not None and (existing.factory.__qualname__, existing.factory.__module__) != (
            cls.__qualname__,
            cls.__module__,
        ):
            raise ValueError(f"method name {name!r} is registered twice ({existing.factory} and {cls})")
        _METHODS[name] = MethodSpec(
            name, cls, dict(kwargs), tuple(kinds), tuple(tasks),
            tuple(archs) if archs is not None else None, bool(leaderboard), bool(blocks), label,
        )
        return cls

    return decorate


def get_method(name: str) -> MethodSpec:
    """The registered method ``name`` (or block variant ``<name>_b<k>``), importing its paper's module."""
    variant = BLOCK_VARIANT.match(name)
    base = variant.group("base") if variant else name
    if base not in _METHODS:
        table = method_table()
        if base in table:
            importlib.import_module(f"papers.{table[base]['paper']}.method")
        if base not in _METHODS:
            known = sorted(set(table) | set(_METHODS))
            raise KeyError(
                f"unknown method {name!r}; nearest: {', '.join(nearest_names(name, known)) or 'none'} "
                f"(every method is listed by `repro list`)"
            )
    spec = _METHODS[base]
    return spec.variant(int(variant.group("block"))) if variant else spec


def build_explainer(name: str, adapter: ModelAdapter, **overrides: Any) -> Any:
    """Instantiate method ``name`` on ``adapter`` (a clear error if it does not apply there)."""
    return get_method(name).build(adapter, **overrides)


def registered() -> dict[str, MethodSpec]:
    """The methods registered so far in this process (import papers' modules to fill it)."""
    return dict(_METHODS)
