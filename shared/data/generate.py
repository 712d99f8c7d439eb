"""Generate a synthetic dataset into the common layout (called by the ``dataset`` rule).

    python -m shared.data.generate --name shapes --out data/datasets/shapes \
        --config-json '{"image_size": 64, "n_classes": 8, "n_train": 2400, "n_test": 400, "seed": 11}'

The JSON is ``{"image_size": datasets.image_size, **datasets[name]}``. The dataset is built in
a temporary directory and renamed into place only after it validated, so an error leaves
nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from shared.data.layout import DatasetWriter
from shared.data.synthetic import SPECS, SYNTHETIC_NAMES


def generate(name: str, cfg: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """Generate synthetic dataset ``name`` from its config into ``out``; return ``out``.

    Raises ``ConfigError`` for an impossible config and ``DatasetError`` when the generated
    data breaks an invariant (empty mask, box not the mask's extent, unbalanced classes).
    """
    if name not in SPECS:
        raise ValueError(f"unknown synthetic dataset {name!r}; choose one of {', '.join(SYNTHETIC_NAMES)}")
    spec = SPECS[name](cfg)
    side = int(cfg["image_size"])
    with DatasetWriter(
        out,
        name=name,
        source="synthetic",
        classes=spec.classes,
        image_size=(side, side),
        class_split_column=spec.class_split_column,
        extra_meta=spec.extra_meta,
    ) as writer:
        for split, image_id, image, objects in spec.samples:
            writer.add_image(split, image_id, image, objects)
        for split, tolerance in spec.balance_tolerance.items():
            writer.check_balance(split, tolerance)
        return writer.commit()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, choices=SYNTHETIC_NAMES)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--config-json", required=True, help="{'image_size': ..., **datasets[name]}")
    args = parser.parse_args(argv)
    try:
        cfg = json.loads(args.config_json)
    except json.JSONDecodeError as err:
        parser.error(f"--config-json is not valid JSON ({err}): {args.config_json!r}")
    start = time.perf_counter()
    try:
        out = generate(args.name, cfg, args.out)
    except ValueError as err:
        print(f"error: {args.name}: {err}", file=sys.stderr)
        return 1
    print(f"{args.name}: wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
