"""The paper-scale ``pretrained: true`` path, rehearsed offline with stand-in weights.

Seeded random weights are written in the Hugging Face hub cache layout under the repo ids timm's
pretrained configs name; a fresh process with the hub offline (:func:`offline_hub_env`, read by
huggingface_hub at import) then builds the models with ``pretrained=True``, both straight through
timm and through the project's ``shared.models.zoo.build_model`` with the paper-scale model
configs. Every weight the built model holds must be the stand-in's, byte for byte. Sockets are
blocked in that process: any connection attempt is recorded and fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .standin_weights import MANIFEST, offline_hub_env, pretrained_source, repo_folder, write_standin_weights

REPO_ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "resnet50": ("timm/resnet50.a1_in1k", "model.safetensors"),
    "vgg16.tv_in1k": ("timm/vgg16.tv_in1k", "model.safetensors"),
    "deit_small_patch16_224": ("timm/deit_small_patch16_224.fb_in1k", "model.safetensors"),
}
ARCHS = list(EXPECTED)
VGG = "vgg16.tv_in1k"
# VGG-16's stand-in (528 MB) is written and loaded through timm's pretrained path by the rehearsal
# (tests/paper_scale/test_rehearsal.py checks the plaincnn checkpoint's tensor against it); here
# only the id it resolves to is checked, which keeps this file fast.
FAST_ARCHS = [a for a in ARCHS if a != VGG]

# (case id, arch, timm.create_model kwargs): as shared/models/zoo.py and config/paper-scale.yaml build them
TIMM_CASES = [
    ("resnet50", "resnet50", {}),
    ("resnet50-embedding-backbone", "resnet50", {"num_classes": 0, "global_pool": ""}),
    ("deit_small", "deit_small_patch16_224", {}),
]
# paper-scale model name -> arch, built by shared.models.zoo.build_model (the workflow's path)
ZOO_MODELS = {"resnet": "resnet50", "vit": "deit_small_patch16_224", "embed_cosine": "resnet50"}


def _params(cases: list, arch_of) -> list:
    return [pytest.param(*c, id=c[0]) for c in cases]


# Runs in a fresh interpreter so the offline environment is in place when huggingface_hub is
# imported. Prints one JSON object: what huggingface_hub read, socket attempts, one result per case.
CHILD = r"""
import hashlib, json, socket, sys

attempts = []
def _blocked(*args, **kwargs):
    attempts.append(repr(args[1:2] or args[:1]))
    raise OSError("network blocked by the stand-in weights test")
socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked

import torch
torch.set_num_threads(2)
import timm
from huggingface_hub import constants
from safetensors.torch import load_file

spec = json.loads(sys.argv[1])
result = {"hf_hub_cache": constants.HF_HUB_CACHE, "offline": constants.HF_HUB_OFFLINE, "cases": {}}

def compare(model, prefix, path, tensor):
    # every model tensor that is in the stand-in file must equal it; list the model's others
    standin = load_file(path)
    state = model.state_dict()
    ours = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    differ = [k for k in ours if k in standin and not torch.equal(ours[k], standin[k])]
    t = state[prefix + tensor].detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
    return {
        "equal": sum(1 for k in ours if k in standin) - len(differ),
        "differ": differ,
        "not_in_file": sorted(set(state) - {prefix + k for k in standin}),
        "file_unused": sorted(set(standin) - set(ours)),
        "tensor_sha256": hashlib.sha256(t).hexdigest(),
        "type": type(model).__name__,
    }

for case in spec["cases"]:
    torch.manual_seed(12345)  # not the stand-in's seed: a random init cannot pass for it
    try:
        if case["via"] == "zoo":
            from shared.config import load_config
            from shared.models.zoo import build_model
            cfg = load_config(spec["configfile"])["models"][case["name"]]
            model = build_model(cfg, ())
            prefix = "backbone." if cfg.get("task") == "embedding" else ""
        else:
            model = timm.create_model(case["arch"], pretrained=case["pretrained"], **case["kwargs"])
            prefix = ""
        result["cases"][case["id"]] = compare(model, prefix, case["path"], case["tensor"])
    except Exception as exc:
        chain, e = [], exc
        while e is not None:
            chain.append(type(e).__name__)
            e = e.__cause__ or e.__context__
        result["cases"][case["id"]] = {"error": f"{type(exc).__name__}: {exc}", "chain": chain}

result["socket_attempts"] = attempts
print("RESULT " + json.dumps(result))
"""


def run_offline(hub_cache: Path, cases: list[dict], timeout: float = 300) -> dict:
    """Run CHILD with ``offline_hub_env(hub_cache)`` and no other HF_* setting of ours leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TIMM_"))}
    env.update(offline_hub_env(hub_cache))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    spec = {"cases": cases, "configfile": str(REPO_ROOT / "config" / "paper-scale.yaml")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"child failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _cases(written: dict[str, dict], archs: list[str]) -> list[dict]:
    cases = [
        dict(id=cid, via="timm", arch=arch, pretrained=True, kwargs=kw, path=written[arch]["path"], tensor=written[arch]["tensor"])
        for cid, arch, kw in TIMM_CASES
        if arch in archs
    ]
    return cases + [
        dict(id=f"zoo:{name}", via="zoo", name=name, path=written[arch]["path"], tensor=written[arch]["tensor"])
        for name, arch in ZOO_MODELS.items()
        if arch in archs
    ]


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """A module-wide hub cache with the stand-ins of FAST_ARCHS."""
    cache = tmp_path_factory.mktemp("hf-hub-cache")
    return cache, write_standin_weights(cache, FAST_ARCHS, seed=0)


@pytest.fixture(scope="module")
def loaded(standin: tuple[Path, dict[str, dict]]) -> dict:
    """One offline process building the FAST_ARCHS cases with ``pretrained=True``, and one control without."""
    cache, written = standin
    w = written["resnet50"]
    control = dict(id="control", via="timm", arch="resnet50", pretrained=False, kwargs={}, path=w["path"], tensor=w["tensor"])
    return run_offline(cache, _cases(written, FAST_ARCHS) + [control])


def _loaded_for(arch: str, request: pytest.FixtureRequest) -> tuple[dict[str, dict], dict]:
    return request.getfixturevalue("standin")[1], request.getfixturevalue("loaded")


@pytest.mark.parametrize("arch", ARCHS)
def test_pretrained_source_is_what_timm_resolves(arch: str) -> None:
    import timm
    import torch

    assert pretrained_source(arch) == EXPECTED[arch]
    with torch.device("meta"):  # the model's own pretrained_cfg, without initialising 138 M weights
        cfg = timm.create_model(arch, pretrained=False).pretrained_cfg
    assert cfg["hf_hub_id"] == EXPECTED[arch][0] and not cfg.get("hf_hub_filename")


def _check_layout(cache: Path, w: dict) -> None:
    """huggingface_hub's layout for one repo: refs/main -> snapshots/<rev>/<file> -> ../../blobs/<sha256>."""
    repo = repo_folder(cache, w["hf_hub_id"])
    revision = (repo / "refs" / "main").read_text()
    assert re.fullmatch(r"[0-9a-f]{40}", revision) and revision == w["revision"]
    snapshot = repo / "snapshots" / revision / "model.safetensors"
    assert snapshot.is_symlink() and os.readlink(snapshot) == f"../../blobs/{w['sha256']}"
    assert str(snapshot) == w["path"] and snapshot.resolve() == (repo / "blobs" / w["sha256"])
    assert snapshot.stat().st_size == w["size"] and snapshot.stat().st_mode & 0o444 == 0o444  # readable by all, as hub blobs
    # nothing else: one ref, one snapshot holding one file, one blob
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == sorted(
        ["blobs", f"blobs/{w['sha256']}", "refs", "refs/main", "snapshots", f"snapshots/{revision}",
         f"snapshots/{revision}/model.safetensors"]
    )


def test_hub_cache_layout(standin: tuple[Path, dict[str, dict]]) -> None:
    cache, written = standin
    assert {p.name for p in cache.iterdir()} >= {MANIFEST} | {"models--" + EXPECTED[a][0].replace("/", "--") for a in FAST_ARCHS}
    assert {p.name for p in cache.iterdir()} <= {MANIFEST} | {"models--" + EXPECTED[a][0].replace("/", "--") for a in ARCHS}
    for w in written.values():
        _check_layout(cache, w)


@pytest.mark.parametrize("which", ["loaded"])
def test_offline_env_reaches_huggingface_hub(which: str, standin: tuple[Path, dict[str, dict]], request: pytest.FixtureRequest) -> None:
    loaded = request.getfixturevalue(which)
    assert loaded["hf_hub_cache"] == str(standin[0].resolve())
    assert loaded["offline"] is True
    assert loaded["socket_attempts"] == []


@pytest.mark.parametrize(("case", "arch", "kwargs"), _params(TIMM_CASES, lambda c: c[1]))
def test_timm_pretrained_loads_the_standin(case: str, arch: str, kwargs: dict, request: pytest.FixtureRequest) -> None:
    written, loaded = _loaded_for(arch, request)
    got = loaded["cases"][case]
    assert "error" not in got, got
    assert got["tensor_sha256"] == written[arch]["tensor_sha256"]
    assert got["differ"] == [] and got["not_in_file"] == [] and got["equal"] > 0
    # a headless backbone leaves only the classifier behind
    if kwargs.get("num_classes") == 0:
        assert got["file_unused"] == ["fc.bias", "fc.weight"]
    else:
        assert got["file_unused"] == []


@pytest.mark.parametrize(("name", "arch"), _params(list(ZOO_MODELS.items()), lambda c: c[1]))
def test_project_builder_loads_the_standin(name: str, arch: str, request: pytest.FixtureRequest) -> None:
    """``shared.models.zoo.build_model`` with the paper-scale configs: the workflow's path."""
    written, loaded = _loaded_for(arch, request)
    got = loaded["cases"][f"zoo:{name}"]
    assert "error" not in got, got
    assert got["tensor_sha256"] == written[arch]["tensor_sha256"]
    assert got["differ"] == []
    if name == "embed_cosine":
        # the backbone is all stand-in; only the new 1x1 projection is not in the file
        assert got["type"] == "EmbeddingNet"
        assert got["not_in_file"] == ["embed.bias", "embed.weight"] and got["file_unused"] == ["fc.bias", "fc.weight"]
    else:
        assert got["not_in_file"] == [] and got["file_unused"] == []


def test_random_init_is_not_the_standin(standin: tuple[Path, dict], loaded: dict) -> None:
    """Control: ``pretrained=False`` in the same process gives other weights (the match is not luck)."""
    _, written = standin
    got = loaded["cases"]["control"]
    assert got["tensor_sha256"] != written["resnet50"]["tensor_sha256"]
    # every randomly initialised tensor (the 53 convs and the classifier) differs
    assert {"conv1.weight", "layer4.2.conv3.weight", "fc.weight"} <= set(got["differ"]) and len(got["differ"]) >= 54


def test_empty_cache_fails_offline_without_network(tmp_path: Path) -> None:
    got = run_offline(tmp_path, [dict(id="empty", via="timm", arch="resnet50", pretrained=True, kwargs={}, path="", tensor="conv1.weight")])
    err = got["cases"]["empty"]
    assert "LocalEntryNotFoundError" in err["chain"], err
    assert "OfflineModeIsEnabled" in err["chain"], err  # refused by offline mode, not by a failed connection
    assert "cannot find the requested files" in err["error"]
    assert got["socket_attempts"] == []
    assert list(tmp_path.iterdir()) == []  # and nothing was written


def test_deterministic_and_written_once(standin: tuple[Path, dict], tmp_path: Path) -> None:
    """A second cache gets the same bytes; a second write is skipped; a damaged file is rewritten."""
    cache, first = standin
    again = write_standin_weights(tmp_path, FAST_ARCHS, seed=0)
    for arch in FAST_ARCHS:
        assert {k: again[arch][k] for k in KEYS} == {k: first[arch][k] for k in KEYS}
        assert again[arch]["written"]

    skipped = write_standin_weights(tmp_path, FAST_ARCHS, seed=0)
    assert [skipped[a]["written"] for a in FAST_ARCHS] == [False] * len(FAST_ARCHS)
    assert {a: skipped[a]["sha256"] for a in FAST_ARCHS} == {a: first[a]["sha256"] for a in FAST_ARCHS}

    blob = Path(skipped["resnet50"]["path"]).resolve()
    blob.write_bytes(b"damaged")
    repaired = write_standin_weights(tmp_path, ["resnet50"], seed=0)["resnet50"]
    assert repaired["written"] and repaired["sha256"] == first["resnet50"]["sha256"]
    assert Path(repaired["path"]).resolve() == blob and blob.stat().st_size == first["resnet50"]["size"]

    # another seed, other weights; it replaces the repo's stand-in (one blob, one snapshot)
    other = write_standin_weights(tmp_path, ["resnet50"], seed=1)["resnet50"]
    assert other["written"] and other["sha256"] != first["resnet50"]["sha256"]
    assert other["tensor_sha256"] != first["resnet50"]["tensor_sha256"]
    _check_layout(tmp_path, other)


KEYS = ("hf_hub_id", "filename", "revision", "sha256", "size", "tensor", "tensor_sha256")
