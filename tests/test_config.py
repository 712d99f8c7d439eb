import copy
import subprocess
import sys

import pytest
import yaml

from shared.config import ConfigError, config_hash, load_config, validate_config


def test_shipped_configs_are_valid(repo_root):
    for name in ("default.yaml", "tiny.yaml", "paper-scale.yaml"):
        path = repo_root / "config" / name
        if path.exists():
            load_config(path)


def test_misspelt_key_is_named(repo_root):
    config = yaml.safe_load((repo_root / "config" / "default.yaml").read_text())
    config["sede"] = config.pop("seed")
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert "'sede' was unexpected" in str(err.value)


def test_nested_misspelt_key_names_its_path(repo_root):
    config = yaml.safe_load((repo_root / "config" / "default.yaml").read_text())
    config["datasets"]["shapes"]["n_clases"] = 3
    with pytest.raises(ConfigError, match=r"datasets\.shapes: .*'n_clases' was unexpected"):
        validate_config(config)


def test_ill_typed_value_is_named(repo_root):
    config = yaml.safe_load((repo_root / "config" / "default.yaml").read_text())
    config["eval"]["n_images"] = "many"
    with pytest.raises(ConfigError, match=r"eval\.n_images: 'many' is not of type 'integer'"):
        validate_config(config)


def test_unknown_paper_section(repo_root):
    config = yaml.safe_load((repo_root / "config" / "default.yaml").read_text())
    config["papers"] = {"no_such_paper": {}}
    with pytest.raises(ConfigError, match="no paper 'no_such_paper'"):
        validate_config(config)


def test_config_hash_is_stable_and_sensitive(repo_root):
    config = yaml.safe_load((repo_root / "config" / "default.yaml").read_text())
    other = copy.deepcopy(config)
    assert config_hash(config) == config_hash(other)
    other["seed"] += 1
    assert config_hash(config) != config_hash(other)


# issue 20, finding 9: one or two lines, never the schema or a whole section; paper sections checked


def test_error_is_one_or_two_lines_naming_key_file_and_allowed_keys(repo_root, tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("sede: 3\ndevice: gpu\ndatasets:\n  shapes:\n    n_clases: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    lines = str(err.value).splitlines()
    assert len(lines) <= 2, str(err.value)
    assert str(bad) in lines[0] and "<top level>: " in lines[0] and "'sede' was unexpected" in lines[0]
    assert "allowed keys: benchmark, datasets, deterministic, device" in lines[0]
    assert "datasets.shapes: " in lines[1] and "device: 'gpu'" in lines[1]  # the others: where, briefly
    assert "'properties'" not in str(err.value) and "$schema" not in str(err.value)  # no schema dump


def test_a_big_offending_value_is_not_dumped(repo_root):
    config = yaml.safe_load((repo_root / "config" / "default.yaml").read_text())
    config["eval"] = list(range(1000))
    config["datasets"]["imagenette"] = {"url": "https://example.org/x.tgz", "filename": "x" * 500}
    with pytest.raises(ConfigError) as err:
        validate_config(config, "big.yaml")
    assert len(str(err.value)) < 400 and len(str(err.value).splitlines()) <= 2, str(err.value)
    assert "eval" in str(err.value)


def test_paper_section_of_a_paper_without_config_schema_takes_no_keys(repo_root):
    config = yaml.safe_load((repo_root / "config" / "default.yaml").read_text())
    config["papers"] = {"gradcam": {}}
    validate_config(config)  # an empty section is fine
    config["papers"] = {"gradcam": {"anything": 1}}
    with pytest.raises(ConfigError, match=r"papers\.gradcam: 'anything' unexpected: paper 'gradcam' takes no settings"):
        validate_config(config, "mine.yaml")


def test_paper_section_is_checked_against_its_config_schema(repo_root, tmp_path, monkeypatch):
    import shared.paper_meta

    papers = tmp_path / "papers"
    demo = papers / "demo"
    demo.mkdir(parents=True)
    doc = yaml.safe_load((repo_root / "papers" / "gradcampp" / "paper.yaml").read_text())
    doc["id"] = "demo"
    doc["config_schema"] = {"type": "object", "additionalProperties": False, "properties": {"steps": {"type": "integer"}}}
    (demo / "paper.yaml").write_text(yaml.safe_dump(doc))
    (demo / "method.py").write_text("")
    (demo / "README.md").write_text("")
    monkeypatch.setattr(shared.paper_meta, "PAPERS_DIR", papers)
    config = yaml.safe_load((repo_root / "config" / "default.yaml").read_text())
    config["papers"] = {"demo": {"steps": 3}}
    validate_config(config)
    config["papers"] = {"demo": {"stpes": 3}}
    with pytest.raises(ConfigError, match=r"mine\.yaml: papers\.demo: .*'stpes' was unexpected.*allowed keys: steps"):
        validate_config(config, "mine.yaml")
    config["papers"] = {"gradcam": {}}
    with pytest.raises(ConfigError, match="no paper 'gradcam'.*papers: demo"):
        validate_config(config)


def test_workflow_config_fills_the_schema_defaults_as_snakemake_does(repo_root):
    """What the rules see (and hash into config_sha256): load_config plus the schema's defaults."""
    from shared.config import workflow_config, workflow_config_hash

    tiny = repo_root / "config" / "tiny.yaml"
    assert "label_smoothing" not in load_config(tiny)["models"]["resnet"]
    config = workflow_config(tiny)
    assert config["models"]["resnet"]["label_smoothing"] == 0.0  # config/schema.yaml's default
    assert workflow_config_hash(tiny) == config_hash(config) != config_hash(load_config(tiny))
    assert workflow_config_hash(tiny) != workflow_config_hash(repo_root / "config" / "default.yaml")


def test_a_paper_step_run_by_hand_gets_its_config_schema_defaults(monkeypatch):
    """`python -m papers.<id>.figures ...` without the workflow's settings in --config-json: the
    step sees the defaults of the paper's config_schema (shared.figure_step), as the rules pass them."""
    import importlib.machinery
    import sys

    from shared.config import paper_settings
    from shared.figure_step import _default_settings

    monkeypatch.setattr(sys.modules["__main__"], "__spec__", importlib.machinery.ModuleSpec("papers.normgrad.figures", None))
    assert _default_settings() == paper_settings({}, "normgrad") and "meta_lrs" in _default_settings()
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", importlib.machinery.ModuleSpec("shared.steps.retrieval", None))
    assert _default_settings() == {}


def test_a_step_knows_which_shared_maps_the_profile_computed(tmp_path):
    """`--maps` lists the map files the plan gave the step (the profile's method x model pairs): a
    pair left out (the rehearsal's Score-CAM) is absent even if an old file lies in data/maps."""
    from shared.figure_step import StepContext

    (tmp_path / "resnet").mkdir()
    (tmp_path / "resnet" / "scorecam.safetensors").write_bytes(b"stale")
    planned = frozenset([str(tmp_path / "resnet" / "gradcam.safetensors")])
    ctx = StepContext("train", [], [], ["gradcam", "scorecam"], tmp_path, {}, {}, planned_maps=planned)
    assert ctx.has_maps("resnet", "gradcam") and not ctx.has_maps("resnet", "scorecam")
    by_hand = StepContext("train", [], [], ["scorecam"], tmp_path, {}, {})  # no --maps: what lies there
    assert by_hand.has_maps("resnet", "scorecam") and not by_hand.has_maps("resnet", "gradcam")
