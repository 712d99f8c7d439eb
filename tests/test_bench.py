"""The benchmark registry and the merge into reports/bench.json."""

import json

import pytest

from shared.bench import list_benchmarks, machine_info, register_benchmark, run_benchmarks


@register_benchmark("_test_constant")
def _constant(quick):
    return {"value": 1.0 / 3.0, "quick_seen": quick}


def test_run_writes_and_merges(tmp_path):
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"benchmarks": {"older": {"x": 1}}}))
    report = run_benchmarks(["_test_constant"], out=out, quick=True)
    data = json.loads(out.read_text())
    assert data == report
    assert data["benchmarks"]["older"] == {"x": 1}  # earlier entries survive
    assert data["benchmarks"]["_test_constant"] == {"value": 0.333333, "quick_seen": True, "quick": True}
    assert "date" not in out.read_text()


def test_unknown_benchmark_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_benchmarks(["nope"], out=tmp_path / "b.json")
    assert "deletion_insertion" in list_benchmarks()


def test_machine_info_describes_the_machine():
    info = machine_info()
    assert info["cores"] >= 1 and info["torch_threads"] >= 1 and info["device"] == "cpu"
    assert set(info) == {"cpu", "cores", "torch_threads", "torch", "device", "gpu", "python", "platform"}


@pytest.mark.slow
def test_deletion_benchmark_agrees_with_the_loop(tmp_path):
    report = run_benchmarks(["deletion_insertion"], out=tmp_path / "b.json", quick=True)
    entry = report["benchmarks"]["deletion_insertion"]
    assert entry["max_abs_auc_diff"] <= 1e-6
    assert entry["batched_s"] > 0 and entry["loop_s"] > 0


@register_benchmark("_test_needs_a_missing_library")
def _needs_missing(quick):
    import saliency_repro_no_such_module  # noqa: F401

    return {}


@register_benchmark("_test_interrupted")
def _interrupted(quick):
    raise KeyboardInterrupt


def test_a_missing_optional_library_skips_that_benchmark_only(tmp_path):
    out = tmp_path / "bench.json"
    report = run_benchmarks(["_test_needs_a_missing_library", "_test_constant"], out=out, quick=True)
    assert report["benchmarks"]["_test_needs_a_missing_library"]["skipped"].startswith("missing dependency")
    assert report["benchmarks"]["_test_constant"]["value"] == 0.333333


def test_what_was_measured_survives_an_interruption(tmp_path):
    out = tmp_path / "bench.json"
    with pytest.raises(KeyboardInterrupt):
        run_benchmarks(["_test_constant", "_test_interrupted"], out=out, quick=True)
    assert json.loads(out.read_text())["benchmarks"]["_test_constant"]["value"] == 0.333333
