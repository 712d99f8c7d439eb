"""One entry point for every paper step (``steps:`` in paper.yaml; rules/papers.smk runs them).

    python -m papers.<id>.figures <step> --models data/models/resnet.safetensors ... \
        --datasets data/datasets/<the model's dataset> ... --methods gradcam eigencam ... \
        --maps-dir data/maps --out figure=reports/<id>/x.png records=reports/<id>/x.json \
        --config-json '{...}'

A paper's ``figures.py`` is a dict of step functions and one call::

    STEPS = {"qualitative": qualitative, "sanity": sanity}
    if __name__ == "__main__":
        raise SystemExit(step_main(STEPS, __doc__))

Each step function takes a :class:`StepContext`: the models (one dataset each, as the plan
resolved their roles), the methods, the shared maps (``ctx.maps(model, method)``: computed once
by the per-model explain job, never recomputed by a figure), the named outputs and the config.
The run-time settings (device, threads, seed, deterministic mode) are applied before the step.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StepContext:
    """What a paper step reads and writes; see the module docstring."""

    step: str
    models: list[str]
    datasets: list[str]
    methods: list[str]
    maps_dir: Path
    outputs: dict[str, str]
    config: dict[str, Any]
    device: Any = None
    planned_maps: frozenset[str] | None = None
    _batches: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def eval(self) -> dict[str, Any]:
        """The config's eval section (n_images, batch_size, bootstrap, ci, deletion_steps)."""
        return self.config["eval"]

    @property
    def settings(self) -> dict[str, Any]:
        """This paper's settings (``papers.<id>`` of the config over its ``config_schema`` defaults)."""
        return self.config.get("paper", {})

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    def output(self, name: str) -> str:
        """The path of output ``name`` (a clear error if paper.yaml's step does not declare it)."""
        if name not in self.outputs:
            raise SystemExit(
                f"error: step {self.step!r} writes an output named {name!r}; declare it in the step's outputs "
                f"in paper.yaml (given: {', '.join(sorted(self.outputs)) or 'none'})"
            )
        return self.outputs[name]

    def eval_batch(self, i: int = 0):
        """Model ``i``'s evaluation subset on its dataset (shared.pipeline.io.eval_batch), loaded once."""
        from shared.pipeline.io import eval_batch

        if i not in self._batches:
            self._batches[i] = eval_batch(self.models[i], self.datasets[i], self.eval["n_images"], self.device)
        return self._batches[i]

    def batches(self) -> list:
        """Every model's evaluation subset, in the order of ``models``."""
        return [self.eval_batch(i) for i in range(len(self.models))]

    def has_maps(self, model: str, method: str) -> bool:
        """Whether the workflow computed ``method``'s shared maps on ``model`` for this step: the
        profile may leave a pair out (``methods.<name>.models``), as the rehearsal does Score-CAM."""
        path = self.maps_dir / model / f"{method}.safetensors"
        return str(path) in self.planned_maps if self.planned_maps is not None else path.exists()

    def maps(self, model: str, method: str):
        """The shared maps (N, H, W) of ``method`` on ``model`` (its name, e.g. ``resnet``)."""
        from shared.pipeline.io import load_maps

        path = self.maps_dir / model / f"{method}.safetensors"
        if not path.exists():
            raise SystemExit(
                f"error: step {self.step!r} reads {path}, which is missing: list {method} in the step's methods "
                f"and set maps: true in paper.yaml, so the workflow computes it first"
            )
        return load_maps(path)[0].to(self.device)


def parse_outputs(items: list[str]) -> dict[str, str]:
    """``name=path`` pairs into a dict, refusing malformed ones."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"error: --out takes name=path pairs, got {item!r}")
        out[name] = path
    return out


def _default_settings() -> dict[str, Any]:
    """The config_schema defaults of the paper whose ``figures`` module runs as ``__main__``."""
    import sys

    from shared.config import paper_settings

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    parts = (spec.name if spec else "").split(".")
    return paper_settings({}, parts[1]) if len(parts) > 2 and parts[0] == "papers" else {}


def step_main(steps: dict[str, Callable[[StepContext], None]], doc: str | None = None, argv: list[str] | None = None) -> int:
    """Parse the step command line, set up the run-time, run the named step."""
    from shared.runtime import setup_from_config

    p = argparse.ArgumentParser(description=(doc or "A paper step.").splitlines()[0])
    p.add_argument("step", choices=sorted(steps))
    p.add_argument("--models", nargs="*", default=[], help="model checkpoints (.safetensors)")
    p.add_argument("--datasets", nargs="*", default=[], help="one dataset directory per model")
    p.add_argument("--methods", nargs="*", default=[])
    p.add_argument("--maps-dir", default="data/maps")
    p.add_argument("--maps", nargs="*", default=None, help="the map files the workflow computed for the step (the profile's method x model pairs)")
    p.add_argument("--out", nargs="+", required=True, metavar="NAME=PATH")
    p.add_argument("--config-json", required=True)
    args = p.parse_args(argv)
    if len(args.datasets) != len(args.models):
        p.error(f"give one dataset per model: {len(args.models)} models, {len(args.datasets)} datasets")
    cfg = json.loads(args.config_json)
    if "paper" not in cfg:
        # run by hand without the workflow's settings: the paper's config_schema defaults
        cfg["paper"] = _default_settings()
    device = setup_from_config(cfg)
    ctx = StepContext(
        step=args.step, models=list(args.models), datasets=list(args.datasets), methods=list(args.methods),
        maps_dir=Path(args.maps_dir), outputs=parse_outputs(args.out), config=cfg, device=device,
        planned_maps=frozenset(str(Path(m)) for m in args.maps) if args.maps is not None else None,
    )
    steps[args.step](ctx)
    return 0
