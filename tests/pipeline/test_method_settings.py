"""The config's methods: section: a profile's method x model pairs and each method's arguments."""

import pytest

from shared.config import ConfigError, load_config
from shared.paper_plan import method_applies, method_kwargs, models_for, plan_papers
from shared.pipeline.explain import build_for


def _config(methods):
    config = load_config("config/default.yaml")
    config["methods"] = methods
    return config


def test_models_restrict_the_pairs_everywhere_the_plan_looks():
    config = _config({"gradcam": {"models": ["resnet"]}})
    assert models_for("gradcam", config) == ["resnet"]
    assert method_applies("gradcam_b2", "vit", config) is False  # block variants follow their base
    assert models_for("eigencam", config) == sorted(config["models"])  # others unchanged
    plans = plan_papers(config)
    gradcam_scores = {f for plan in plans.values() for f in plan.scores if f.endswith("/gradcam.json")}
    assert gradcam_scores == {"data/scores/resnet/gradcam.json"}


def test_a_model_the_method_does_not_apply_to_stays_out():
    config = _config({"gradcampp": {"models": ["resnet", "vit"]}})  # Grad-CAM++ is CNN-only
    assert models_for("gradcampp", config) == ["resnet"]


def test_arguments_reach_the_constructor_and_unknown_ones_are_named(tmp_path):
    from shared.models import build_adapter

    adapter = build_adapter("resnet", {"arch": "resnet_small", "task": "classifier"}, ["a", "b"]).explain_mode()
    config = _config({"gradcam": {"models": ["resnet"], "block": 2}})
    assert method_kwargs("gradcam", config) == {"block": 2}
    explainer = build_for("gradcam", adapter, str(tmp_path), method_kwargs("gradcam", config))
    assert explainer.layer != adapter.target_layer  # the second block, not the default layer
    with pytest.raises(ValueError, match=r"methods\.gradcam sets n_masks, which 'gradcam' does not take"):
        build_for("gradcam", adapter, str(tmp_path), {"n_masks": 10})


def test_an_ill_typed_section_stops_the_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods:\n  gradcam:\n    models: resnet\n")
    with pytest.raises(ConfigError, match="methods"):
        load_config(bad)


def test_a_misspelt_method_or_a_block_variant_key_stops_the_plan():
    """A key of methods: that names no method would be ignored silently; a block variant's own key
    too (naflow_b1 reads naflow's settings): both stop the plan, naming the fix."""
    from shared.paper_meta import PaperError

    with pytest.raises(PaperError, match="unknown method 'gradcamm'"):
        plan_papers(_config({"gradcamm": {"models": ["resnet"]}}))
    with pytest.raises(PaperError, match="set them under methods.naflow"):
        plan_papers(_config({"naflow_b1": {"iterations": 2}}))
