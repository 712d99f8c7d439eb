"""The explanation core: capture, targets, the Explainer base class, upsampling, registry."""

from shared.explain.base import CAMExplainer, Explainer, LayerSignals, check_images, frozen, layer_signals
from shared.explain.capture import Capture, capture
from shared.explain.registry import build_explainer, get_method, register_method
from shared.explain.targets import ClassTarget, SimilarityTarget, Target
from shared.explain.upsample import normalize_maps, upsample

__all__ = [
    "CAMExplainer",
    "Capture",
    "ClassTarget",
    "Explainer",
    "LayerSignals",
    "SimilarityTarget",
    "Target",
    "build_explainer",
    "capture",
    "check_images",
    "frozen",
    "get_method",
    "layer_signals",
    "normalize_maps",
    "register_method",
    "upsample",
]
