"""DAAM figures: the block-by-block flow for several test images (supervised and self-supervised).

    python -m papers.daam.figures flow --model data/models/vit.safetensors --dataset data/datasets/shapes \
        --out reports/daam/flow.png --config-json '{...}'
    python -m papers.daam.figures flow_ssl --model ... --dataset ... --out reports/daam/flow_ssl.png --config-json '{...}'

Rows: images (the first ``--n`` of the pipeline's evaluation subset); columns: the per-block maps
M_l, then the accumulated maps D_l shown with the authors' display mapping. The
self-supervised flow builds its k-NN memory bank from the dataset's training split.
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from papers.daam.method import DAAM, DAAMSelfSupervised, display_mapping  # noqa: E402
from shared.explain import upsample  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.pipeline.io import eval_batch  # noqa: E402
from shared.runtime import setup_from_config  # noqa: E402


def flow_figure(images: torch.Tensor, block_maps: torch.Tensor, accumulated: torch.Tensor, title: str):
    """A grid: per image, the input, M_1 … M_L, then D_1 … D_L (display-mapped)."""
    n, depth = block_maps.shape[:2]
    size = tuple(images.shape[-2:])
    shown_m = upsample(block_maps.flatten(0, 1), size).reshape(n, depth, *size)
    shown_d = upsample(display_mapping(accumulated).flatten(0, 1), size).reshape(n, depth, *size)
    fig, axes = plt.subplots(n, 1 + 2 * depth, figsize=(1.3 * (1 + 2 * depth), 1.35 * n), squeeze=False)
    for i in range(n):
        img = images[i].permute(1, 2, 0).cpu().numpy()
        axes[i, 0].imshow(img)
        for l in range(depth):
            for col, maps in ((1 + l, shown_m), (1 + depth + l, shown_d)):
                axes[i, col].imshow(img)
                axes[i, col].imshow(maps[i, l].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=float(maps[i, l].max()) or 1.0)
            if i == 0:
                axes[0, 1 + l].set_title(f"M{l + 1}", fontsize=8)
                axes[0, 1 + depth + l].set_title(f"D{l + 1}", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["flow", "flow_ssl"])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=6)
    p.add_argument("--config-json", required=True)
    args = p.parse_args(argv)
    cfg = json.loads(args.config_json)
    device = setup_from_config(cfg)
    batch = eval_batch(args.model, args.dataset, args.n, device)
    if args.kind == "flow":
        flow = DAAM(batch.adapter).flow(batch.images, batch.target)
        title = "DAAM (supervised): per-block maps M_l and accumulated maps D_l"
    else:
        flow = DAAMSelfSupervised(batch.adapter, dataset=args.dataset).flow(batch.images, None)
        title = "DAAM (self-supervised weights from a k-NN memory bank of class-token embeddings)"
    fig = flow_figure(batch.images, flow.block_maps, flow.accumulated, title)
    save_figure(fig, args.out)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
