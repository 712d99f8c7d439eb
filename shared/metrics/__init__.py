"""Evaluation metrics shared by every paper: faithfulness, localisation, sanity, class
sensitivity, agreement between methods, and bootstrap statistics over images.

All metrics take batched torch tensors on any device and return per-image values (B,)
unless their docstring says otherwise; each docstring cites its source and the definition.
"""

from .agreement import kendall_tau_b, spearman, top_k_overlap
from .bootstrap import BootstrapCI, PairedComparison, bootstrap_ci, bootstrap_max_of_means, paired_comparison
from .class_sensitivity import ClassSensitivity, class_sensitivity
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
    cam_localisation,
    energy_pointing_game,
    max_box_accuracy,
    pointing_game,
    pointing_hits,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from .sanity import RandomisationStep, cascading_randomisation, reinitialise
from .ssim import ssim

__all__ = [
    "BootstrapCI",
    "ClassSensitivity",
    "CurveResult",
    "DropIncrease",
    "MaxBoxAcc",
    "PairedComparison",
    "RandomisationStep",
    "average_drop_increase",
    "average_gain",
    "bootstrap_ci",
    "bootstrap_max_of_means",
    "cam_localisation",
    "cascading_randomisation",
    "class_sensitivity",
    "deletion",
    "energy_pointing_game",
    "insertion",
    "keep_top_fraction",
    "masked_images",
    "normalised_minimum",
    "kendall_tau_b",
    "max_box_accuracy",
    "paired_comparison",
    "perturbation_curve_reference",
    "pointing_game",
    "pointing_hits",
    "reinitialise",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "rise_substrate",
    "scores_in_chunks",
    "spearman",
    "ssim",
    "top_k_overlap",
]
