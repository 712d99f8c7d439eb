"""Evaluation metrics shared by every paper: faithfulness (with ROAD), localisation, complexity,
robustness, sanity and randomisation, class sensitivity, agreement between methods, the
definition variants of :mod:`.definitions`, and bootstrap statistics over images.

All metrics take batched torch tensors on any device and return per-image values (B,)
unless their docstring says otherwise; each docstring cites its source and the definition.
"""

from .agreement import kendall_tau_b, spearman, top_k_overlap
from .bootstrap import BootstrapCI, PairedComparison, bootstrap_ci, bootstrap_max_of_means, paired_comparison
from .class_sensitivity import ClassSensitivity, class_sensitivity
from .complexity import complexity, effective_complexity, sparseness
from .faithfulness import (
    CurveResult,
    DropIncrease,
    average_drop_increase,
    average_gain,
    deletion,
    insertion,
    keep_top_fraction,
    masked_images,
    normalised_minimum,
    perturbation_curve_reference,
    rise_substrate,
    scores_in_chunks,
)
from .localisation import (
    MaxBoxAcc,
    MaxBoxAccV2,
    attribution_localisation,
    cam_localisation,
    energy_pointing_game,
    localisation_auc,
    max_box_accuracy,
    max_box_accuracy_v2,
    pointing_game,
    pointing_hits,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from .randomisation import EfficientMPRT, discrete_entropy, efficient_mprt, independent_randomisation, smooth_mprt, smoothed_explain
from .road import ROADResult, noisy_linear_imputation, road
from .robustness import ExplainFn, avg_sensitivity, local_lipschitz_estimate, max_sensitivity
from .sanity import RandomisationStep, cascading_randomisation, reinitialise
from .ssim import ssim

__all__ = [
    "BootstrapCI",
    "ClassSensitivity",
    "CurveResult",
    "DropIncrease",
    "EfficientMPRT",
    "ExplainFn",
    "MaxBoxAcc",
    "MaxBoxAccV2",
    "PairedComparison",
    "ROADResult",
    "RandomisationStep",
    "attribution_localisation",
    "average_drop_increase",
    "average_gain",
    "avg_sensitivity",
    "bootstrap_ci",
    "bootstrap_max_of_means",
    "cam_localisation",
    "cascading_randomisation",
    "class_sensitivity",
    "complexity",
    "deletion",
    "discrete_entropy",
    "effective_complexity",
    "efficient_mprt",
    "energy_pointing_game",
    "independent_randomisation",
    "insertion",
    "keep_top_fraction",
    "kendall_tau_b",
    "local_lipschitz_estimate",
    "localisation_auc",
    "masked_images",
    "max_box_accuracy",
    "max_box_accuracy_v2",
    "max_sensitivity",
    "normalised_minimum",
    "paired_comparison",
    "perturbation_curve_reference",
    "pointing_game",
    "pointing_hits",
    "noisy_linear_imputation",
    "reinitialise",
    "road",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "rise_substrate",
    "scores_in_chunks",
    "smooth_mprt",
    "smoothed_explain",
    "sparseness",
    "spearman",
    "ssim",
    "top_k_intersection",
    "top_k_overlap",
]
