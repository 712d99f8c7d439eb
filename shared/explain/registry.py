"""Methods by name, so that rules, metrics and `repro diff` can build any paper's method.

A paper's ``method.py`` registers its methods with ``@register_method("gradcam")``. The shared
code never imports a paper statically: :func:`get_method` imports the module that
``papers/<id>/paper.yaml`` names for the method, on demand.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.models.adapter import ModelAdapter, nearest_names

@dataclass(frozen=True)
class MethodSpec:
    name: str
    factory: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, adapter: ModelAdapter, **overrides: Any) -> Any:
        return self.factory(adapter, **{**self.kwargs, **overrides})


_METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, **kwargs: Any) -> Callable:
    """Class decorator: register ``cls`` under ``name`` (with fixed constructor ``kwargs``).

    Stack it to register variants: ``@register_method("normgrad_meta", meta=True)``.
    """

    def decorate(cls: Callable) -> Callable:
        existing = _METHODS.get(name)
        if existing is not None and (existing.factory.__qualname__, existing.factory.__module__) != (
            cls.__qualname__,
            cls.__module__,
        ):
            raise ValueError(f"method name {name!r} is registered twice ({existing.factory} and {cls})")
        _METHODS[name] = MethodSpec(name, cls, dict(kwargs))
        return cls

    return decorate


def method_modules(papers_dir: Path | None = None) -> dict[str, str]:
    """Method name → module path, from every ``papers/*/paper.yaml``."""
    from shared.registry_meta import method_table

    return {name: f"papers.{spec['paper']}.method" for name, spec in method_table(papers_dir).items()}


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``, importing its paper's module if needed."""
    if name not in _METHODS:
        modules = method_modules()
        if name in modules:
            importlib.import_module(modules[name])
        if name not in _METHODS:
            known = sorted(set(modules) | set(_METHODS))
            raise KeyError(
                f"unknown method {name!r}; nearest: {', '.join(nearest_names(name, known)) or 'none'} "
                f"(every method is listed by `repro list`)"
            )
    return _METHODS[name]


def build_explainer(name: str, adapter: ModelAdapter, **overrides: Any) -> Any:
    """Instantiate method ``name`` on ``adapter``."""
    return get_method(name).build(adapter, **overrides)
