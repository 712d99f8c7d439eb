"""Benchmarks: a registry of timed comparisons written to ``reports/bench.json``.

``@register_benchmark("name")`` registers a function ``fn(quick: bool) -> dict`` returning its
figures (times in seconds, speed-ups, error bounds). :func:`run_benchmarks` runs some or all
of them and merges their entries into the JSON file, so later work adds entries without
losing earlier ones. Each entry records the machine it ran on; no dates (the file stays
diffable). ``repro bench`` calls :func:`run_benchmarks`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from shared import REPO_ROOT
from shared.atomic import write_text
from shared.models.adapter import ModelAdapter
from shared.results import dumps

BenchmarkFn = Callable[[bool], dict[str, Any]]
_REGISTRY: dict[str, BenchmarkFn] = {}


def register_benchmark(name: str) -> Callable[[BenchmarkFn], BenchmarkFn]:
    """Register ``fn(quick: bool) -> dict of figures`` under ``name`` (unique)."""

    def decorator(fn: BenchmarkFn) -> BenchmarkFn:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"benchmark {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_benchmarks() -> list[str]:
    return sorted(_REGISTRY)


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """The machine a benchmark ran on (no date: the report stays diffable)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "gpu": gpu,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def time_call(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1, device: torch.device | None = None) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs (syncs CUDA)."""

    def sync() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_benchmarks(names: list[str] | None = None, out: str | Path = "reports/bench.json", quick: bool = False) -> dict[str, Any]:
    """Run the named benchmarks (all when None), merge into ``out`` and return the file as written.

    A relative ``out`` is taken from the repository root. Unknown names are an error listing
    the registered ones. The file is written after every benchmark, so an interrupted or failed
    run keeps what it measured; a benchmark whose optional dependency is missing (the ``bench``
    extra: pytorch-grad-cam) is skipped with the reason recorded, and the others still run.
    """
    chosen = list_benchmarks() if names is None else list(names)
    unknown = [n for n in chosen if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; registered: {list_benchmarks()}")
    path = Path(out)
    if not path.is_absolute():
        path = REPO_ROOT / path
    report: dict[str, Any] = {"benchmarks": {}}
    if path.exists():
        report = json.loads(path.read_text())
        report.setdefault("benchmarks", {})
    text = dumps(report)
    for name in chosen:
        try:
            figures = _REGISTRY[name](quick)
        except ImportError as exc:  # an optional reference library: say so, keep going
            print(f"bench: skipped {name}: {exc} (install it with `uv sync --extra bench`)", flush=True)
            report["benchmarks"][name] = {"skipped": f"missing dependency: {exc.name or exc}", "quick": quick}
        else:
            report["benchmarks"][name] = {**figures, "quick": quick}
        text = dumps(report)
        write_text(path, text)  # after each benchmark: minutes of measurements are never lost
    return json.loads(text)


@register_benchmark("deletion_insertion")
def bench_deletion_insertion(quick: bool = False) -> dict[str, Any]:
    """Batched deletion + insertion vs the per-image, per-step loop on the same model.

    timm ``resnet10t`` with seeded random weights at 64 px, 16 images, 32 steps; the score is
    the softmax probability of each image's originally predicted class. Reports both median
    times, the speed-up, and the largest absolute AUC difference between the two (<= 1e-6).
    """
    import timm

    from shared.metrics.faithfulness import deletion, insertion, perturbation_curve_reference, perturbation_endpoints

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size, batch, steps = 64, 16, 32
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=10).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=gen).to(device)
    maps = torch.rand(batch, size, size, generator=gen).to(device)
    with torch.no_grad():
        classes = model(images).argmax(1)

    def score_fn(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return model(x).softmax(1).gather(1, classes[index].view(-1, 1)).squeeze(1)

    # the default convention (rise_code) with ImageNet's mean colour, as the metrics use it
    baseline, blurred = perturbation_endpoints(images)
    results: dict[str, torch.Tensor] = {}

    def batched() -> None:
        results["del"] = deletion(maps, images, score_fn, steps=steps, baseline=baseline, max_batch=264).auc
        results["ins"] = insertion(maps, images, score_fn, steps=steps, substrate=blurred, max_batch=264).auc

    def loop() -> None:
        results["del_ref"] = perturbation_curve_reference(maps, images, score_fn, steps, finish=baseline)[0]
        results["ins_ref"] = perturbation_curve_reference(maps, images, score_fn, steps, finish=images, start=blurred)[0]

    repeats = 1 if quick else 3
    t_batched = time_call(batched, repeats=repeats, warmup=1, device=device)
    t_loop = time_call(loop, repeats=repeats, warmup=0 if quick else 1, device=device)
    max_diff = max(
        float((results["del"].cpu() - results["del_ref"]).abs().max()),
        float((results["ins"].cpu() - results["ins_ref"]).abs().max()),
    )
    return {
        "model": "resnet10t (random init, seed 0, 10 classes)",
        "image_size": size,
        "images": batch,
        "steps": steps,
        "forward_passes_each": 2 * batch * (steps + 1),
        "batched_s": t_batched,
        "loop_s": t_loop,
        "speedup": t_loop / t_batched,
        "max_abs_auc_diff": max_diff,
        "repeats": repeats,
        "machine": machine_info(device),
    }


# Helpers the papers' benchmarks share (a paper's bench imports no other paper).


def resnet18_adapter(seed: int = 0) -> ModelAdapter:
    """timm resnet18 with seeded random weights (10 classes) behind an ImageNet-normalising adapter,
    explaining layer4 (its four stages named as blocks), in explain mode: every benchmark's model."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    layers = ["layer1", "layer2", "layer3", "layer4"]
    return ModelAdapter(model, "cnn", "classifier", "layer4", layers=layers, name="resnet18").explain_mode()


def bare_forward(adapter: ModelAdapter, rows: int, size: int, max_batch: int) -> None:
    """``rows`` images through the model, ``max_batch`` at a time, no grad: the cost floor."""
    chunk = torch.rand(min(rows, max_batch), 3, size, size)
    with torch.no_grad():
        for start in range(0, rows, max_batch):
            adapter(chunk[: min(max_batch, rows - start)])


def interleaved_times(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds of each call, the calls taking turns in every repeat: on a shared machine
    whose load drifts, each ratio then compares runs made under the same load."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            times[name].append(time_call(fn, repeats=1, warmup=0))
    return {name: statistics.median(ts) for name, ts in times.items()}
