"""Size paper-scale jobs from a rehearsal's measurements: the config's ``resources`` and a table.

    python -m shared.budget_report --run <rehearsal checkout> --rehearsal-config <merged config.json> \
        --target-config config/paper-scale.yaml --out-yaml budgets.yaml --out-md budgets.md

Every job of a rehearsal (tests/paper_scale) writes a Snakemake benchmark file
``logs/benchmarks/<job>.tsv`` (wall seconds, peak RSS sampled every 0.5 s). Each job's time is
scaled from the rehearsal's sizes to the target config's, by what the job's work grows with:

- ``fetch_dataset:<name>``: the images converted (the full archive's image count over the
  miniature's); the download itself is not measured (it depends on the network).
- ``train_model:<model>``: a model evaluated as it is (``epochs: 0``) by its test images; a
  trained one by its optimisation steps (epochs x batches of the full training split).
- ``explain_<model>`` / ``score_maps``: eval.n_images, times the forward passes per image
  (explanation plus deletion and insertion: 2 x deletion_steps + 6) over the rehearsal's.
- a paper's steps and ``explain_maps``: eval.n_images.
- everything else (results with their tables and claims, agreement tables, figures, leaderboard):
  as measured (seconds).

Memory is the measured peak x 1.5, at least 2 GB: the perturbation batches of the rehearsal
already have paper-scale's eval.batch_size, but the explanations' backward passes ran on
n_images rows, so the budget of a GPU job should be checked on a GPU (README says so).
All times are CPU times of the rehearsal machine, extrapolated: upper bounds for a GPU run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import yaml

from shared.atomic import write_text
from shared.config import load_config

FULL_IMAGES = {
    # images in the publishers' archives (all splits the converter writes)
    "imagenette": {"train": 9469, "val": 3925},      # imagenette2-320 (fast.ai README)
    "voc2007": {"test": 4952},                       # VOC 2007 test (devkit doc)
    "cub": {"train": 5994, "test": 5794},            # CUB-200-2011, split by class halves here (approx.)
}
"""Full dataset sizes the rehearsal's miniature sizes are scaled to (see the module docstring)."""

MEMORY_MARGIN = 1.5
MIN_MEM_MB = 2000


def read_benchmark(path: Path) -> dict[str, float]:
    """One Snakemake benchmark file: wall seconds ``s`` and peak RSS ``max_rss`` (MB), ``cpu_time``."""
    with path.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    row = rows[-1]

    def num(key: str) -> float:
        try:
            return float(row.get(key, "nan"))
        except ValueError:  # "NA": the job ended before the first sample
            return float("nan")

    return {"s": num("s"), "max_rss": num("max_rss"), "cpu_time": num("cpu_time")}


def job_key(path: Path, root: Path) -> str:
    """``logs/benchmarks/train_model/resnet.tsv`` -> ``train_model:resnet``."""
    return ":".join(path.relative_to(root).with_suffix("").parts)


def dataset_counts(run: Path, name: str) -> dict[str, int]:
    """Images per split of a converted dataset in the rehearsal checkout."""
    root = run / "data" / "datasets" / name
    meta = json.loads((root / "meta.json").read_text())
    counts = {}
    for split in meta.get("splits") or []:
        with (root / f"{split}.csv").open() as handle:
            counts[split] = len({row["image_id"] for row in csv.DictReader(handle)})
    return counts


def forwards_per_image(eval_cfg: dict[str, Any]) -> int:
    return 2 * int(eval_cfg["deletion_steps"]) + 6


def scale_factor(key: str, run: Path, rehearsal: dict[str, Any], target: dict[str, Any]) -> tuple[float, str]:
    """(factor, why) turning the job's rehearsal time into the target config's."""
    rule, *wild = key.split(":")
    n_ratio = target["eval"]["n_images"] / rehearsal["eval"]["n_images"]
    if rule == "fetch_dataset":
        name = wild[0]
        full = sum(FULL_IMAGES[name].values())
        mini = sum(dataset_counts(run, name).values())
        return full / mini, f"{full} images / {mini}"
    if rule == "train_model":
        model = wild[0]
        cfg_t, cfg_r = target["models"][model], rehearsal["models"][model]
        dataset = cfg_t["dataset"]
        if int(cfg_t["epochs"]) == 0:
            split = cfg_t.get("test_split", "test")
            mini = dataset_counts(run, dataset)[split]
            return FULL_IMAGES[dataset][split] / mini, f"{FULL_IMAGES[dataset][split]} test images / {mini}"
        sidecar = json.loads((run / "data" / "models" / f"{model}.json").read_text())
        steps_r = max(1, int(sidecar.get("training", {}).get("steps", 1)))
        steps_t = int(cfg_t["epochs"]) * (FULL_IMAGES[dataset]["train"] // int(cfg_t["batch_size"]))
        return steps_t / steps_r, f"{steps_t} training steps / {steps_r}"
    if rule.startswith("explain_") and rule != "explain_maps" or rule == "score_maps":
        passes = forwards_per_image(target["eval"]) / forwards_per_image(rehearsal["eval"])
        return n_ratio * passes, f"{n_ratio:g}x images, {passes:.1f}x forward passes per image"
    if rule == "explain_maps" or (rule in _step_rules(target) and not rule.endswith("_results")):
        return n_ratio, f"{n_ratio:g}x images"
    return 1.0, "as measured"


def _step_rules(cfg: dict[str, Any]) -> set[str]:
    from shared.paper_plan import plan_papers

    return {f"{pid}_{step.id}" for pid, plan in plan_papers(cfg).items() for step in plan.steps}


GPU_RUNTIME_MIN = {"train_model": 720, "explain_maps": 120, "score_maps": 120, "explain": 360}
"""Time limits (minutes) of the GPU jobs, which a CPU rehearsal cannot measure: the SLURM
profile's earlier limits, kept until a GPU rehearsal (the issue's device check) measures them."""


def startup_seconds(measured: dict[str, dict[str, float]]) -> float:
    """A job's fixed cost (interpreter, torch and the config), not scaled: the fastest paper
    results job's time. It is the lightest job that loads torch and the config (it aggregates a
    few scores files and judges the paper's claims, seconds of work at rehearsal sizes); the
    median separate claims job served before the claims moved into the results job."""
    light = [m["s"] for k, m in measured.items() if k.endswith("_results") and math.isfinite(m["s"])]
    return min(light) if light else 0.0


def budgets(run: Path, rehearsal: dict[str, Any], target: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per rehearsal job: measured time and memory, the scaled budget and why."""
    root = run / "logs" / "benchmarks"
    gpu_rules = {"train_model", "explain_maps", "score_maps"} | {f"explain_{m}" for m in target["models"]}
    measured = {job_key(path, root): read_benchmark(path) for path in sorted(root.rglob("*.tsv"))}
    fixed = startup_seconds(measured)
    rows = []
    for key, m in measured.items():
        rule = key.split(":")[0]
        factor, why = scale_factor(key, run, rehearsal, target)
        seconds = min(m["s"], fixed) + max(0.0, m["s"] - fixed) * factor
        rss = m["max_rss"] if math.isfinite(m["max_rss"]) else 0.0
        gpu = rule in gpu_rules
        rows.append({
            "job": key,
            "measured_s": round(m["s"], 2),
            "measured_rss_mb": round(rss, 1),
            "factor": round(factor, 2),
            "why": why,
            "expected_cpu_h": seconds / 3600,
            "mem_mb": int(max(MIN_MEM_MB, math.ceil(rss * MEMORY_MARGIN / 500) * 500)),
            # a time limit (minutes): twice the CPU extrapolation, at least 10; a GPU job's
            # cannot be measured on a CPU (GPU_RUNTIME_MIN)
            "runtime": GPU_RUNTIME_MIN.get(rule, GPU_RUNTIME_MIN["explain"]) if gpu else int(max(10, math.ceil(2 * seconds / 60))),
            "gpu": int(gpu),
        })
    return rows


def per_paper(rows: list[dict[str, Any]], papers: list[str]) -> dict[str, float]:
    """CPU hours of each paper's own jobs (steps, results with claims, tables); the shared jobs
    (datasets, training, the per-model explain jobs, the leaderboard) are counted once, as ``shared``."""
    out = {p: 0.0 for p in papers}
    out["shared"] = 0.0
    for r in rows:
        owner = next((p for p in sorted(papers, key=len, reverse=True) if r["job"].startswith(f"{p}_")), "shared")
        out[owner] += r["expected_cpu_h"]
    return out


def resources_section(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The config's ``resources``: per job key, mem_mb / runtime (and gpu where it is a GPU job)."""
    out = {}
    for r in rows:
        res = {"mem_mb": r["mem_mb"], "runtime": r["runtime"]}
        if r["gpu"]:
            res["gpu"] = 1
        out[r["job"]] = res
    return out


def resources_yaml(section: dict[str, dict[str, int]]) -> str:
    """The ``resources:`` section, one job per line (to paste into config/paper-scale.yaml)."""
    lines = ["resources:"]
    for key, res in sorted(section.items()):
        inner = ", ".join(f"{k}: {v}" for k, v in sorted(res.items()))
        lines.append(f"  {key}: {{{inner}}}")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| job | rehearsal (s) | peak RSS (MB) | scaled by | expected CPU h (1 thread) | mem_mb | runtime (min) | GPU |",
        "|---|---:|---:|---|---:|---:|---:|:-:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['job']} | {r['measured_s']:.1f} | {r['measured_rss_mb']:.0f} | {r['why']} | "
            f"{r['expected_cpu_h']:.2f} | {r['mem_mb']} | {r['runtime']} | {'yes' if r['gpu'] else ''} |"
        )
    total = sum(r["expected_cpu_h"] for r in rows)
    lines.append(f"| **all jobs** | {sum(r['measured_s'] for r in rows):.0f} | | | **{total:.1f}** | | | |")
    return "\n".join(lines) + "\n"


ARCHIVE_BYTES = {"voc2007": 451_020_800, "cub": 1_150_585_339}
"""The publishers' archives, as config/paper-scale.yaml pins them (Imagenette's size is not
pinned there, nor counted here)."""


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def disk(run: Path, rehearsal: dict[str, Any], target: dict[str, Any]) -> dict[str, float]:
    """Expected disk (GB) at the target config: archives, converted datasets, weights, maps, scores.

    Maps and scores scale with eval.n_images exactly (float32 maps of the same size); converted
    images by their count (the miniatures' synthetic content compresses better than photos, so
    this part is a lower bound; raw RGB at the image size is the upper bound, also given)."""
    n_ratio = target["eval"]["n_images"] / rehearsal["eval"]["n_images"]
    side = int(target["datasets"]["image_size"])
    used = {m["dataset"] for m in target["models"].values()} | {v for v in target["benchmark"].values() if v}
    datasets, raw = 0.0, 0.0
    for name in sorted(used & set(FULL_IMAGES)):
        full, mini = sum(FULL_IMAGES[name].values()), sum(dataset_counts(run, name).values())
        datasets += _bytes(run / "data" / "datasets" / name) * full / mini
        raw += full * side * side * 3
    gb = 1e9
    return {
        "archives_without_imagenette": sum(ARCHIVE_BYTES[n] for n in used & set(ARCHIVE_BYTES)) / gb,
        "datasets": datasets / gb,
        "datasets_raw_upper_bound": raw / gb,
        "weights": _bytes(run / "data" / "models") / gb,
        "maps": _bytes(run / "data" / "maps") * n_ratio / gb,
        "scores": _bytes(run / "data" / "scores") * n_ratio / gb,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, type=Path, help="the rehearsal's checkout (logs/benchmarks, data/)")
    p.add_argument("--rehearsal-config", required=True, type=Path, help="the rehearsal's merged config (JSON or YAML)")
    p.add_argument("--target-config", default="config/paper-scale.yaml")
    p.add_argument("--out-yaml", required=True, type=Path)
    p.add_argument("--out-md", required=True, type=Path)
    args = p.parse_args(argv)
    rehearsal = yaml.safe_load(args.rehearsal_config.read_text())
    target = load_config(args.target_config)
    rows = budgets(args.run, rehearsal, target)
    write_text(args.out_yaml, resources_yaml(resources_section(rows)))
    space = disk(args.run, rehearsal, target)
    from shared.paper_meta import paper_dirs

    papers = per_paper(rows, [d.name for d in paper_dirs()])
    text = markdown(rows)
    text += "\nExpected CPU hours (1 thread) by paper's own jobs: " + ", ".join(f"{k} {v:.1f}" for k, v in papers.items()) + "\n"
    text += "\nExpected disk (GB): " + ", ".join(f"{k} {v:.2f}" for k, v in space.items()) + "\n"
    write_text(args.out_md, text)
    write_text(args.out_md.with_suffix(".json"), json.dumps({"jobs": rows, "papers_cpu_h": papers, "disk_gb": space}, indent=1, sort_keys=True) + "\n")
    print(f"{len(rows)} jobs; expected {sum(r['expected_cpu_h'] for r in rows):.1f} CPU hours at paper scale")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
