"""The workflow on SLURM, through profiles/slurm and the SLURM executor plugin (the `slurm` extra).

Without a cluster (fast): the profile gives a GPU to the rules that use one and to no other, and
every rule that writes reports/ runs on the login node.

On a real one-node cluster (slow; root only): Debian's slurm-wlm and munge (installed when
missing, removed again afterwards), a munge key, slurm.conf and gres.conf written to a temporary
directory, munged, slurmctld and slurmd started here and stopped when the module is done. One
model's branch of the tiny DAG (the shapes dataset, the ResNet trained and gated, its explain job
with gradcampp's methods, a diff table and the dataset figure) runs there with a job made to fail
first: the failure shows the job's log and deletes no committed file; the rerun resumes, and every
file it made equals a local run's, byte for byte (the model's sidecar but for its timings).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
SBIN = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin"
GPU_RULES = {"train_model", "explain_maps", "score_maps"}  # and explain_<model>
CONFIG = ["--configfile", "config/tiny.yaml"]
# one model's branch of the tiny DAG; REPRO_BATCH_SCOPE=gradcampp: explain_resnet computes
# gradcampp's methods (gradcampp, gradcam) only
TARGETS = [
    "data/models/resnet.gate.json",
    "data/scores/resnet/gradcampp.json",
    "reports/diff/resnet/gradcam+gradcampp.md",
    "reports/data/shapes.png",
]
SITE = {  # what a user exports for their site (profiles/slurm): the test cluster's partitions and sizes
    "REPRO_SLURM_PARTITION": "cpu",
    "REPRO_SLURM_GPU_PARTITION": "gpu",
    "REPRO_SLURM_GPU_CPUS": "1",
    "REPRO_SLURM_GPU_MEM_MB": "1000",
}


def needs_plugin() -> None:
    pytest.importorskip(
        "snakemake_executor_plugin_slurm",
        reason="the SLURM executor plugin is the `slurm` extra: uv run --frozen --extra slurm pytest (README)",
    )


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_", "SALIENCY_", "SLURM_"))}
    # the cluster checkout holds the committed (default) pins and runs the tiny config on purpose
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "REPRO_OVERWRITE_PINS": "1", **extra}


def is_gpu_rule(name: str) -> bool:
    return name in GPU_RULES or name.startswith("explain_")


# --- the profile, without a cluster -------------------------------------------------------------


def planned_jobs(out: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run prints."""
    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", out):
        m = re.match(r"rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if m and res:
            jobs.append((m.group(1), dict(kv.split("=", 1) for kv in res.group(1).split(", "))))
    return jobs


def test_profile_gives_a_gpu_only_to_the_rules_that_use_one(clean_tree):
    needs_plugin()
    env = base_env(REPRO_SLURM_ACCOUNT="proj42", REPRO_SLURM_PARTITION="short", REPRO_SLURM_GPU_PARTITION="gpu", REPRO_SLURM_GPU_MODEL="a100", REPRO_BATCH_SCOPE="gradcampp")
    # the whole tiny DAG; explain_<model> cover gradcampp's methods only, so the per-(model,
    # method) fallbacks explain_maps / score_maps make the others: every kind of job is planned
    out = subprocess.run([SNAKEMAKE, "--workflow-profile", "profiles/slurm", "-n", "--nolock", *CONFIG], cwd=clean_tree, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    jobs = planned_jobs(out.stdout)
    rules = {rule for rule, _ in jobs}
    assert {"train_model", "explain_resnet", "explain_maps", "score_maps", "gradcampp_results", "gradcam_sanity"} <= rules, rules
    for rule, res in jobs:
        assert res.get("slurm_account") == "proj42", (rule, res)
        if is_gpu_rule(rule):
            assert (res.get("gpu"), res.get("gpu_model"), res.get("slurm_partition"), res.get("cpus_per_task")) == ("1", "a100", "gpu", "8"), (rule, res)
            assert "slurm_extra" not in res and "gres" not in res, (rule, res)
        else:
            assert "gpu" not in res and res.get("slurm_partition") == "short", (rule, res)


def test_every_rule_that_writes_reports_runs_on_the_login_node(clean_tree, tmp_path):
    """rules/cluster.smk: the cluster runs only the GPU rules, which write data/ alone (a failed
    cluster job then deletes nothing committed); every other rule is a local rule."""
    inspect = clean_tree / "Snakefile.inspect"
    inspect.write_text(
        'include: "Snakefile"\n\n'
        "import json as _json\n"
        f"Path({str(tmp_path / 'rules.json')!r}).write_text(_json.dumps({{r.name: [r.name in workflow._localrules or r.norun, "
        "[str(f) for f in r.output]] for r in workflow.rules}))\n"
    )
    try:
        out = subprocess.run([SNAKEMAKE, "-s", "Snakefile.inspect", "-n", "--nolock", *CONFIG], cwd=clean_tree, env=base_env(), capture_output=True, text=True, timeout=300)
    finally:
        inspect.unlink()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rules = json.loads((tmp_path / "rules.json").read_text())
    cluster = {name for name, (local, _) in rules.items() if not local}
    assert cluster == {name for name in rules if is_gpu_rule(name)}, cluster
    assert {"train_model", "explain_resnet", "explain_maps", "score_maps", "fetch_dataset", "prefetch"} <= set(rules)
    for name in cluster:
        assert all(f.startswith("data/") for f in rules[name][1]), (name, rules[name][1])


# --- a real one-node cluster --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing() -> list[str]:
    return [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "scontrol") if shutil.which(b, path=SBIN) is None]


def _apt(*args: str) -> str | None:
    """None if the apt-get command worked, else why not."""
    cmd = ["apt-get", *args]
    try:
        out = subprocess.run(cmd, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{' '.join(cmd)}`: {exc}"
    return None if out.returncode == 0 else f"`{' '.join(cmd)}` failed: {(out.stderr or out.stdout)[-1500:]}"


def _stop(pidfile: Path) -> None:
    """End the daemon whose pid the file holds (TERM, then KILL after 10 s)."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().split()[2]
            except OSError:
                return
            if state == "Z":  # exited; its parent (init) has not reaped it yet
                return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM cluster on this machine: its slurm.conf (also linked as
    /etc/slurm/slurm.conf: the plugin's job step drops SLURM_CONF from the environment of the srun
    it starts, which then reads the default path). Yields the environment that talks to it."""
    if os.geteuid() != 0:
        pytest.skip("a real SLURM cluster needs root (it installs slurm-wlm and munge and runs their daemons); CI runs it as root")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("the SLURM executor plugin is missing: run the suite as README says, uv run --frozen --extra slurm pytest")
    installed = []
    if _missing():
        why = _apt("update", "-q") or _apt("install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge")
        if why:
            pytest.skip(f"cannot install Debian's slurm-wlm and munge: {why}")
        installed = ["slurm-wlm", "slurmctld", "slurmd", "slurm-client", "munge"]
    assert not _missing(), f"slurm-wlm and munge are installed but these are missing: {_missing()}"
    etc_conf = Path("/etc/slurm/slurm.conf")
    if etc_conf.is_symlink() and "repro-slurm" in os.readlink(etc_conf):
        etc_conf.unlink()  # left by an earlier run of this test that was killed
    if etc_conf.exists() or etc_conf.is_symlink():
        pytest.skip(f"{etc_conf} exists: this machine has its own SLURM configuration, which this test does not touch")

    d = tmp_path_factory.mktemp("repro-slurm")
    for sub in ("state", "spool", "munge"):
        (d / sub).mkdir(mode=0o700)
    host = socket.gethostname().split(".")[0]
    mem_mb = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 2)
    key = d / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o600)
    sock = d / "munge" / "munge.socket"
    conf = d / "slurm.conf"
    conf.write_text(
        f"""ClusterName=repro
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={d / 'state'}
SlurmdSpoolDir={d / 'spool'}
SlurmctldPidFile={d / 'slurmctld.pid'}
SlurmdPidFile={d / 'slurmd.pid'}
SlurmctldLogFile={d / 'slurmctld.log'}
SlurmdLogFile={d / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=300
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory={mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP
"""
    )
    # a GPU that is no device (no CUDA here): what the profile's request is checked against
    (d / "gres.conf").write_text(f"NodeName={host} Name=gpu File=/dev/null\n")
    env = base_env(SLURM_CONF=str(conf))
    pidfiles = [d / "slurmd.pid", d / "slurmctld.pid", d / "munge" / "munged.pid"]
    try:
        subprocess.run(
            ["munged", "--force", f"--key-file={key}", f"--socket={sock}", f"--pid-file={pidfiles[2]}",
             f"--log-file={d / 'munge' / 'munged.log'}", f"--seed-file={d / 'munge' / 'munged.seed'}"],
            env=env, check=True, capture_output=True, text=True, timeout=60,
        )
        etc_conf.symlink_to(conf)
        subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True, capture_output=True, text=True, timeout=60)
        subprocess.run(["slurmd", "-f", str(conf), "-N", host], env=env, check=True, capture_output=True, text=True, timeout=60)
        state = ""
        for _ in range(120):
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout.split()
            if state and all(s == "idle" for s in state):
                break
            time.sleep(0.5)
        else:
            logs = "\n".join(f"{p.name}:\n{p.read_text()[-2000:]}" for p in (d / "slurmctld.log", d / "slurmd.log") if p.exists())
            pytest.fail(f"the node never became idle (sinfo: {state})\n{logs}")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True, timeout=30)
        if etc_conf.is_symlink():
            etc_conf.unlink()
        for pidfile in pidfiles:
            _stop(pidfile)
        if installed:
            # slurm-client on a machine with no reachable controller makes the plugin's import run
            # `scontrol show config` until it times out: +10 s on every later snakemake call
            _apt("remove", "-y", "-q", *installed)


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return out, time.monotonic() - started


def outputs(tree: Path) -> dict[str, bytes]:
    """Every file the run made under data/ and reports/; the model sidecar without its timings."""
    found = {}
    for p in sorted([*(tree / "data").rglob("*"), *(tree / "reports").rglob("*")]):
        if not p.is_file() or p.name in (".gitkeep", ".snakemake_timestamp"):
            continue
        rel, data = str(p.relative_to(tree)), p.read_bytes()
        if rel == "data/models/resnet.json":
            sidecar = json.loads(data)
            sidecar["training"] = {k: v for k, v in sidecar["training"].items() if not k.endswith("_seconds")}
            data = json.dumps(sidecar, sort_keys=True).encode()
        found[rel] = data
    return found


def started_rules(log: str) -> dict[str, set[str]]:
    """Rules of the jobs a run started: {"local": ..., "cluster": ...}."""
    return {
        "local": set(re.findall(r"^localrule (\w+):", log, re.M)),
        "cluster": set(re.findall(r"^rule (\w+):", log, re.M)),
    }


@pytest.mark.slow
def test_tiny_branch_on_slurm_equals_a_local_run(slurm_cluster, first_run, clean_tree, repo_root, tmp_path, record_property):
    # The local reference is the tiny workflow's own cold run (tests/workflow/conftest.py), made
    # without the batch scope, which changes which job computes a file, never the file (rules/
    # batch.smk): only the diff table, which no paper asks for, is added, in a copy.
    local = shutil.copytree(first_run, tmp_path / "local", symlinks=True)
    out, local_s = run([SNAKEMAKE, "reports/diff/resnet/gradcam+gradcampp.md", "--cores", "2", *CONFIG], local, base_env())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert started_rules(out.stdout + out.stderr)["local"] | started_rules(out.stdout + out.stderr)["cluster"] == {"diff"}, out.stdout[-3000:]
    expected = outputs(local)
    assert {"data/models/resnet.safetensors", "data/scores/resnet/gradcampp.json", "reports/diff/resnet/gradcam+gradcampp.md"} <= set(expected)

    # the cluster's checkout, with the committed reports/ as a clone has them
    cluster = shutil.copytree(clean_tree, tmp_path / "cluster")
    tracked = subprocess.run(["git", "ls-files", "reports"], cwd=repo_root, capture_output=True, text=True, check=True).stdout.split()
    committed = {rel: (repo_root / rel).read_bytes() for rel in tracked if (repo_root / rel).is_file()}
    assert committed, "no committed reports/ to protect"
    for rel, data in committed.items():
        (cluster / rel).parent.mkdir(parents=True, exist_ok=True)
        (cluster / rel).write_bytes(data)
    cmd = [SNAKEMAKE, *TARGETS, "--workflow-profile", "profiles/slurm", *CONFIG]
    env = {**slurm_cluster, **SITE, "REPRO_BATCH_SCOPE": "gradcampp"}

    # 1. training fails on the node (an unknown device): its log is shown, nothing committed goes
    failed, failed_s = run(cmd, cluster, {**env, "SALIENCY_DEVICE": "not-a-device"})
    log = failed.stdout + failed.stderr
    assert failed.returncode != 0, log[-3000:]
    assert "Error in rule train_model" in log and "unknown device 'not-a-device' (from SALIENCY_DEVICE)" in log, log[-5000:]
    assert started_rules(log)["cluster"] == {"train_model"}, started_rules(log)
    for rel, data in committed.items():
        assert (cluster / rel).exists(), f"the failed run deleted the committed {rel}"
        if rel not in TARGETS:
            assert (cluster / rel).read_bytes() == data, f"the failed run changed the committed {rel}"

    # 2. the rerun resumes (the dataset is not made again) and finishes
    rerun, rerun_s = run(cmd, cluster, env)
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-5000:]
    jobs = started_rules(log)
    assert jobs["cluster"] == {"train_model", "explain_resnet"}, jobs
    assert "dataset" not in jobs["local"] and {"gate_model", "diff"} <= jobs["local"], jobs

    # 3. the same bytes as the local run, file for file (the local run made the whole tiny DAG)
    got = {rel: data for rel, data in outputs(cluster).items() if rel not in committed or rel in TARGETS}
    assert set(TARGETS) <= set(got) and set(got) <= set(expected), sorted(set(got) - set(expected))
    differing = [rel for rel in got if got[rel] != expected[rel]]
    assert not differing, f"the cluster run made other bytes than the local run: {differing}"

    # 4. what SLURM was asked for: only the GPU jobs, on the GPU partition, each with one GPU
    shown = subprocess.run(["scontrol", "show", "job", "-o"], env=slurm_cluster, capture_output=True, text=True).stdout
    asked = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in shown.splitlines() if line.strip()]
    assert len(asked) == 3, shown  # the failed training, the training, the explain job
    for job in asked:
        assert job["Comment"] in ("rule_train_model_wildcards_resnet", "rule_explain_resnet"), job
        assert (job["Partition"], job["TresPerJob"], job["NumCPUs"]) == ("gpu", "gres:gpu:1", "1"), job
    for name, seconds in (("local_s", local_s), ("cluster_failed_s", failed_s), ("cluster_rerun_s", rerun_s)):
        record_property(name, round(seconds, 1))
    print(f"local {local_s:.0f} s; on SLURM: failing run {failed_s:.0f} s, rerun {rerun_s:.0f} s")
