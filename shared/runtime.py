"""Run-time settings shared by every step: device choice, seeding, determinism, autocast.

Every entry point calls :func:`setup` once before touching a model, so that pinned numbers are
reproducible: the same seed, thread count and deterministic kernels on every run.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

DEVICE_ENV = "SALIENCY_DEVICE"
"""Environment variable that overrides the configured device (``cpu``, ``cuda``, ``cuda:1``)."""

_VALID_DEVICES = ("auto", "cpu", "cuda")


def pick_device(requested: str | None = "auto") -> torch.device:
    """Return the device to run on.

    Order of precedence: the ``SALIENCY_DEVICE`` environment variable, then ``requested``
    (from the config). ``auto`` means CUDA when it is present, else CPU. Asking for CUDA on a
    machine without it is an error, not a silent fall-back: a pinned GPU number must not be
    recomputed on the CPU by accident.
    """
    choice = os.environ.get(DEVICE_ENV) or requested or "auto"
    base = choice.split(":", 1)[0]
    if base not in _VALID_DEVICES:
        raise ValueError(
            f"unknown device {choice!r} (from {DEVICE_ENV if os.environ.get(DEVICE_ENV) else 'config'}); "
            f"use one of {', '.join(_VALID_DEVICES)} (or cuda:N)"
        )
    if base == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {choice!r} was requested but CUDA is not available on this machine; "
            f"set device: auto or cpu in the config, or unset {DEVICE_ENV}"
        )
    return torch.device(choice)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_deterministic(enabled: bool = True) -> None:
    """Switch deterministic algorithms on or off.

    On CUDA, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before its first use to be
    deterministic; we set it here if the user has not. cuDNN benchmarking picks kernels by
    timing, so it is switched off.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def setup(
    seed: int = 0,
    device: str | None = "auto",
    threads: int | None = None,
    deterministic: bool = True,
) -> torch.device:
    """Apply the run-time settings of a config and return the device to use."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    set_deterministic(deterministic)
    seed_everything(seed)
    return pick_device(device)


def setup_from_config(config: dict[str, Any]) -> torch.device:
    """:func:`setup` with the top-level keys of a workflow config."""
    return setup(
        seed=int(config.get("seed", 0)),
        device=config.get("device", "auto"),
        threads=config.get("threads"),
        deterministic=bool(config.get("deterministic", True)),
    )


@contextlib.contextmanager
def autocast(device: torch.device | str, enabled: bool = False, dtype: torch.dtype | None = None) -> Iterator[None]:
    """Mixed precision, off by default: pinned numbers are computed in float32.

    Turn it on for speed on a GPU (``dtype`` defaults to bfloat16 on CUDA and CPU); maps
    computed this way are not comparable bit for bit with the pinned results.
    """
    device_type = torch.device(device).type
    if not enabled:
        yield
        return
    with torch.autocast(device_type=device_type, dtype=dtype or torch.bfloat16):
        yield


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A private, seeded torch generator (so that sampling does not depend on global state)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
