"""saliency-repro's shared code; :data:`REPO_ROOT` is the checkout it lives in."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the parent of ``shared/``): config/, papers/, reports/ are found from it."""
