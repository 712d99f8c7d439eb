"""Datasets: synthetic generators with ground truth, the on-disk layout and its loaders,
and fetchers for the real datasets (see docs/ARCHITECTURE.md)."""

from shared.data.layout import DatasetError, content_hash, read_meta, read_table
from shared.data.loader import ImageTable, SplitTensors, load_split

__all__ = ["DatasetError", "ImageTable", "SplitTensors", "content_hash", "load_split", "read_meta", "read_table"]
