"""`repro run` and `repro verify` take a Snakemake profile (--profile profiles/slurm), and the slurm
profile's settings hold whichever way Snakemake loads it. (What the profile asks of a cluster:
tests/workflow/test_slurm.py.)"""

from __future__ import annotations

import subprocess

import pytest

from shared import cli, provenance_cli


@pytest.fixture
def calls(monkeypatch, repo_root):
    """The commands `repro` runs, instead of running them (from the repository root)."""
    seen: list[list[str]] = []
    monkeypatch.chdir(repo_root)
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: seen.append(list(cmd)) or 0)
    return seen


def test_run_passes_the_profile_as_the_workflow_profile(calls, repo_root):
    assert cli.main(["run", "gradcam", "--profile", "profiles/slurm", "--configfile", "config/paper-scale.yaml"]) == 0
    cmd = calls[-1]
    assert cmd[cmd.index("--workflow-profile") + 1] == str(repo_root / "profiles" / "slurm")
    assert "--cores" not in cmd  # the cluster profile's own limits
    assert cmd[-1] == "gradcam" and cmd[cmd.index("--configfile") + 1] == "config/paper-scale.yaml"

    cli.main(["run", "--profile", "slurm", "-c", "4"])  # a profile's name, as snakemake takes it
    cmd = calls[-1]
    assert cmd[cmd.index("--workflow-profile") + 1] == "slurm" and cmd[cmd.index("--cores") + 1] == "4"

    cli.main(["run", "gradcam"])  # no profile: every core, profiles/default as before
    assert "--workflow-profile" not in calls[-1] and "--cores" in calls[-1]


def test_verify_passes_the_profile_and_recomputes_on_the_shared_filesystem(monkeypatch, repo_root, tmp_path):
    scratch_under, commands = [], []

    def scratch_copy(root, under=None):
        scratch_under.append(under)
        (tmp_path / "scratch").mkdir()
        return tmp_path / "scratch"

    def fake_run(cmd, **kw):
        commands.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 1, "", "stopped by the test")

    monkeypatch.setattr(provenance_cli, "_scratch_copy", scratch_copy)
    monkeypatch.setattr(provenance_cli.subprocess, "run", fake_run)
    code, report = provenance_cli.verify("gradcampp", "config/tiny.yaml", None, repo_root, profile="slurm")
    assert code == 2 and "stopped by the test" in report
    cmd = commands[-1]
    assert cmd[1] == "gradcampp" and "--cores" not in cmd
    assert cmd[cmd.index("--workflow-profile") + 1] == str(repo_root / "profiles" / "slurm")
    # the login node's /tmp is not the compute nodes': the scratch copy goes in the checkout
    assert scratch_under == [repo_root / ".snakemake" / "verify"]


def test_repro_verify_cli_forwards_profile_and_cores(monkeypatch, calls):
    got = []
    monkeypatch.setattr(provenance_cli, "verify", lambda paper, configfile, cores, root, profile=None: got.append((paper, cores, profile)) or (0, "ok"))
    assert cli.main(["verify", "gradcampp", "--profile", "profiles/slurm"]) == 0
    assert cli.main(["verify", "gradcampp", "-c", "3"]) == 0
    assert got[0] == ("gradcampp", None, "profiles/slurm") and got[1][:2] == ("gradcampp", "3") and got[1][2] is None


@pytest.mark.parametrize("how", ["--workflow-profile", "--profile"])
def test_slurm_profile_settings_hold_however_it_is_loaded(how, monkeypatch, repo_root):
    """Given as --profile, Snakemake also loads profiles/default as the workflow profile, whose
    keys win: it must set none that contradicts profiles/slurm (latency-wait was one)."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="the SLURM executor plugin is the `slurm` extra: uv run --frozen --extra slurm pytest")
    from snakemake.cli import parse_args

    monkeypatch.chdir(repo_root)
    for name in ("ACCOUNT", "PARTITION", "GPU_PARTITION", "GPU", "GPU_MODEL", "GPU_CPUS", "GPU_MEM_MB", "STATUS_COMMAND"):
        monkeypatch.delenv(f"REPRO_SLURM_{name}", raising=False)
    monkeypatch.setenv("REPRO_SLURM_STATUS_COMMAND", "squeue")
    _, args = parse_args([how, "profiles/slurm", "-n"])
    assert args.executor == "slurm"
    assert args.latency_wait == 60 and args.show_failed_logs and not args.keep_going
    assert {t.name for t in args.rerun_triggers} == {"MTIME", "PARAMS", "INPUT", "CODE"}
    assert args.slurm_status_command == "squeue"
    train = args.set_resources["train_model"]
    assert (train["gpu"].value, train["cpus_per_task"].value) == (1, 8)
    # memory and run time are the rule's measured budget (config resources), unless the site sets them
    assert "mem_mb" not in train.keys() and "runtime" not in train.keys()
    assert "slurm_account" not in args.default_resources.keys() and "slurm_partition" not in args.default_resources.keys()

    _, local = parse_args(["-n"])  # profiles/default alone: unchanged
    assert local.executor is None and local.cores == 2 and local.latency_wait == 5
