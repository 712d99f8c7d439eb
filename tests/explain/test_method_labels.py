"""Display labels: ``@register_method(..., label=...)`` is what readers see in tables and figures;
result keys, files and JSON records keep the registered name. SFAM's CIS is derived by us, so
it is shown as "SFAM (derived CIS)" (papers/sfam/README.md says how to swap in the paper's)."""

from __future__ import annotations

import json

import pytest

from shared.explain import get_method, register_method
from shared.explain.registry import registered
from shared.pipeline import leaderboard, table
from shared.plotting import method_label as figure_label
from shared.registry_meta import method_info, method_label, method_table
from shared.results import ResultRecord, read_records, write_records

SFAM = "SFAM (derived CIS)"


def _records() -> list[ResultRecord]:
    return [
        ResultRecord(metric, method, model, "parts", value, value - 0.1, value + 0.1, 8)
        for model in ("embed_cosine", "embed_euclidean")
        for method, value in (("sfam", 0.6), ("gradcam_similarity", 0.5))
        for metric in ("relevance_mass", "pointing_game")
    ]


def test_label_read_at_parse_time_equals_the_imported_registry():
    assert method_info("sfam")["label"] == SFAM == method_label("sfam") == figure_label("sfam")
    assert get_method("sfam").label == SFAM
    assert method_label("gradcam") == "gradcam" and get_method("gradcam").label == "gradcam"
    assert method_label("gradcam_b2") == "gradcam_b2" == get_method("gradcam_b2").label
    assert method_label("not_a_registered_method") == "not_a_registered_method"
    for name in method_table():
        get_method(name)
    runtime = registered()
    for name, info in method_table().items():
        assert runtime[name].label == info["label"], name


def test_a_table_with_sfam_shows_its_label_and_keeps_the_name_as_key(tmp_path):
    records = _records()
    md, csv_text = table.render(records, ["relevance_mass", "pointing_game"], ["sfam", "gradcam_similarity"], None, "Localisation")
    rows = [line for line in md.splitlines() if line.startswith("| parts |")]
    assert rows[0].startswith(f"| parts | embed_cosine | {SFAM} | 0.600 [")
    assert "| gradcam_similarity |" in rows[1] and "| sfam |" not in md
    assert csv_text.splitlines()[1].startswith("parts,embed_cosine,sfam,0.6,")  # the CSV keeps the key
    write_records(records, tmp_path / "results.json")  # JSON records keyed by the name
    assert {r.method for r in read_records(tmp_path / "results.json")} == {"sfam", "gradcam_similarity"}
    assert SFAM not in (tmp_path / "results.json").read_text()
    assert json.loads((tmp_path / "results.json").read_text())


def test_leaderboard_figure_ticks_show_the_label(tmp_path, monkeypatch):
    ticks: list[list[str]] = []

    def capture(fig, path):
        ticks.extend([t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes[:1])  # shared y axis

    monkeypatch.setattr(leaderboard, "save_figure", capture)
    leaderboard.leaderboard_figure(_records(), ["relevance_mass", "pointing_game"], tmp_path / "lb.png")
    assert ticks == [["gradcam_similarity", SFAM]]


def test_label_must_be_a_non_empty_string():
    with pytest.raises(ValueError, match="label must be a non-empty string"):
        register_method("some_method", label=" ")
