"""Stand-in pretrained weights for the paper-scale models, loaded through timm's real path.

Nothing can be downloaded here, so ``pretrained: true`` (config/paper-scale.yaml) is rehearsed
with seeded random weights written in the Hugging Face hub cache layout, under the very repo ids
and file names timm's pretrained configs name (``timm/resnet50.a1_in1k``, ...). With the hub
offline (:func:`offline_hub_env`), ``timm.create_model(arch, pretrained=True)`` then resolves,
finds and loads them exactly as it will load the real ones: ``_resolve_pretrained_source`` →
``load_state_dict_from_hf`` → ``hf_hub_download`` (offline: ``refs/main`` → snapshot → blob) →
``safetensors.torch.load_file``.

What timm asks the hub for (timm 1.0, ``load_pretrained`` / ``load_state_dict_from_hf``): with no
``hf_hub_filename`` in the pretrained config it asks for ``pytorch_model.bin`` but tries its
safetensors alternative ``model.safetensors`` first, and only falls back to the ``.bin`` when that
is missing. So one file per repo, ``model.safetensors``, is all that is read; offline,
huggingface_hub reads nothing but ``refs/main`` and ``snapshots/<revision>/<filename>`` (a link to
``blobs/<sha256>``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["offline_hub_env", "pretrained_source", "repo_folder", "tensor_sha256", "write_standin_weights"]

MANIFEST = "standin-weights.json"
"""Per-cache record of what was written (at the cache root, where huggingface_hub never looks)."""

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def pretrained_source(arch: str) -> tuple[str, str]:
    """(hf_hub_id, filename) that ``timm.create_model(arch, pretrained=True)`` loads.

    Resolved by timm itself: the pretrained config its registry gives ``arch`` (default tag
    included), then ``_resolve_pretrained_source``, the function ``load_pretrained`` calls. Where
    the config names no ``hf_hub_filename``, ``load_state_dict_from_hf`` asks for
    ``pytorch_model.bin`` and takes its safetensors alternative first: that is the file returned.
    """
    from timm.models import get_pretrained_cfg
    from timm.models._builder import _resolve_pretrained_source
    from timm.models._hub import HF_WEIGHTS_NAME, _get_safe_alternatives

    cfg = get_pretrained_cfg(arch)
    if cfg is None:
        raise ValueError(f"timm has no pretrained config for {arch!r}")
    load_from, loc = _resolve_pretrained_source(cfg.to_dict())
    if load_from != "hf-hub":
        raise ValueError(f"timm loads {arch!r} from {load_from or 'nowhere'} ({loc!r}), not from the Hugging Face hub")
    hub_id, filename = loc if isinstance(loc, (list, tuple)) else (loc, HF_WEIGHTS_NAME)
    if not filename.endswith(".safetensors"):
        safe = list(_get_safe_alternatives(filename))
        if not safe:
            raise ValueError(f"timm loads {arch!r} from {hub_id}/{filename}, which has no safetensors alternative")
        filename = safe[0]
    return str(hub_id), str(filename)


def repo_folder(hub_cache: Path, hub_id: str) -> Path:
    """``hub_cache/models--<org>--<name>``, huggingface_hub's folder for a model repo."""
    from timm.models._hub import hf_split

    repo_id, _ = hf_split(hub_id)
    return Path(hub_cache) / ("models--" + repo_id.replace("/", "--"))


def tensor_sha256(tensor: Any) -> str:
    """sha256 of a tensor's raw bytes (contiguous, on the CPU)."""
    import torch

    return hashlib.sha256(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def arch_seed(arch: str, seed: int = 0) -> int:
    """``seed`` plus a per-arch offset that is stable across processes and machines (CRC-32)."""
    return int(seed) + zlib.crc32(arch.encode())


def _revision(hub_id: str, sha256: str) -> str:
    """A 40-hex "commit" for the snapshot: determined by the repo and the file it holds."""
    return hashlib.sha1(f"standin-weights\0{hub_id}\0{sha256}".encode()).hexdigest()


def _standin_state_dict(arch: str, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict, pretrained cfg) of ``arch`` built with ``pretrained=False`` and its default head."""
    import timm
    import torch

    torch.manual_seed(arch_seed(arch, seed))
    model = timm.create_model(arch, pretrained=False)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return state, dict(model.pretrained_cfg)


def _present(repo: Path, filename: str, entry: dict[str, Any]) -> bool:
    """Whether ``entry`` (from the manifest) is still on disk, links and bytes intact."""
    try:
        revision = (repo / "refs" / "main").read_text()
        snapshot = repo / "snapshots" / revision / filename
        return (
            revision == entry["revision"]
            and os.readlink(snapshot) == os.path.join("..", "..", "blobs", entry["sha256"])
            and _file_sha256(snapshot) == entry["sha256"]
        )
    except (OSError, KeyError):
        return False


def write_standin_weights(hub_cache: Path, archs: Iterable[str], seed: int = 0) -> dict[str, dict]:
    """Write seeded stand-in weights for ``archs`` into the hub cache ``hub_cache``.

    Per arch: ``torch.manual_seed(seed + crc32(arch))``, ``timm.create_model(arch,
    pretrained=False)`` (default 1000-class head), its state dict saved as safetensors (float32, as
    the real weights) to ``models--timm--<name>/blobs/<sha256>``, linked (relatively, like
    huggingface_hub) from ``snapshots/<revision>/<filename>``, with ``refs/main`` holding the
    revision. Same seed, same timm and torch → same bytes, so a file already there with the hash
    recorded in the cache's manifest is not written again (VGG-16 is 528 MB). A cache holds one
    stand-in per repo: writing another seed replaces it.

    Returns per arch: ``hf_hub_id``, ``filename``, ``revision``, ``path`` (the snapshot file),
    ``sha256`` (of the file), ``size``, ``tensor`` (the first conv's weight, by timm's
    ``first_conv``) and its ``tensor_sha256``, ``seconds`` spent writing (0 when skipped) and
    ``written``.
    """
    import safetensors.torch
    import timm
    import torch

    hub_cache = Path(hub_cache)
    hub_cache.mkdir(parents=True, exist_ok=True)
    manifest_path = hub_cache / MANIFEST
    manifest: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    versions = f"timm {timm.__version__}, torch {torch.__version__}"
    out: dict[str, dict] = {}
    for arch in archs:
        hub_id, filename = pretrained_source(arch)
        repo = repo_folder(hub_cache, hub_id)
        key = f"{arch} seed={seed}"
        entry = manifest.get(key)
        if entry and entry.get("versions") == versions and entry.get("hf_hub_id") == hub_id and _present(repo, filename, entry):
            out[arch] = {**entry, "path": str(repo / "snapshots" / entry["revision"] / filename), "seconds": 0.0, "written": False}
            continue

        start = time.perf_counter()
        state, cfg = _standin_state_dict(arch, seed)
        if cfg.get("hf_hub_id") != hub_id:
            raise RuntimeError(f"{arch}: the model's pretrained_cfg ({cfg.get('hf_hub_id')}) disagrees with timm's registry ({hub_id})")
        first_conv = cfg.get("first_conv")
        tensor = (first_conv if isinstance(first_conv, str) else first_conv[0]) + ".weight"
        # written to a temporary name, then renamed to its hash (no second 528 MB copy in memory)
        blobs = repo / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        tmp = blobs / f".standin-{os.getpid()}.incomplete"
        safetensors.torch.save_file(state, tmp, metadata={"format": "pt"})
        sha256 = _file_sha256(tmp)
        blob = blobs / sha256
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)  # safetensors creates 0600; huggingface_hub's blobs follow the umask
        os.replace(tmp, blob)
        revision = _revision(hub_id, sha256)
        assert _COMMIT.match(revision)

        snapshot = repo / "snapshots" / revision / filename
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        if snapshot.is_symlink() or snapshot.exists():
            snapshot.unlink()
        os.symlink(os.path.join("..", "..", "blobs", sha256), snapshot)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)  # no newline, as huggingface_hub writes it
        # one stand-in per repo: what an earlier seed (or version) left there goes
        for old in (repo / "snapshots").iterdir():
            if old.name != revision:
                shutil.rmtree(old)
        for old in blobs.iterdir():
            if old.name != sha256:
                old.unlink()

        entry = dict(
            arch=arch,
            seed=seed,
            versions=versions,
            hf_hub_id=hub_id,
            filename=filename,
            revision=revision,
            sha256=sha256,
            size=blob.stat().st_size,
            tensor=tensor,
            tensor_sha256=tensor_sha256(state[tensor]),
        )
        manifest[key] = entry
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        out[arch] = {**entry, "path": str(snapshot), "seconds": round(time.perf_counter() - start, 3), "written": True}
    return out


def offline_hub_env(hub_cache: Path) -> dict[str, str]:
    """Environment for a process whose timm must load from ``hub_cache`` and never reach the network.

    huggingface_hub reads these once, at import (``huggingface_hub.constants``), so they must be in
    the environment of a fresh process. ``HF_HUB_CACHE`` (and the legacy ``HUGGINGFACE_HUB_CACHE``)
    is where ``hf_hub_download`` looks; ``HF_HUB_OFFLINE=1`` makes every HTTP call raise
    ``OfflineModeIsEnabled`` (so a missing file is a ``LocalEntryNotFoundError``, not a
    download); telemetry, implicit tokens and progress bars are off. ``TIMM_USE_OLD_CACHE=0`` keeps
    timm on the hub path (with it set, timm prefers an old torch.hub cache of the config's url).
    """
    hub_cache = str(Path(hub_cache).resolve())
    return {
        "HF_HUB_CACHE": hub_cache,
        "HUGGINGFACE_HUB_CACHE": hub_cache,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TIMM_USE_OLD_CACHE": "0",
    }
