"""NAFlow figure: the layer-by-layer flow on the plain CNN for several test images, beside Grad-CAM.

    python -m papers.naflow.figures flow --model data/models/plaincnn.safetensors \
        --dataset data/datasets/shapes --out reports/naflow/flow.png --config-json '{...}'

Rows: per image, NAFlow (top) and Grad-CAM at the same layers (bottom); columns: the conv
blocks' outputs from the last (where the flow starts) down to the first. Each map is min–max
normalised for display.
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from papers.naflow.method import GradCAMBlock, block_layers, naflow, plain_features  # noqa: E402
from shared.explain import normalize_maps, upsample  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.pipeline.io import eval_batch  # noqa: E402
from shared.runtime import setup_from_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["flow"])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--config-json", required=True)
    args = p.parse_args(argv)
    cfg = json.loads(args.config_json)
    device = setup_from_config(cfg)
    batch = eval_batch(args.model, args.dataset, args.n, device)
    adapter, images = batch.adapter, batch.images
    prefix, features = plain_features(adapter)
    blocks = block_layers(features, prefix)[::-1]  # top (flow start) to bottom
    result = naflow(adapter, images, batch.target)
    size = tuple(images.shape[-2:])
    rows = []
    for layer in blocks:
        k = result.layers.index(layer)
        nf = normalize_maps(upsample(result.maps[k], size))
        gc = normalize_maps(GradCAMBlock(adapter, layer=layer)(images, batch.target))
        rows.append((layer, nf, gc))
    n, cols = images.shape[0], len(blocks) + 1
    fig, axes = plt.subplots(2 * n, cols, figsize=(1.4 * cols, 1.4 * 2 * n), squeeze=False)
    for i in range(n):
        img = images[i].permute(1, 2, 0).cpu().numpy()
        for r, name in ((2 * i, "NAFlow"), (2 * i + 1, "Grad-CAM")):
            axes[r, 0].imshow(img)
            axes[r, 0].set_ylabel(name, fontsize=7)
            for j, (layer, nf, gc) in enumerate(rows):
                maps = nf if name == "NAFlow" else gc
                axes[r, j + 1].imshow(img)
                axes[r, j + 1].imshow(maps[i].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
                if r == 0:
                    axes[0, j + 1].set_title(f"block {len(blocks) - j}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("NAFlow (rows 1, 3, …) vs Grad-CAM at the same layers, from the last block down", fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.out)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
