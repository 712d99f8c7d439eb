"""Step: score one method's maps on its model's evaluation subset with the shared metric suite.

    python -m shared.pipeline.score --maps data/maps/resnet/gradcam.safetensors \
        --model data/models/resnet.safetensors --dataset data/datasets/shapes \
        --out data/scores/resnet/gradcam.json --config-json '{...}'

Per-image values of every metric go to the JSON (so confidence intervals and paired tests can
be computed later); MaxBoxAcc keeps its per-image hits at every threshold.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

import torch

from shared import metrics
from shared.metrics.definitions import BY_NAME
from shared.metrics.faithfulness import DEFAULT_PERTURBATION, perturbation_endpoints
from shared.pipeline.io import EvalBatch, eval_batch, load_maps, write_json
from shared.runtime import setup_from_config


def score_fn_for(batch: EvalBatch):
    """The faithfulness score of a batch: class probability, or similarity to the reference."""

    @torch.no_grad()
    def score(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return batch.target.probability(batch.adapter(images), index)

    return score


def score_label(batch: EvalBatch) -> str:
    """What the faithfulness score of :func:`score_fn_for` is, for figure labels ("AUC of ..."):
    a classifier's class probability, or an embedding model's similarity to the reference
    (``shared.explain.SimilarityTarget``: cosine, or −‖f − r‖² for a Euclidean model)."""
    if batch.adapter.task == "classifier":
        return "class probability"
    if getattr(batch.adapter, "metric", None) == "euclidean":
        return "similarity −‖f − r‖²"
    return "cosine similarity"


def perturbation_of(eval_cfg: dict[str, Any]) -> str:
    """The deletion / insertion convention of ``eval.perturbation`` (default ``rise_code``)."""
    return str(eval_cfg.get("perturbation", DEFAULT_PERTURBATION))


@dataclass(frozen=True)
class ReferenceScores:
    """Scores no map changes: the images, the deletion baseline and the insertion substrate
    of the ``perturbation`` convention (:func:`shared.metrics.faithfulness.perturbation_endpoints`),
    with those two images. Computed once per model, shared by every method scored on it."""

    images: torch.Tensor
    blank: torch.Tensor
    blurred: torch.Tensor
    substrate: torch.Tensor
    baseline: torch.Tensor
    perturbation: str
    definitions: "DefinitionEndpoints | None" = None  # on the models of eval.definitions.models


def reference_scores(batch: EvalBatch, eval_cfg: dict[str, Any]) -> ReferenceScores:
    """The batch's :class:`ReferenceScores`, ``eval.batch_size`` images per forward pass.

    Deletion's baseline and insertion's substrate follow ``eval.perturbation``: ``rise_code``
    (RISE's code: the model's normalisation mean colour, ``batch.adapter.mean``, and RISE's blur
    of the normalised image) or ``black`` (the earlier black baseline and reflect-padded blur).
    """
    score = score_fn_for(batch)
    size = int(eval_cfg["batch_size"])
    convention = perturbation_of(eval_cfg)
    baseline, substrate = perturbation_endpoints(batch.images, batch.adapter.mean, convention)
    return ReferenceScores(
        images=metrics.scores_in_chunks(batch.images, score, size),
        blank=metrics.scores_in_chunks(baseline, score, size),
        blurred=metrics.scores_in_chunks(substrate, score, size),
        substrate=substrate,
        baseline=baseline,
        perturbation=convention,
        definitions=definition_endpoints(batch, eval_cfg) if batch.adapter.name in definition_models(eval_cfg) else None,
    )


def definition_models(eval_cfg: dict[str, Any]) -> list[str]:
    """The models whose pairs are also scored under the definition variants that cost forward
    passes (``eval.definitions.models``; :mod:`shared.metrics.definitions`)."""
    return list((eval_cfg.get("definitions") or {}).get("models") or [])


def extended_scoring(model: str, method: str, eval_cfg: dict[str, Any]) -> dict[str, bool]:
    """Which costly extras the (model, method) pair is scored with: ``definitions`` (the
    definition variants that cost forward passes, on a model of ``eval.definitions.models``) and
    ``road`` (on a model of ``eval.road.models``), each for the leaderboard methods only (what
    the definitions page and the leaderboard rank). The one rule, whichever job scores the pair."""
    from shared.registry_meta import method_info

    ranked = bool(method_info(method)["leaderboard"])
    return {"definitions": ranked and model in definition_models(eval_cfg), "road": ranked and model in road_models(eval_cfg)}


def library_drop_increase(batch: EvalBatch, maps: torch.Tensor, max_batch: int, base: torch.Tensor) -> dict[str, torch.Tensor]:
    """Average Drop and Increase in Confidence as torch-cam and pytorch-grad-cam compute them
    (:mod:`shared.metrics.definitions`): the map masks the model's normalised input (one more
    forward pass an image); torch-cam divides the drop by Y + 1e-7, pytorch-grad-cam not at all."""
    score = score_fn_for(batch)
    masked = metrics.average_drop_increase(
        maps, batch.images, score, keep=(1.0,), max_batch=max_batch, base_scores=base, masking="normalised", mean=batch.adapter.mean
    )[1.0]
    y, o = masked.base, masked.masked
    return {
        "average_drop@torchcam": 100.0 * (y - o).clamp_min(0) / (y + 1e-7),
        "average_drop@pytorch_grad_cam": 100.0 * (y - o).clamp_min(0),
        "increase_in_confidence@torchcam": masked.increase,
    }


def definition_models_metrics(
    batch: EvalBatch, maps: torch.Tensor, eval_cfg: dict[str, Any], ref: "ReferenceScores", known: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """On the models of ``eval.definitions.models``: deletion and insertion under each library's
    definition (:mod:`shared.metrics.definitions`). ``known``: variants
    already scored (``eval.perturbation``'s own), reused rather than recomputed."""
    score = score_fn_for(batch)
    steps = int(eval_cfg["deletion_steps"])
    max_batch = int(eval_cfg["batch_size"])
    ends = ref.definitions
    if ends is None:
        raise ValueError(f"the reference scores of {batch.adapter.name!r} have no definition endpoints: it is not in eval.definitions.models")
    out: dict[str, torch.Tensor] = dict(known or {})
    skip = set((eval_cfg.get("definitions") or {}).get("skip") or [])
    for name, (finish, finish_score) in ends.deletion.items():
        if f"deletion@{name}" in out or f"deletion@{name}" in skip:
            continue
        out[f"deletion@{name}"] = metrics.deletion(
            maps, batch.images, score, steps=steps, baseline=finish, max_batch=max_batch, endpoint_scores=(ref.images, finish_score)
        ).auc
    for name, (start, start_score) in ends.insertion.items():
        if f"insertion@{name}" in out or f"insertion@{name}" in skip:
            continue
        out[f"insertion@{name}"] = metrics.insertion(
            maps, batch.images, score, steps=steps, substrate=start, max_batch=max_batch, endpoint_scores=(start_score, ref.images)
        ).auc
    return out


def road_models(eval_cfg: dict[str, Any]) -> list[str]:
    """The models whose pairs are also scored with ROAD (``eval.road.models``): its noisy linear
    imputation solves one sparse system per image and percentage, 10-60 s a method for 96 images
    at 64 px on 2 CPU cores, so the CPU default leaves it off and paper scale (GPU) turns it on."""
    return list((eval_cfg.get("road") or {}).get("models") or [])


def road_metrics(batch: EvalBatch, maps: torch.Tensor, eval_cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """ROAD, MoRF and LeRF (:func:`shared.metrics.road`): the mean score over the percentages."""
    score = score_fn_for(batch)
    cfg = eval_cfg.get("road") or {}
    kwargs = {"percentages": tuple(cfg["percentages"])} if cfg.get("percentages") else {}
    seed = int(eval_cfg.get("seed", 0))
    return {
        f"road_{order}": metrics.road(maps, batch.images, score, order=order, seed=seed, max_batch=int(eval_cfg["batch_size"]), **kwargs).area
        for order in ("morf", "lerf")
    }


@dataclass(frozen=True)
class DefinitionEndpoints:
    """Each deletion definition's baseline and each insertion definition's start, with their
    scores (no map changes them: computed once per model, with :class:`ReferenceScores`)."""

    deletion: dict[str, tuple[torch.Tensor, torch.Tensor]]
    insertion: dict[str, tuple[torch.Tensor, torch.Tensor]]


def definition_endpoints(batch: EvalBatch, eval_cfg: dict[str, Any]) -> DefinitionEndpoints:
    """The :class:`DefinitionEndpoints` of ``batch``: the mean colour (RISE's code and
    torch-cam), black, Quantus's minimum, and RISE's blur, each scored once."""
    score = score_fn_for(batch)
    size = int(eval_cfg["batch_size"])
    mean_colour, rise_blur = perturbation_endpoints(batch.images, batch.adapter.mean, "rise_code")
    black = perturbation_endpoints(batch.images, batch.adapter.mean, "black")[0]
    lowest = metrics.normalised_minimum(batch.images, batch.adapter.mean, batch.adapter.std)

    def scored(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images, metrics.scores_in_chunks(images, score, size)

    colour = scored(mean_colour)
    return DefinitionEndpoints(
        deletion={"rise_code": colour, "black": scored(black), "quantus": scored(lowest)},
        insertion={"rise_code": scored(rise_blur), "torchcam": colour},
    )


def map_only_metrics(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """The metrics that read nothing but the maps (and the object masks): complexity and
    localisation added by the metrics issue."""
    return {
        "sparseness": metrics.sparseness(maps),
        "complexity": metrics.complexity(maps),
        "effective_complexity": metrics.effective_complexity(maps),
        "top_k_intersection": metrics.top_k_intersection(maps, masks),
        "localisation_auc": metrics.localisation_auc(maps, masks),
    }


def maxboxacc_v2_block(maps: torch.Tensor, boxes: torch.Tensor) -> dict[str, Any]:
    """MaxBoxAccV2's per-image hits (B, thresholds, IoU thresholds) for the scores file."""
    v2 = metrics.max_box_accuracy_v2(maps, boxes)
    return {
        "thresholds": [float(t) for t in v2.thresholds.cpu()],
        "iou_thresholds": [float(t) for t in v2.iou_thresholds.cpu()],
        "hits": v2.hits.cpu().round().long().tolist(),
    }


def deletion_insertion(batch: EvalBatch, maps: torch.Tensor, eval_cfg: dict[str, Any], ref: ReferenceScores) -> dict[str, torch.Tensor]:
    """Per-image deletion and insertion AUCs (``eval.deletion_steps``, the config's substrates held
    by ``ref``): as every scores file has them, for steps that score maps of their own."""
    score, steps, max_batch = score_fn_for(batch), int(eval_cfg["deletion_steps"]), int(eval_cfg["batch_size"])
    return {
        "deletion": metrics.deletion(
            maps, batch.images, score, steps=steps, baseline=ref.baseline, max_batch=max_batch,
            endpoint_scores=(ref.images, ref.blank),
        ).auc,
        "insertion": metrics.insertion(
            maps, batch.images, score, steps=steps, substrate=ref.substrate, max_batch=max_batch,
            endpoint_scores=(ref.blurred, ref.images),
        ).auc,
    }


def drop_increase(batch: EvalBatch, maps: torch.Tensor, max_batch: int, base: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image Average Drop, Increase in Confidence and Average Gain with the map kept whole, and
    Average Drop / Increase at 50 % and 15 % of it (T-TAME's); ``base``: the images' own scores.
    Classifiers only: they divide by a probability."""
    adic = metrics.average_drop_increase(maps, batch.images, score_fn_for(batch), keep=(1.0, 0.5, 0.15), max_batch=max_batch, base_scores=base)
    return {
        "average_drop": adic[1.0].drop,
        "increase_in_confidence": adic[1.0].increase,
        "average_gain": adic[1.0].gain,
        "average_drop_50": adic[0.5].drop,
        "increase_in_confidence_50": adic[0.5].increase,
        "average_drop_15": adic[0.15].drop,
        "increase_in_confidence_15": adic[0.15].increase,
    }


def score_maps(
    batch: EvalBatch,
    maps: torch.Tensor,
    eval_cfg: dict[str, Any],
    references: ReferenceScores | None = None,
    extended: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """Every metric that applies to the batch's model, per image. ``references``: the scores
    shared by every method on this batch (:func:`reference_scores`), computed here when absent.
    ``extended`` (:func:`extended_scoring`): ``definitions`` — also the definition variants that
    cost forward passes and MaxBoxAccV2 (:func:`definition_models_metrics`); ``road`` — ROAD."""
    extended = extended or {}
    maps = maps.to(batch.images.device)
    if maps.shape[0] != batch.images.shape[0]:
        raise ValueError(
            f"{maps.shape[0]} maps for {batch.images.shape[0]} evaluation images; the maps are stale — "
            f"delete them and rerun the workflow"
        )
    masks = batch.split.masks.to(maps.device)
    boxes = batch.split.boxes.to(maps.device)
    # Perturbed images go through the model eval.batch_size at a time: on CPU, batches of 32
    # run 1.2-1.9x faster per image than 128 (cache-bound); on a GPU raise eval.batch_size.
    max_batch = int(eval_cfg["batch_size"])
    ref = references or reference_scores(batch, eval_cfg)
    if ref.perturbation != perturbation_of(eval_cfg):
        raise ValueError(
            f"reference scores were computed with perturbation {ref.perturbation!r}, "
            f"but eval.perturbation is {perturbation_of(eval_cfg)!r}"
        )
    per_image: dict[str, torch.Tensor] = {
        **deletion_insertion(batch, maps, eval_cfg, ref),
        "pointing_game": metrics.pointing_game(maps, masks),
        "energy_pointing_game": metrics.energy_pointing_game(maps, boxes),
        "relevance_mass": metrics.relevance_mass_accuracy(maps, masks),
        "relevance_rank_accuracy": metrics.relevance_rank_accuracy(maps, masks),
        "wsol_fixed": metrics.cam_localisation(maps, boxes),
    }
    per_image["pointing_game@tol0"] = metrics.pointing_game(maps, masks, tolerance=0.0)
    per_image.update(map_only_metrics(maps, masks))
    if batch.adapter.task == "classifier":
        # Average Drop / Increase in Confidence divide by the score on the image, which must be
        # a probability: they are defined for classifiers only.
        per_image.update(drop_increase(batch, maps, max_batch, ref.images))
        per_image.update(library_drop_increase(batch, maps, max_batch, ref.images))
    if extended.get("road"):
        per_image.update(road_metrics(batch, maps, eval_cfg))
    if extended.get("definitions"):
        # the suite's own convention was scored above: its variants are those numbers
        known = {f"deletion@{ref.perturbation}": per_image["deletion"], f"insertion@{ref.perturbation}": per_image["insertion"]}
        known = {k: v for k, v in known.items() if k in BY_NAME}
        per_image.update(definition_models_metrics(batch, maps, eval_cfg, ref, known))
    mba = metrics.max_box_accuracy(maps, boxes)
    # MaxBoxAccV2 boxes every component at every threshold: ~0.9 s a pair at 64 px on a CPU, so
    # only on the definition models (as the deletion / insertion variants)
    extra = {"maxboxacc_v2": maxboxacc_v2_block(maps, boxes)} if extended.get("definitions") else {}
    return {
        "per_image": {k: [float(x) for x in v.detach().cpu().double()] for k, v in sorted(per_image.items())},
        "maxboxacc": {
            "thresholds": [float(t) for t in mba.thresholds.cpu()],
            "hits": [[int(h) for h in row] for row in mba.hits.cpu().round().long()],
        },
        "image_ids": list(batch.split.image_ids),
        "objects": [int(o) for o in batch.split.objects],
        **extra,
        "perturbation": ref.perturbation,
        "score": score_label(batch),  # what deletion and insertion integrate (figure labels)
    }


def input_identity(model_path: str, dataset_dir: str) -> dict[str, str | None]:
    """What this step read, by content: the checkpoint's weights SHA-256 (its sidecar's, which
    loading checked against the file) and the dataset's ``content_hash`` (its meta.json). The
    results step copies them into each record's provenance."""
    from shared.data import read_meta
    from shared.models.checkpoint import read_sidecar

    return {
        "model_weights_sha256": read_sidecar(model_path)["weights"]["sha256"],
        "dataset_content_hash": read_meta(dataset_dir).get("content_hash"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--maps", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--config-json", required=True)
    args = p.parse_args(argv)
    cfg = json.loads(args.config_json)
    device = setup_from_config(cfg)
    maps, meta = load_maps(args.maps)
    batch = eval_batch(args.model, args.dataset, cfg["eval"]["n_images"], device)
    eval_cfg = {**cfg["eval"], "seed": int(cfg.get("seed", 0))}
    result = score_maps(batch, maps, eval_cfg, extended=extended_scoring(batch.adapter.name, meta.get("method"), cfg["eval"]))
    result.update({"method": meta.get("method"), "model": batch.adapter.name, "dataset": batch.dataset, "n": int(maps.shape[0])})
    result["inputs"] = input_identity(args.model, args.dataset)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
