"""From a paper's declaration (``paper.yaml``) and the config, the files its jobs read and write.

A paper names datasets and models by role, never by name:

- models are keys of the config's ``models`` section: ``resnet`` (the ResNet-style CNN),
  ``plaincnn`` (the plain CNN), ``vit``, ``embed_cosine`` and ``embed_euclidean`` (the metric
  learning embeddings); every config gives each role its own architecture and dataset;
- datasets are the benchmark's roles, ``{classification}``, ``{pairs}`` and ``{retrieval}`` in a
  claim's result key, ``dataset: pairs`` in a step; a model is otherwise explained on its own
  dataset (``config["models"][role]["dataset"]``).

``rules/papers.smk`` turns each plan into Snakemake rules, and the claims step resolves result
keys with :func:`resolve_key`; no torch and no paper code is imported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.paper_meta import DATASET_ROLES, PaperError, load_paper, paper_dirs
from shared.registry_meta import BLOCK_VARIANT, applies, method_info

ROLE_IN_KEY = re.compile(r"\{(\w+)\}")


def model_kind(model_cfg: dict[str, Any]) -> str:
    """cnn or vit, from the architecture name (timm's ViT families are named so)."""
    arch = str(model_cfg["arch"]).lower()
    return "vit" if ("vit" in arch or "deit" in arch) else "cnn"


def method_applies(method: str, model: str, config: dict[str, Any]) -> bool:
    """Whether ``method`` (its registry entry) explains the configured ``model`` in this profile:
    defined there, and among ``methods.<method>.models`` where the config chooses its pairs."""
    cfg = config["models"][model]
    chosen = method_settings(method, config).get("models")
    if chosen is not None and model not in chosen:
        return False
    return applies(method_info(method), model_kind(cfg), cfg["task"], cfg["arch"])


def method_settings(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config["methods"][<method>]`` (block variants ``<name>_b<k>`` share their base's), or {}."""
    variant = BLOCK_VARIANT.match(method)
    base = variant.group("base") if variant else method
    return dict((config.get("methods") or {}).get(base) or {})


def method_kwargs(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments the config sets for ``method`` (its settings less ``models``)."""
    return {k: v for k, v in method_settings(method, config).items() if k != "models"}


def models_for(method: str, config: dict[str, Any], among: list[str] | None = None) -> list[str]:
    """The configured models (of ``among`` if given, in its order) that ``method`` explains."""
    names = among if among is not None else sorted(config["models"])
    return [m for m in names if m in config["models"] and method_applies(method, m, config)]


def model_dataset(model: str, config: dict[str, Any]) -> str:
    """``data/datasets/<the model's own dataset>``."""
    return f"data/datasets/{config['models'][model]['dataset']}"


def resolve_key(key: Any, benchmark: dict[str, str]) -> Any:
    """A claim's result key with its dataset roles replaced: ``{pairs}/resnet/...`` → ``voc2007/resnet/...``."""
    if not isinstance(key, str):
        return key

    def name(m: re.Match) -> str:
        role = m.group(1)
        if role not in DATASET_ROLES:
            raise PaperError(f"unknown dataset role {{{role}}} in {key!r}; roles are {', '.join(DATASET_ROLES)}")
        return benchmark[role]

    return ROLE_IN_KEY.sub(name, key)


def resolve_claim(claim: dict[str, Any], benchmark: dict[str, str]) -> dict[str, Any]:
    """The claim with every result key (lhs, rhs, the keys inside expr) resolved."""
    out = dict(claim)
    for side in ("lhs", "rhs", "expr"):
        if side in out:
            out[side] = resolve_key(out[side], benchmark)
    return out


@dataclass
class Step:
    """A paper-specific step: ``python -m papers.<paper>.figures <id>`` over models and maps."""

    id: str
    module: str
    models: list[str]
    checkpoints: list[str]
    datasets: list[str]
    methods: list[str]
    maps: list[str]
    outputs: dict[str, str]


@dataclass
class PaperPlan:
    """Every file one paper's jobs read and write, for the current config."""

    id: str
    scores: list[str]
    methods: list[str]
    tables: list[dict[str, Any]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    records: list[str] = field(default_factory=list)

    @property
    def results(self) -> str:
        return f"reports/{self.id}/results.json"

    @property
    def claims(self) -> str:
        return f"reports/{self.id}/claims.md"

    def targets(self) -> list[str]:
        files = [self.results, *[t["file"] for t in self.tables], self.claims]
        for step in self.steps:
            files.extend(step.outputs.values())
        return list(dict.fromkeys(files))


def _known_models(roles: list[str], config: dict[str, Any]) -> list[str]:
    # A role the config does not define is left out (a config may run a subset of the zoo).
    return [m for m in roles if m in config["models"]]


def _step_module(pid: str, step: dict[str, Any]) -> str:
    module = step.get("module", f"papers.{pid}.figures")
    # a paper runs its own code or shared code, never another paper's (editing one paper's
    # figure must not change another's)
    if not (module.startswith("shared.") or module.startswith(f"papers.{pid}.")):
        raise PaperError(f"papers/{pid}/paper.yaml: step {step['id']} runs {module}; use papers.{pid}.* or shared.*")
    return module


def plan_paper(doc: dict[str, Any], config: dict[str, Any]) -> PaperPlan:
    """The plan of one paper (its loaded ``paper.yaml``) under ``config``."""
    pid = doc["id"]
    pairs: list[tuple[str, str]] = []
    methods: list[str] = []
    for group in doc["results"]:
        for method in group["methods"]:
            method_info(method)  # an unknown name fails here, naming it
            methods.append(method)
            for model in models_for(method, config, _known_models(group["models"], config)):
                pairs.append((model, method))
    methods = list(dict.fromkeys(methods))
    scores = list(dict.fromkeys(f"data/scores/{model}/{method}.json" for model, method in pairs))
    plan = PaperPlan(id=pid, scores=scores, methods=methods)

    for table in doc.get("tables", []):
        if "metrics" in table and "agreement" in table:
            raise PaperError(f"papers/{pid}/paper.yaml: table {table['id']} is both a results table and an agreement table")
        if "agreement" in table:
            model = table["agreement"]
            if model not in config["models"]:
                continue
            among = table.get("methods", methods)
            plan.tables.append({**table, "kind": "agreement", "model": model, "methods": [m for m in among if method_applies(m, model, config)]})
        elif "metrics" in table:
            plan.tables.append({**table, "kind": "results", "methods": table.get("methods", methods)})

    benchmark = config["benchmark"]
    for step in doc.get("steps", []):
        models = _known_models(step.get("models", []), config)
        role = step.get("dataset", "model")
        datasets = [model_dataset(m, config) if role == "model" else f"data/datasets/{benchmark[role]}" for m in models]
        step_methods = list(step.get("methods", []))
        maps = []
        if step.get("maps"):
            maps = [f"data/maps/{m}/{meth}.safetensors" for m in models for meth in step_methods if method_applies(meth, m, config)]
        for name, file in step["outputs"].items():
            if not file.startswith(f"reports/{pid}/"):
                raise PaperError(f"papers/{pid}/paper.yaml: step {step['id']} output {name} = {file!r} is not under reports/{pid}/")
        plan.steps.append(
            Step(
                id=step["id"], module=_step_module(pid, step), models=models, checkpoints=[f"data/models/{m}.safetensors" for m in models],
                datasets=datasets, methods=step_methods, maps=maps, outputs=dict(step["outputs"]),
            )
        )
        plan.records.extend(f for f in step["outputs"].values() if f.endswith(".json"))

    made = set(plan.targets())
    for item in [*doc.get("figures", []), *doc.get("tables", [])]:
        if item["file"] not in made and "metrics" not in item and "agreement" not in item:
            raise PaperError(
                f"papers/{pid}/paper.yaml: {item['id']} declares {item['file']}, which no step of the paper makes "
                f"(add it to a step's outputs, or give the table metrics: [...])"
            )
    return plan


def check_method_settings(config: dict[str, Any]) -> None:
    """Every key of the config's ``methods:`` names a registered method (a misspelt one would be
    ignored without a word); a block variant ``<name>_b<k>`` reads its base's settings, so a key of
    its own is refused, naming the base."""
    for name in (config.get("methods") or {}):
        variant = BLOCK_VARIANT.match(name)
        if variant:
            base = variant.group("base")
            raise PaperError(f"config methods.{name}: block variants read their base method's settings; set them under methods.{base}")
        try:
            method_info(name)
        except KeyError as exc:
            raise PaperError(f"config methods.{name}: {exc.args[0]}") from None


def plan_papers(config: dict[str, Any], papers_dir: Path | None = None) -> dict[str, PaperPlan]:
    """paper id → plan, for every paper under ``papers/``."""
    check_method_settings(config)
    return {d.name: plan_paper(load_paper(d), config) for d in paper_dirs(papers_dir)}
