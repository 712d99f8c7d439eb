"""`repro verify` says when the comparison is not like for like (issue 20, finding 5): the
config it recomputes with is not the one the pins record (their config_sha256), or data/models/
holds checkpoints trained with other settings. Hand-made pins and recomputed records; no
workflow runs here."""

from __future__ import annotations

import json
from pathlib import Path

from shared import provenance_cli
from shared.config import workflow_config, workflow_config_hash
from shared.results import Provenance, ResultRecord, write_records


def record(value: float, config_sha256: str | None, metric: str = "pointing_game", **prov) -> ResultRecord:
    return ResultRecord(
        metric, "gradcampp", "resnet", "shapes", value, value - 0.1, value + 0.1, 16,
        Provenance(git_commit="a" * 40, config_sha256=config_sha256, data_dvc_sha256=prov.pop("data_dvc_sha256", None), **prov),
    )


def keyed(*records: ResultRecord) -> dict[str, ResultRecord]:
    return {f"{r.dataset}/{r.model}/{r.method}/{r.metric}": r for r in records}


DOC = {"tolerance": {"default": 0.01}}



def test_verify_with_another_config_says_so_first_and_names_both_hashes(repo_root):
    default = workflow_config_hash(repo_root / "config" / "default.yaml")
    tiny = workflow_config_hash(repo_root / "config" / "tiny.yaml")
    pinned = keyed(record(0.5, default), record(0.7, default, metric="deletion"))
    fresh = keyed(record(0.9, tiny), record(0.7, tiny, metric="deletion"))
    code, report = provenance_cli.verify_report("gradcampp", DOC, pinned, fresh, "config/tiny.yaml", tiny, repo_root)
    lines = report.splitlines()
    assert code == 1
    first = lines[0]
    assert "NOT LIKE FOR LIKE" in first and default[:12] in first and tiny[:12] in first
    assert "config/default.yaml here" in first and "config/tiny.yaml" in first
    assert "`repro verify gradcampp`" in first  # how to verify with the pins' config
    assert lines[1] == "verify gradcampp: 1 of 2 results within tolerance, 1 differ (not like for like: see above)"
    assert lines[2].startswith("  DIFFERS shapes/resnet/gradcampp/pointing_game: pinned 0.5, now 0.9")
    assert not any("MOVED" in line for line in lines)


def test_verify_names_a_non_default_pin_config_as_configfile(repo_root):
    tiny = workflow_config_hash(repo_root / "config" / "tiny.yaml")
    default = workflow_config_hash(repo_root / "config" / "default.yaml")
    line = provenance_cli.config_mismatch("gradcampp", keyed(record(0.5, tiny)), default, "config/default.yaml", repo_root)
    assert "(config/tiny.yaml here)" in line and "`repro verify gradcampp --configfile config/tiny.yaml`" in line


def test_verify_pins_of_a_config_no_file_has_now(repo_root):
    default = workflow_config_hash(repo_root / "config" / "default.yaml")
    line = provenance_cli.config_mismatch("gradcampp", keyed(record(0.5, "9" * 64)), default, "config/default.yaml", repo_root)
    assert "no config file in config/ now" in line and "git checkout aaaaaaa" in line and "repro run gradcampp" in line
    assert "999999999999" in line and default[:12] in line


def test_verify_same_config_is_a_plain_moved_list(repo_root):
    default = workflow_config_hash(repo_root / "config" / "default.yaml")
    pinned = keyed(record(0.5, default))
    code, report = provenance_cli.verify_report("gradcampp", DOC, pinned, keyed(record(0.9, default)), "config/default.yaml", default, repo_root)
    assert code == 1 and report.splitlines() == [
        "verify gradcampp: 0 of 1 results within tolerance",
        "  MOVED shapes/resnet/gradcampp/pointing_game: pinned 0.5, now 0.9 (tolerance 0.01)",
    ]
    # pins without a config hash (older records) are compared as before
    code, report = provenance_cli.verify_report("gradcampp", DOC, keyed(record(0.5, None)), keyed(record(0.5, default)), "x", default, repo_root)
    assert code == 0 and report == "verify gradcampp: 1 of 1 results within tolerance"


def test_verify_trusts_the_hash_the_recomputed_records_carry(repo_root):
    """The workflow's own config_sha256 (in the fresh records) wins over the predicted one."""
    default = workflow_config_hash(repo_root / "config" / "default.yaml")
    pinned = keyed(record(0.5, default))
    code, report = provenance_cli.verify_report("gradcampp", DOC, pinned, keyed(record(0.5, default)), "config/default.yaml", "f" * 64, repo_root)
    assert code == 0 and "NOT LIKE FOR LIKE" not in report


def clone(repo_root: Path, root: Path, pins: list[ResultRecord]) -> Path:
    """A checkout with papers/ and config/ of the repository and hand-made pins for gradcampp."""
    root.mkdir()
    for name in ("papers", "config"):
        (root / name).symlink_to(repo_root / name)
    write_records(pins, root / "reports" / "gradcampp" / "results.json")
    return root


def test_verify_says_it_before_recomputing(monkeypatch, repo_root, tmp_path, capsys):
    tiny = str(repo_root / "config" / "tiny.yaml")
    default = workflow_config_hash(repo_root / "config" / "default.yaml")
    root = clone(repo_root, tmp_path / "clone", [record(0.5, default)])

    def no_copy(root, under=None):
        raise NotADirectoryError("stopped by the test before recomputing")

    monkeypatch.setattr(provenance_cli, "_scratch_copy", no_copy)
    assert provenance_cli.verify("gradcampp", tiny, 1, root)[0] == 2
    err = capsys.readouterr().err.splitlines()
    assert "data/ is missing" in err[0]  # a fresh clone: it says it trains first
    assert "NOT LIKE FOR LIKE" in err[1] and default[:12] in err[1] and workflow_config_hash(tiny)[:12] in err[1]


def test_verify_says_when_the_checkpoints_were_trained_with_another_config(repo_root, tmp_path):
    """A clone run with config/tiny.yaml, verified with the default config: verify reuses its
    checkpoints, so it says they are not the default config's."""
    root = tmp_path / "clone"
    root.mkdir()
    for name in ("papers", "config"):
        (root / name).symlink_to(repo_root / name)
    (root / "data" / "models").mkdir(parents=True)
    tiny = workflow_config(repo_root / "config" / "tiny.yaml")
    for model, cfg in tiny["models"].items():
        (root / "data" / "models" / f"{model}.json").write_text(json.dumps({"model": cfg, "seed": tiny["seed"]}))
    line = provenance_cli.stale_checkpoint_notice("gradcampp", None, root)
    assert "NOT LIKE FOR LIKE" in line and "resnet (" in line and "epochs 1, not 24" in line.replace("'", "")
    assert provenance_cli.stale_checkpoint_notice("gradcampp", str(repo_root / "config" / "tiny.yaml"), root) is None
