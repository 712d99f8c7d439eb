"""Fetch a real dataset: resumable, verified download, atomic extraction and conversion.

    python -m shared.data.fetch --name cub --out data/datasets/cub \
        --config-json '{"image_size": 224, "url": "...", "md5": "...", "size": 1150585339}'

Steps: (1) download ``url`` into ``<cache>/<file>.part`` with a progress bar, resuming an
interrupted download with an HTTP Range request; (2) check the pinned size and MD5/SHA-256 and
only then rename it to ``<cache>/<file>``; (3) extract into a temporary directory next to the
output; (4) convert into the common layout (:mod:`shared.data.convert`), itself written
atomically. Any failure raises :class:`FetchError` saying what is wrong and what to do, and
leaves nothing in the output directory (only a resumable ``.part`` in the cache when the
connection dropped).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.data.convert import CONVERTERS, REAL_NAMES
from shared.data.errors import FetchError

CHUNK = 1 << 20


def _hash_file(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _pinned_checksum(cfg: dict[str, Any], name: str) -> tuple[str, str]:
    for algorithm in ("sha256", "md5"):
        if cfg.get(algorithm):
            return algorithm, str(cfg[algorithm]).lower()
    raise FetchError(
        f"datasets.{name} pins no checksum: add `md5:` or `sha256:` of the archive to the config "
        "(an unverified download is never used)"
    )


def verify(path: Path, cfg: dict[str, Any], name: str) -> None:
    """Check ``path`` against the pinned size and checksum; raise :class:`FetchError` if not."""
    size = path.stat().st_size
    expected_size = cfg.get("size")
    if expected_size is not None and size != int(expected_size):
        kind = "truncated" if size < int(expected_size) else "too long"
        raise FetchError(
            f"{path.name} is {kind}: {size} bytes, expected {int(expected_size)} "
            f"(datasets.{name}.size). Rerun to resume the download; if it persists, the server "
            f"sends a different file than {cfg['url']} should — check the URL"
        )
    algorithm, expected = _pinned_checksum(cfg, name)
    actual = _hash_file(path, algorithm)
    if actual != expected:
        raise FetchError(
            f"{path.name}: {algorithm} checksum mismatch: expected {expected}, got {actual}. "
            f"The file is corrupt or the publisher changed it; it was deleted — rerun to download "
            f"it again, and if the mismatch persists check {cfg['url']} and, once you trust the "
            f"new file, update datasets.{name}.{algorithm} in the config"
        )


def download(url: str, dest: Path, expected_size: int | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest.part`` (resuming it when present); return the ``.part`` path.

    A server that honours Range continues where the partial file stops (206); one that does not
    sends the whole file again (200) and the partial file is restarted. A dropped connection
    raises :class:`FetchError` and keeps the partial file for the next attempt.
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    if expected_size is not None and offset == expected_size:
        return part
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return part  # the partial file already holds everything the server has
        raise FetchError(f"download of {url} failed: HTTP {err.code} {err.reason}; check the URL") from err
    except (urllib.error.URLError, OSError) as err:
        raise FetchError(f"cannot reach {url}: {err}; check the network or the URL") from err
    with response:
        if response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise FetchError(f"{url}: server answered Range {offset}- with {content_range!r}; delete {part}")
            mode = "ab"
        else:
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else expected_size
        received = 0
        with part.open(mode) as handle, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            try:
                while block := response.read(CHUNK):
                    handle.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, OSError) as err:
                raise FetchError(
                    f"connection to {url} dropped after {offset + received} bytes ({err}); "
                    f"the partial download is kept at {part} — rerun to resume"
                ) from err
        if length is not None and received < int(length):
            raise FetchError(
                f"connection to {url} closed after {offset + received} of {offset + int(length)} bytes; "
                f"the partial download is kept at {part} — rerun to resume"
            )
    return part


def fetch_archive(name: str, cfg: dict[str, Any], cache_dir: Path, progress: bool = True) -> Path:
    """Return the verified archive of dataset ``name`` in ``cache_dir``, downloading it if needed."""
    if not cfg.get("url"):
        raise FetchError(f"datasets.{name}.url is not set in the config; see config/paper-scale.yaml")
    _pinned_checksum(cfg, name)
    dest = cache_dir / str(cfg.get("filename") or cfg["url"].rstrip("/").rsplit("/", 1)[-1].split("?")[0])
    if dest.exists():
        try:
            verify(dest, cfg, name)
            return dest
        except FetchError:
            dest.unlink()  # a stale or damaged archive: fetch it again
    part = download(cfg["url"], dest, cfg.get("size"), progress)
    try:
        verify(part, cfg, name)
    except FetchError as err:
        # A complete but wrong file cannot be resumed into a right one; a short one can.
        if "truncated" not in str(err):
            part.unlink()
        raise
    os.replace(part, dest)
    return dest


def extract(archive: Path, into: Path) -> None:
    """Extract a tar archive (any compression) into ``into``, refusing unsafe members."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        detail = " ".join(str(err).split())  # tarfile lists every method tried, one per line
        raise FetchError(
            f"cannot extract {archive}: {detail}. The archive is damaged although its checksum "
            f"matched the config — the pinned checksum is probably wrong; delete {archive}, "
            "check the checksum against the publisher's and rerun"
        ) from err


def fetch(
    name: str,
    cfg: dict[str, Any],
    out: str | os.PathLike[str],
    image_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Download, verify, extract and convert dataset ``name`` into ``out``; return ``out``.

    ``image_size`` (default ``cfg["image_size"]``) is the side of the square images written;
    ``cache_dir`` (default ``<out's parent>/.downloads``) keeps the verified archive.
    """
    if name not in CONVERTERS:
        raise FetchError(f"unknown dataset {name!r}; choose one of {', '.join(REAL_NAMES)}")
    out = Path(out).resolve()
    size = int(image_size or cfg.get("image_size") or 0)
    if size < 16:
        raise FetchError(f"image size must be >= 16 pixels (--image-size or datasets.image_size), got {size}")
    cache = Path(cache_dir) if cache_dir is not None else out.parent / ".downloads"
    archive = fetch_archive(name, cfg, cache, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{out.name}.extract-", dir=out.parent))
    try:
        extract(archive, workdir)
        return CONVERTERS[name](workdir, out, size, archive.name, progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, choices=REAL_NAMES)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--config-json", required=True, help="{'image_size': ..., **datasets[name]}")
    parser.add_argument("--image-size", type=int, default=None, help="side of the written images")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where archives are kept")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        cfg = json.loads(args.config_json)
    except json.JSONDecodeError as err:
        parser.error(f"--config-json is not valid JSON ({err})")
    try:
        out = fetch(args.name, cfg, args.out, args.image_size, args.cache_dir, not args.no_progress)
    except (FetchError, ValueError) as err:
        print(f"error: {args.name}: {err}", file=sys.stderr)
        return 1
    print(f"{args.name}: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
