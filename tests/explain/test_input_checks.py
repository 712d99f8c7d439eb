"""Bad input to an explainer gets a clear error that says what is wrong and how to fix it."""

from __future__ import annotations

import pytest
import torch

from shared.explain import ClassTarget, SimilarityTarget, build_explainer
from shared.explain.pair import PairTarget
from shared.models import build_adapter

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return build_adapter("resnet", {"arch": "resnet_small", "task": "classifier"}, CLASSES).explain_mode()


@pytest.fixture(scope="module")
def embedding():
    torch.manual_seed(0)
    cfg = {"arch": "resnet_small", "task": "embedding", "metric": "cosine", "embedding_dim": 8}
    return build_adapter("embed", cfg).explain_mode()


def test_empty_batch(classifier):
    with pytest.raises(ValueError, match="empty batch"):
        build_explainer("gradcam", classifier)(torch.rand(0, 3, 32, 32), ClassTarget([]))


def test_images_in_0_255(classifier):
    with pytest.raises(ValueError, match="divide 0-255 images by 255"):
        build_explainer("gradcam", classifier)(torch.rand(2, 3, 32, 32) * 255, ClassTarget([0, 1]))


def test_float64_images_on_a_float32_model(classifier):
    with pytest.raises(TypeError, match=r"float64.*float32.*images.to"):
        build_explainer("gradcam", classifier)(torch.rand(2, 3, 32, 32, dtype=torch.float64), ClassTarget([0, 1]))


def test_nan_reference_embeddings():
    with pytest.raises(ValueError, match="NaN"):
        SimilarityTarget(torch.tensor([[0.0, float("nan")]]), "cosine")


@pytest.mark.parametrize("method", ["sfam", "simnet", "gradcam"])
def test_wrong_number_of_references(embedding, method):
    images = torch.rand(3, 3, 32, 32)
    target = PairTarget.from_images(embedding, torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="2 targets for 3 images"):
        build_explainer(method, embedding)(images, target)


def test_class_target_on_an_embedding_model(embedding):
    with pytest.raises(TypeError, match="SimilarityTarget"):
        build_explainer("gradcam", embedding)(torch.rand(2, 3, 32, 32), ClassTarget([0, 1]))


def test_euclidean_target_on_a_cosine_model(embedding):
    refs = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        target = SimilarityTarget(embedding(refs), "euclidean")
    with pytest.raises(ValueError, match="trained for cosine"):
        build_explainer("gradcam", embedding)(torch.rand(2, 3, 32, 32), target)


def test_similarity_target_on_a_classifier(classifier):
    with pytest.raises(TypeError, match="ClassTarget"):
        build_explainer("gradcam", classifier)(torch.rand(2, 3, 32, 32), SimilarityTarget(torch.rand(2, 3), "cosine"))
