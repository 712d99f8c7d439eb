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
