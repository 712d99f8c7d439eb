"""Result records with provenance: every number in ``reports/`` says where it came from.

A :class:`ResultRecord` is one metric of one method on one model and dataset: the value, its
bootstrap CI over images, n, and the provenance (git commit, ``uv.lock`` and ``data.dvc``
hashes, config hash, seed, device, torch version; for a number computed from a scores file, the
checkpoint's and the dataset's own hashes). JSON output has sorted keys and rounded
floats so that reports diff cleanly in review.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from shared import REPO_ROOT
from shared.atomic import write_text

FLOAT_DIGITS = 6
"""Significant digits kept when writing floats (diff-friendly, beyond any metric's precision)."""


def round_floats(obj: Any, digits: int = FLOAT_DIGITS) -> Any:
    """Round every float in a JSON-like structure to ``digits`` significant digits.

    NaN and infinities become ``None`` (JSON has no NaN); ints and bools are left alone.
    """
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {str(k): round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, digits) for v in obj]
    if type(obj).__module__ == "torch" and hasattr(obj, "tolist"):  # a tensor; torch is not imported here
        return round_floats(obj.tolist(), digits)
    raise TypeError(f"cannot write a {type(obj).__name__} to a result record")


def dumps(obj: Any) -> str:
    """Stable JSON: sorted keys, 2-space indent, rounded floats, trailing newline."""
    return json.dumps(round_floats(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"


def sha256_file(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it does not exist."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None


def config_hash(config: Any) -> str:
    """SHA-256 of the config's canonical JSON (sorted keys, compact), so key order does not matter:
    part of every result's provenance."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@dataclass(frozen=True)
class Provenance:
    """Where a number came from. Missing pieces are ``None`` (``null`` in JSON), never a crash.

    ``data_dvc_sha256`` is the SHA-256 of the ``data.dvc`` *file* in the tree when the number was
    computed: it names the DVC snapshot last published before then, not the bytes the step read
    (``data/`` may have changed since that publish). ``model_weights_sha256`` (the checkpoint's
    weights, as its sidecar records and loading checks) and ``dataset_content_hash`` (the
    dataset's ``meta.json`` ``content_hash``: its tables and images) name the data the scoring
    step did read; they are set on records made from a scores file (shared.pipeline.results) that
    carries them, and left out of the JSON otherwise (records written before they existed load).
    """

    git_commit: str | None = None
    git_dirty: bool | None = None
    uv_lock_sha256: str | None = None
    data_dvc_sha256: str | None = None
    config_sha256: str | None = None
    seed: int | None = None
    device: str | None = None
    torch_version: str | None = None
    model_weights_sha256: str | None = None
    dataset_content_hash: str | None = None


OPTIONAL_PROVENANCE = ("model_weights_sha256", "dataset_content_hash")
"""Provenance fields written only when known: records and reports without them stay as they were."""


def provenance_dict(prov: Provenance) -> dict[str, Any]:
    """``prov`` as JSON-ready dict, without the :data:`OPTIONAL_PROVENANCE` fields that are None."""
    out = asdict(prov)
    for name in OPTIONAL_PROVENANCE:
        if out.get(name) is None:
            out.pop(name, None)
    return out


def _torch_version() -> str | None:
    # imported here, not at the top: the light steps (tables, claims) never need torch
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def provenance(config: Any, seed: int | None = None, device: str | None = None, root: Path | str | None = None) -> dict[str, Any]:
    """Provenance of a run with ``config``, read from the repository at ``root`` (default: this repo).

    ``seed`` defaults to ``config["seed"]`` and ``device`` to ``config["device"]`` when present.
    ``git_dirty`` is True when tracked files differ from the commit (the number may not be
    reproducible from the commit alone). ``reports/`` is left out of that check: it holds the
    workflow's outputs, which a rerun rewrites while it runs, not its inputs.
    """
    root = Path(root) if root is not None else REPO_ROOT
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports") if commit else None
    if seed is None and isinstance(config, dict) and config.get("seed") is not None:
        seed = int(config["seed"])
    if device is None and isinstance(config, dict) and config.get("device") is not None:
        device = str(config["device"])
    return provenance_dict(
        Provenance(
            git_commit=commit,
            git_dirty=None if commit is None else bool(status),
            uv_lock_sha256=sha256_file(root / "uv.lock"),
            data_dvc_sha256=sha256_file(root / "data.dvc"),
            config_sha256=config_hash(config),
            seed=seed,
            device=device,
            torch_version=_torch_version(),
        )
    )


@dataclass(frozen=True)
class ResultRecord:
    """One metric of one method on one model and dataset, with its CI over images and provenance."""

    metric: str
    method: str
    model: str
    dataset: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    provenance: Provenance = field(default_factory=Provenance)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return round_floats({**asdict(self), "provenance": provenance_dict(self.provenance)})

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRecord:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown result record keys {sorted(unknown)}; expected {sorted(known)}")
        missing = {"metric", "method", "model", "dataset", "value", "n"} - set(data)
        if missing:
            raise ValueError(f"result record lacks {sorted(missing)}")
        prov = dict(data.get("provenance") or {})
        prov_known = {f.name for f in fields(Provenance)}
        if set(prov) - prov_known:
            raise ValueError(f"unknown provenance keys {sorted(set(prov) - prov_known)}")
        value = data["value"]
        return cls(
            metric=data["metric"],
            method=data["method"],
            model=data["model"],
            dataset=data["dataset"],
            value=float("nan") if value is None else float(value),
            ci_low=None if data.get("ci_low") is None else float(data["ci_low"]),
            ci_high=None if data.get("ci_high") is None else float(data["ci_high"]),
            n=int(data["n"]),
            provenance=Provenance(**prov),
            extra=dict(data.get("extra") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> ResultRecord:
        return cls.from_dict(json.loads(text))


def record_from_values(
    values: Any,
    *,
    metric: str,
    method: str,
    model: str,
    dataset: str,
    provenance: dict[str, Any] | Provenance | None = None,
    n_resamples: int = 10_000,
    ci: float = 0.95,
    seed: int = 0,
) -> ResultRecord:
    """A record for the mean of per-image ``values`` with its percentile bootstrap CI."""
    from shared.metrics.bootstrap import bootstrap_ci

    interval = bootstrap_ci(values, n_resamples=n_resamples, ci=ci, seed=seed)
    prov = provenance if isinstance(provenance, Provenance) else Provenance(**(provenance or {}))
    return ResultRecord(
        metric=metric,
        method=method,
        model=model,
        dataset=dataset,
        value=interval.value,
        ci_low=interval.low,
        ci_high=interval.high,
        n=interval.n,
        provenance=prov,
        extra={"ci": ci, "n_resamples": n_resamples, "bootstrap_seed": seed},
    )


def result_key(r: ResultRecord) -> str:
    """The key a claim or `repro cite --result` uses: dataset/model/method/metric."""
    return f"{r.dataset}/{r.model}/{r.method}/{r.metric}"


def write_records(records: list[ResultRecord], path: Path | str) -> None:
    """Write records as a JSON list sorted by (metric, method, model, dataset)."""
    ordered = sorted(records, key=lambda r: (r.metric, r.method, r.model, r.dataset))
    text = dumps([r.to_dict() for r in ordered])
    write_text(path, text)


def read_records(path: Path | str) -> list[ResultRecord]:
    """Read a list of records written by :func:`write_records`."""
    return [ResultRecord.from_dict(d) for d in json.loads(Path(path).read_text())]
