"""Figure style (issue 20, finding 13): every saliency heat map in one perceptually uniform
colour map (``shared.plotting.HEATMAP_CMAP``) with a colour bar on every map grid; row labels
and titles that are not drawn over another panel; labelled sanity columns and rows; fonts of at
least 8 pt and one shared legend in the FGSM figure; the leaderboard's deletion / insertion on one
axis per model. Built from tiny fake inputs (no model, no data)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace as NS

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402

from shared.plotting import COLORBAR_LABEL, HEATMAP_CMAP, show  # noqa: E402
from shared.results import ResultRecord  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UNIFORM = {"viridis", "inferno", "magma", "plasma", "cividis"}
CLASSES = ["crescent", "heart", "square", "triangle"]


def _images(n: int, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(n))


def _maps(n: int, seed: int, size: int = 16) -> torch.Tensor:
    return torch.rand(n, size, size, generator=torch.Generator().manual_seed(100 + seed))


def _batch(name: str, kind: str = "cnn", n: int = 3):
    masks = torch.zeros(n, 16, 16, dtype=torch.bool)
    masks[:, 4:10, 4:10] = True
    split = NS(class_names=[CLASSES[i % 4] for i in range(n)], masks=masks, boxes=torch.tensor([[4, 4, 10, 10]] * n))
    return NS(adapter=NS(name=name, kind=kind, task="classifier"), images=_images(n), split=split)


def _colour_bars(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def _panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def _assert_labels_clear(fig) -> None:
    """No panel's title or y label (a row label) overlaps another panel's box, nor its own."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = _panels(fig)
    boxes = [ax.get_window_extent(renderer) for ax in panels]
    for ax in panels:
        for text in (ax.title, ax.yaxis.label):
            if not text.get_text() or not text.get_visible():
                continue
            tb = text.get_window_extent(renderer).padded(-0.5)
            hit = [other for other, box in zip(panels, boxes) if tb.overlaps(box)]
            assert not hit, f"{text.get_text()!r} is drawn over {len(hit)} panel(s)"


def _assert_map_grid(fig, n_maps: int) -> None:
    """One colour bar, labelled, in the shared colour map; every heat map drawn in it on [0, 1]."""
    (bar,) = _colour_bars(fig)
    assert bar.get_ylabel() == COLORBAR_LABEL
    assert {c.get_cmap().name for c in bar.collections if isinstance(c, QuadMesh)} == {HEATMAP_CMAP}  # its colour ramp
    heat = [im for ax in _panels(fig) for im in ax.images if im.get_array().ndim == 2]
    assert len(heat) == n_maps
    assert {im.get_cmap().name for im in heat} == {HEATMAP_CMAP}
    assert {(im.norm.vmin, im.norm.vmax) for im in heat} == {(0.0, 1.0)}
    assert not [t for t in _texts(fig) if t.lower().startswith("title:")]


# ---------------------------------------------------------------- the colour map


def test_heat_maps_use_one_perceptually_uniform_colour_map():
    assert HEATMAP_CMAP in UNIFORM
    fig, ax = plt.subplots()
    show(ax, _images(1)[0], _maps(1, 0)[0])
    assert ax.images[-1].get_cmap().name == HEATMAP_CMAP
    plt.close(fig)


def test_no_rainbow_colour_map_in_the_code():
    pattern = re.compile(r"""["'](jet|rainbow|gist_rainbow|hsv|nipy_spectral)["']""")
    found = [
        f"{path.relative_to(ROOT)}:{i}"
        for folder in ("shared", "papers")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not found, f"a rainbow colour map (use shared.plotting.HEATMAP_CMAP): {found}"


# ---------------------------------------------------------------- map grids


def test_qualitative_grid_has_a_colour_bar_and_row_labels_beside_the_rows():
    from shared.steps.maps_grid import qualitative_figure

    methods = ["gradcam", "guided_gradcam"]
    batches = [_batch("resnet"), _batch("vit", "vit")]
    maps = {("resnet", "gradcam"): _maps(3, 0), ("resnet", "guided_gradcam"): _maps(3, 1), ("vit", "gradcam"): _maps(3, 2)}
    fig = qualitative_figure(batches, methods, maps, n_show=2)
    _assert_map_grid(fig, n_maps=2 * 2 + 2)
    first_column = [ax.get_ylabel() for ax in _panels(fig)[:: len(methods) + 1]]
    assert first_column == ["resnet\ncrescent", "resnet\nheart", "vit\ncrescent", "vit\nheart"]
    _assert_labels_clear(fig)
    plt.close(fig)


def test_layers_grid_labels_its_rows_beside_them():
    from papers.normgrad.figures import layers_figure

    batch = _batch("resnet", n=4)
    fig = layers_figure(batch, {"gradcam_b1": _maps(4, 0), "normgrad_b1": _maps(4, 1)}, n_show=3)
    _assert_map_grid(fig, n_maps=2 * 3)
    assert [ax.get_ylabel() for ax in _panels(fig)[::3]] == CLASSES[:3]
    _assert_labels_clear(fig)
    plt.close(fig)


def test_pairs_grid_title_and_labels():
    from papers.gradcam.figures import pairs_figure

    n = 4
    pairs = {
        "labels": torch.arange(n), "partner": torch.tensor([1, 0, 3, 2]), "images": _images(n),
        "class_names": ["heart", "circle", "crescent", "cross"],
    }
    methods = ["gradcam", "eigencam"]
    maps = {m: _maps(n, k) for k, m in enumerate(methods)}
    shares = {m: (torch.full((n,), 0.5), torch.full((n,), 0.25)) for m in methods}
    fig = pairs_figure(NS(name="resnet"), pairs, maps, shares, methods)
    _assert_map_grid(fig, n_maps=2 * 2 * len(methods))
    assert fig._suptitle is not None and not fig._suptitle.get_text().startswith("title")
    assert [ax.get_ylabel() for ax in _panels(fig)[:: 1 + 2 * len(methods)]] == ["heart + circle", "crescent + cross"]
    _assert_labels_clear(fig)
    plt.close(fig)


def test_sanity_maps_label_their_columns_and_rows():
    from papers.gradcam.figures import sanity_figure
    from shared.metrics import RandomisationStep

    layers, methods, n = ["model.fc", "model.layer4", "model.conv1"], ["gradcam", "eigencam"], 4
    curves = {}
    for k, m in enumerate(methods):
        steps = [
            RandomisationStep(layer, tuple(layers[: j + 1]), torch.full((n,), 0.5), torch.full((n,), 0.5), torch.full((n,), 0.4), _maps(n, j + k))
            for j, layer in enumerate(layers)
        ]
        curves[m] = (_maps(n, 10 + k), steps)
    fig = sanity_figure(NS(name="resnet"), _images(n), layers, curves, 0.95, 20, 0)
    _assert_map_grid(fig, n_maps=len(methods) * (1 + len(layers)))
    grid = [ax for ax in _panels(fig) if ax.images]
    columns = 1 + len(layers)
    assert [ax.get_title() for ax in grid[:columns]] == ["original", "fc", "layer4", "conv1"]
    assert [ax.get_ylabel() for ax in grid[::columns]] == methods
    _assert_labels_clear(fig)
    plt.close(fig)


def test_flow_grids_have_a_colour_bar():
    from papers.daam.figures import flow_figure as daam_flow
    from papers.naflow.figures import flow_figure as naflow_flow

    n, depth = 2, 3
    fig = daam_flow(_images(n), torch.rand(n, depth, 4, 4), torch.rand(n, depth, 4, 4), "DAAM")
    _assert_map_grid(fig, n_maps=n * 2 * depth)
    plt.close(fig)
    rows = [(k, _maps(n, k), _maps(n, 10 + k)) for k in (2, 1)]
    fig = naflow_flow(_images(n), rows, n)
    _assert_map_grid(fig, n_maps=2 * n * len(rows))
    _assert_labels_clear(fig)
    plt.close(fig)


# ---------------------------------------------------------------- line and point plots


def test_adversarial_figure_fonts_and_one_shared_legend():
    from papers.eigencam.figures import adversarial_figure

    eps, methods = [0, 2, 8], ["eigencam", "gradcam"]
    records, runs = {}, {}
    for model in ("resnet", "plaincnn"):
        runs[model] = {m: None for m in methods}
        for e in eps:
            records[(model, "classifier", f"accuracy_fgsm{e}")] = ResultRecord(f"accuracy_fgsm{e}", "classifier", model, "d", 0.9, 0.8, 1.0, 4, extra={"ci": 0.95})
            for m in methods:
                for metric in ("wsol_fixed", "pointing_game"):
                    records[(model, m, f"{metric}_fgsm{e}")] = ResultRecord(f"{metric}_fgsm{e}", m, model, "d", 0.5, 0.4, 0.6, 4, extra={"ci": 0.95})
    fig = adversarial_figure(runs, eps, records)
    fig.canvas.draw()
    sizes = {t.get_text(): t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text() and t.get_visible()}
    assert min(sizes.values()) >= 8, {k: v for k, v in sizes.items() if v < 8}
    assert not [ax for ax in fig.axes if ax.get_legend() is not None]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [*methods, "classifier accuracy"]
    plt.close(fig)


def _leaderboard_records() -> list[ResultRecord]:
    values = {"resnet": (0.2, 0.9), "embed_euclidean": (-12.0, -1.4)}
    out = []
    for model, (deletion, insertion) in values.items():
        for method in ("gradcam", "eigencam"):
            out.append(ResultRecord("deletion", method, model, "d", deletion, deletion - 0.05, deletion + 0.05, 8))
            out.append(ResultRecord("insertion", method, model, "d", insertion, insertion - 0.05, insertion + 0.05, 8))
            out.append(ResultRecord("pointing_game", method, model, "d", 0.7, 0.6, 0.8, 8))
    out.append(ResultRecord("average_drop", "gradcam", "resnet", "d", 0.3, 0.2, 0.4, 8))  # a classifier's metric
    return out


@pytest.mark.parametrize("scores", [None, {"embed_euclidean": "similarity −‖f − r‖²"}])
def test_leaderboard_deletion_and_insertion_on_one_axis_per_model(tmp_path, monkeypatch, scores):
    from shared.pipeline import leaderboard

    figures = []
    monkeypatch.setattr(leaderboard, "save_figure", lambda fig, path: figures.append(fig))
    leaderboard.leaderboard_figure(_leaderboard_records(), ["deletion", "insertion", "pointing_game"], tmp_path / "lb.png", scores)
    (fig,) = figures
    by_label = {ax.get_label(): ax for ax in fig.axes}
    for metric in ("deletion", "insertion"):
        resnet, euclidean = by_label[f"{metric}/resnet"], by_label[f"{metric}/embed_euclidean"]
        assert not resnet.get_shared_x_axes().joined(resnet, euclidean)
        assert resnet.get_xlim()[0] > -1 and euclidean.get_xlim()[1] < -1  # neither squashed by the other
        assert resnet.get_xlabel() == "AUC of class probability"
        expected = (scores or {}).get("embed_euclidean", "similarity to the reference")
        assert euclidean.get_xlabel() == f"AUC of {expected}"
    assert "pointing_game" in by_label  # the [0, 1] metrics keep one panel, one colour per model
    plt.close(fig)


def test_score_label_names_what_deletion_and_insertion_integrate():
    from shared.pipeline.score import score_label

    assert score_label(NS(adapter=NS(task="classifier", metric=None))) == "class probability"
    assert score_label(NS(adapter=NS(task="embedding", metric="cosine"))) == "cosine similarity"
    assert score_label(NS(adapter=NS(task="embedding", metric="euclidean"))) == "similarity −‖f − r‖²"
