"""Published numbers: our mean against the number a paper publishes, within a stated tolerance.

An entry of a paper.yaml's ``published:`` section (schema: ``shared/paper_schema.yaml``) names a
number as printed (``value``, its ``source`` table, row and column, quoted), the factor that
brings it into our metric's units (``scale``), the result key that measures the same thing here
(``ours``: ``{role}/model/method/metric``, as a claim's lhs), an absolute ``tolerance`` in our
units with its reason, and the ``setting`` the number was measured on: the dataset the role must
resolve to and the architecture of the model role (timm's name without the pretrained tag:
``vgg16`` matches ``vgg16`` and ``vgg16.tv_in1k``, not ``vgg16_bn``).

The verdicts, in this order:

- **not applicable**: our run is not on the paper's setting (its dataset or its architecture
  differ; the reason names both). Checked first: on the synthetic default no comparison is ever
  made, whatever the numbers;
- **not evaluable**: the setting matches but the result is missing, or fewer than
  :data:`shared.verdicts.MIN_IMAGES` images have a value (the reason says which);
- otherwise our statistic (the mean over images, or MaxBoxAcc's best threshold) with its
  percentile bootstrap 95 % CI (:data:`shared.verdicts.CLAIM_RESAMPLES` resamples, seeded per
  entry id as claims are, :func:`shared.verdicts.paired_test` against the number) is read
  against the band ``value × scale ± tolerance``: **reproduced** when the whole CI lies within
  it, **not reproduced** when the CI lies entirely outside it, **inconclusive** when it crosses
  an edge of the band.

"The 95 % CI within the band" is an equivalence test (two one-sided tests, Schuirmann 1987) at
2.5 % per side, stricter than the usual 90 % interval. Each entry is one comparison of one number,
reported on its own: there is no Holm (or other) adjustment across a paper's published entries,
unlike its claims, which are one family of tests of what the paper asserts. The published number
is taken as exact (its own sampling error, on the paper's images, is not modelled); the tolerance
is where that and the stated differences of setting go, and it is fixed with its reason before
the paper-scale run, never fitted to our number.
"""

from __future__ import annotations

from typing import Any

from shared.verdicts import NotEvaluable, Side, paired_test

PUBLISHED_VERDICTS = ("reproduced", "inconclusive", "not reproduced", "not evaluable", "not applicable")


def arch_matches(arch: str, want: str) -> bool:
    """Whether the configured timm architecture ``arch`` is ``want`` (a pretrained tag after a dot is ignored)."""
    return arch == want or arch.startswith(want + ".")


def setting_mismatch(entry: dict[str, Any], key: str, models: dict[str, str]) -> str | None:
    """Why the resolved result ``key`` is not on the entry's setting, or None when it is.

    ``models``: model role -> timm architecture, from the config (a role missing from it is
    not on any setting: the run was not given its architecture)."""
    dataset, model = key.split("/")[:2]
    want = entry["setting"]
    arch = models.get(model)
    differ = []
    if dataset != want["dataset"]:
        differ.append("dataset")
    if arch is None or not arch_matches(arch, want["arch"]):
        differ.append("architecture")
    if not differ:
        return None
    ours = f"{dataset} with {arch}" if arch is not None else f"{dataset} with model role {model}, whose architecture this run does not give"
    verb = "differ" if len(differ) > 1 else "differs"
    return f"measured on {ours}; the paper's number is for {want['dataset']} with {want['arch']} (the {' and the '.join(differ)} {verb})"


def band_verdict(ci: tuple[float, float], low: float, high: float) -> str:
    """reproduced (CI within [low, high]), not reproduced (CI entirely outside), else inconclusive."""
    if low <= ci[0] and ci[1] <= high:
        return "reproduced"
    if ci[1] < low or ci[0] > high:
        return "not reproduced"
    return "inconclusive"


def target(entry: dict[str, Any]) -> float:
    """The published value in our units (value × scale; float noise such as 0.8659999… removed)."""
    return float(f"{float(entry['value']) * float(entry['scale']):.12g}")


def compare(entry: dict[str, Any], key: str, side: Side | None, models: dict[str, str], seed: int) -> dict[str, Any]:
    """One published entry judged (see the module docstring). ``key``: ``entry['ours']`` with its
    role resolved; ``side``: its per-image values in this run (None: missing)."""
    goal, tol = target(entry), float(entry["tolerance"])
    low, high = float(f"{goal - tol:.12g}"), float(f"{goal + tol:.12g}")
    row: dict[str, Any] = {k: entry[k] for k in ("id", "statement", "source", "value", "scale", "tolerance", "tolerance_reason", "setting", "setting_note")}
    row.update(published=goal, band=[low, high], ours={"key": key})
    mismatch = setting_mismatch(entry, key, models)
    if mismatch is not None:
        row.update(verdict="not applicable", reason=mismatch)
        return row
    if side is None:
        row.update(verdict="not evaluable", reason=f"no per-image result {key} in this run (is the method defined on that model?)")
        return row
    try:
        test = paired_test(side, goal, ">", seed=seed)
    except NotEvaluable as why:
        row.update(verdict="not evaluable", reason=str(why))
        return row
    ci = test.ci
    row["ours"].update(mean=test.value, ci=[ci[0], ci[1]], n=test.n, excluded=test.excluded)
    verdict = band_verdict(ci, low, high)
    where = {"reproduced": "lies within", "not reproduced": "lies outside", "inconclusive": "crosses an edge of"}[verdict]
    row.update(verdict=verdict, reason=f"our 95 % CI [{ci[0]:.4g}, {ci[1]:.4g}] {where} {goal:.4g} ± {tol:g} = [{low:.4g}, {high:.4g}]")
    return row
