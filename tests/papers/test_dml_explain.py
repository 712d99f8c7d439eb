"""Zhu et al.'s Grad-CAM on the similarity, point-to-point activation, overall and point-specific maps.

Independent references: the feature map of a 1×1-conv embedding model written down in NumPy;
the gradient of the similarity in closed form; D[u, v] by loops over position pairs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from papers.dml_explain.method import GradCAMSimilarity, OverallActivation, point_specific_maps, point_to_point
from papers.simnet.method import SimilarityMap
from shared.explain import ClassTarget, SimilarityTarget, get_method
from shared.explain.pair import PairTarget, explain_both_sides
from linear_embed import hand_feature_map, linear_embed_adapter, similarity
from shared.models.adapter import ModelAdapter


def adapter(metric: str, stem: bool = False) -> ModelAdapter:
    return linear_embed_adapter(metric, stem, seed=2, dim=4)


def loop_D(A_q: np.ndarray, A_r: np.ndarray, metric: str) -> np.ndarray:
    """D[u, v] pair by pair (positions row-major), as the authors' loops compute it."""
    e_q, e_r = A_q.reshape(A_q.shape[0], -1).T, A_r.reshape(A_r.shape[0], -1).T
    n, m = len(e_q), len(e_r)
    f_q, f_r = e_q.mean(axis=0), e_r.mean(axis=0)
    D = np.zeros((n, m))
    for u in range(n):
        for v in range(m):
            if metric == "cosine":
                D[u, v] = np.dot(e_q[u], e_r[v]) / (n * m * np.linalg.norm(f_q) * np.linalg.norm(f_r))
            else:
                D[u, v] = (2 * np.dot(e_q[u], e_r[v]) - np.dot(e_q[u], f_q) - np.dot(e_r[v], f_r)) / (n * m)
    return D


def loop_rectify(D: np.ndarray) -> np.ndarray:
    return np.maximum(D / D.max(), 0)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_point_to_point_matches_loops_and_sums_to_similarity(metric: str) -> None:
    ad = adapter(metric)
    q, r = torch.randn(2, 3, 3, 4), torch.randn(2, 3, 2, 5)  # different grids on the two sides
    A_q = torch.stack([torch.from_numpy(hand_feature_map(ad.model, x)) for x in q])
    A_r = torch.stack([torch.from_numpy(hand_feature_map(ad.model, x)) for x in r])
    D = point_to_point(A_q, A_r, metric)
    assert D.shape == (2, 12, 10)
    for i in range(2):
        expected = loop_D(A_q[i].numpy(), A_r[i].numpy(), metric)
        np.testing.assert_allclose(D[i].numpy(), expected, rtol=1e-10, atol=1e-12)
        s = similarity(A_q[i].numpy().mean(axis=(1, 2)), A_r[i].numpy().mean(axis=(1, 2)), metric)
        assert D[i].sum().item() == pytest.approx(s, rel=1e-10)  # Σ_{u,v} D = s exactly


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_overall_maps_on_both_sides_match_loops(metric: str) -> None:
    ad = adapter(metric)
    q, r = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    q_maps, r_maps = explain_both_sides(OverallActivation(ad), ad, q, r)
    for i in range(2):
        D = loop_rectify(loop_D(hand_feature_map(ad.model, q[i]), hand_feature_map(ad.model, r[i]), metric))
        np.testing.assert_allclose(q_maps[i].double().numpy(), D.sum(axis=1).reshape(4, 4), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r_maps[i].double().numpy(), D.sum(axis=0).reshape(4, 4), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_unrectified_overall_map_is_the_simnet_map_and_sums_to_similarity(metric: str) -> None:
    ad = adapter(metric)
    q, r = torch.randn(3, 3, 5, 5), torch.randn(3, 3, 5, 5)
    target = PairTarget.from_images(ad, r)
    raw = OverallActivation(ad, rectified=False)(q, target)
    torch.testing.assert_close(raw, SimilarityMap(ad)(q, target), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        s = target(ad(q))
    torch.testing.assert_close(raw.sum(dim=(1, 2)), s, rtol=1e-4, atol=1e-5)


def closed_form_gradient(f_q: np.ndarray, f_r: np.ndarray, metric: str) -> np.ndarray:
    """∂s/∂f_q: cosine f_r/(‖f_q‖‖f_r‖) − s f_q/‖f_q‖²; Euclidean −2(f_q − f_r)."""
    if metric == "cosine":
        nq, nr = np.linalg.norm(f_q), np.linalg.norm(f_r)
        return f_r / (nq * nr) - (f_q @ f_r) / (nq * nr) * f_q / nq**2
    return -2 * (f_q - f_r)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_gradcam_on_similarity_matches_closed_form(metric: str) -> None:
    ad = adapter(metric)
    q, r = torch.randn(2, 3, 4, 3), torch.randn(2, 3, 4, 3)
    maps = GradCAMSimilarity(ad)(q, PairTarget.from_images(ad, r)).double().numpy()
    for i in range(2):
        A_q, A_r = hand_feature_map(ad.model, q[i]), hand_feature_map(ad.model, r[i])
        n = A_q.shape[1] * A_q.shape[2]
        # ∂s/∂A_c(u) = (1/N) ∂s/∂f_c at every u, so the GAP of the gradient is (1/N) ∂s/∂f
        alpha = closed_form_gradient(A_q.mean(axis=(1, 2)), A_r.mean(axis=(1, 2)), metric) / n
        expected = np.maximum(np.einsum("c,cyx->yx", alpha, A_q), 0)
        np.testing.assert_allclose(maps[i], expected, rtol=1e-4, atol=1e-6)


def test_point_specific_map_interpolates_D_at_the_query_point() -> None:
    ad = adapter("cosine", stem=True)  # 8×8 images → 4×4 grids
    q, r = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    target = PairTarget.from_images(ad, r)
    # (y, x) pixels: a cell centre (row 1, col 2); the corner (edge value); between cells
    points = torch.tensor([[2.5, 4.5], [0.0, 0.0], [1.0, 3.0]])
    maps = point_specific_maps(ad, q, target, points)
    with torch.no_grad():
        A_q = ad.model.embed(ad.model.stem(q)).double()
        A_r = ad.model.embed(ad.model.stem(r)).double()
    # pixel p has centre p + 0.5; feature cell k (stride 2) has its centre at pixel 2k + 1
    rows = [
        loop_rectify(loop_D(A_q[0].numpy(), A_r[0].numpy(), "cosine"))[1 * 4 + 2],
        loop_rectify(loop_D(A_q[1].numpy(), A_r[1].numpy(), "cosine"))[0],
    ]
    D2 = loop_rectify(loop_D(A_q[2].numpy(), A_r[2].numpy(), "cosine"))
    # y = 1 → grid 0.25 between rows 0 and 1; x = 3 → grid 1.25 between cols 1 and 2
    wy, wx = (0.75, 0.25), (0.75, 0.25)
    rows.append(sum(wy[a] * wx[b] * D2[a * 4 + 1 + b] for a in range(2) for b in range(2)))
    for i in range(3):
        expected = F.interpolate(torch.from_numpy(rows[i]).view(1, 1, 4, 4), size=(8, 8), mode="bilinear", align_corners=False)
        np.testing.assert_allclose(maps[i].double().numpy(), expected[0, 0].numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["gradcam_similarity", "dml_overall"])
def test_batched_equals_per_image(name: str) -> None:
    ad = adapter("euclidean", stem=True)
    q, r = torch.rand(4, 3, 12, 12), torch.rand(4, 3, 12, 12)
    explainer = get_method(name).build(ad)
    batched = explainer(q, PairTarget.from_images(ad, r))
    for i in range(4):
        one = explainer(q[i : i + 1], PairTarget.from_images(ad, r[i : i + 1]))
        torch.testing.assert_close(batched[i : i + 1], one, rtol=1e-5, atol=1e-6)


def test_pair_target_subset_keeps_images_and_embeddings_together() -> None:
    ad = adapter("euclidean", stem=True)
    q, r = torch.rand(5, 3, 8, 8), torch.rand(5, 3, 8, 8)
    target = PairTarget.from_images(ad, r)
    idx = torch.tensor([3, 1])
    part = target.subset(idx)
    assert isinstance(part, PairTarget) and part.metric == "euclidean"
    torch.testing.assert_close(part.reference_images, r[idx])
    torch.testing.assert_close(part.reference, target.reference[idx])
    torch.testing.assert_close(OverallActivation(ad)(q[idx], part), OverallActivation(ad)(q, target)[idx])


def test_clear_errors_where_undefined() -> None:
    ad = adapter("cosine")
    images = torch.rand(2, 3, 4, 4)
    with torch.no_grad():
        plain = SimilarityTarget(ad(images), "cosine")
    with pytest.raises(TypeError, match="PairTarget"):
        OverallActivation(ad)(images, plain)  # the decomposition needs the reference's feature map
    with pytest.raises(TypeError, match="ClassTarget explains a classifier"):
        GradCAMSimilarity(ad)(images, ClassTarget([0, 1]))
    with pytest.raises(ValueError, match=r"points must be \(B, 2\)"):
        point_specific_maps(ad, images, PairTarget.from_images(ad, images), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="differ in size"):
        OverallActivation(ad)(images, PairTarget.from_images(ad, torch.rand(2, 3, 6, 6)))


# ---------------------------------------------------------------- the steps (shared.steps.retrieval, point_specific)


def _embed_step(tmp_path, step: str, methods: list[str]):
    """A StepContext over two in-memory embedding models (cosine, Euclidean) and 5 eval images."""
    from types import SimpleNamespace

    from shared.figure_step import StepContext
    from shared.pipeline.io import EvalBatch, positive_references

    labels = torch.tensor([0, 1, 0, 1, 2])
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    boxes = torch.tensor([[1, 1, 5, 5], [0, 2, 4, 8], [2, 2, 8, 6], [3, 0, 7, 4], [0, 0, 8, 8]])
    ctx = StepContext(
        step=step, models=["data/models/a.safetensors", "data/models/b.safetensors"], datasets=["x", "x"], methods=methods,
        maps_dir=tmp_path / "maps", outputs={"figure": str(tmp_path / f"{step}.png")}, config={"eval": {"n_images": 5}},
        device=torch.device("cpu"),
    )
    for i, metric in enumerate(["cosine", "euclidean"]):
        ad = adapter(metric, stem=True)
        ref = positive_references(labels)
        split = SimpleNamespace(labels=labels, boxes=boxes)
        ctx._batches[i] = EvalBatch(ad, split, x, PairTarget.from_images(ad, x[ref]), ref, x[ref], "toy")
    return ctx


def test_retrieval_step_writes_its_figure(tmp_path) -> None:
    from shared.steps.retrieval import STEPS

    ctx = _embed_step(tmp_path, "retrieval", ["sfam", "gradcam_similarity", "simnet", "dml_overall"])
    STEPS["retrieval"](ctx)
    assert (tmp_path / "retrieval.png").stat().st_size > 0


def test_retrieval_step_imports_no_paper() -> None:
    """Shared by three papers: it builds methods by name, never imports a paper's module."""
    import ast
    import inspect

    import shared.steps.retrieval as module

    tree = ast.parse(inspect.getsource(module))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.split(".")[0] == "papers"]


def test_point_specific_step_writes_its_figure(tmp_path) -> None:
    from papers.dml_explain.figures import STEPS

    ctx = _embed_step(tmp_path, "point_specific", [])
    STEPS["point_specific"](ctx)
    assert (tmp_path / "point_specific.png").stat().st_size > 0
