"""Fixtures for the data tests: a local HTTP server with Range support, tiny real-format archives."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@dataclass
class Served:
    """What the test server holds: path -> bytes, plus failure injection."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before hanging up
    ranges_seen: list[str | None] = field(default_factory=list)
    honour_range: bool = True


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        served = self.served
        body = served.files.get(self.path)
        header = self.headers.get("Range")
        served.ranges_seen.append(header)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if header and served.honour_range:
            start = int(header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        drop = served.drop_after.pop(self.path, None)
        if drop is not None:
            # Announce the full length but hang up early: a dropped connection.
            self.wfile.write(payload[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture
def http_server() -> Iterator[tuple[str, Served]]:
    """A threaded HTTP server on 127.0.0.1 serving ``Served.files``; yields (base URL, Served)."""
    served = Served()
    handler = type("Handler", (_Handler,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def jpeg_bytes(rng: np.random.Generator, height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_tar(members: dict[str, bytes], gz: bool) -> bytes:
    """A tar (gzip-compressed if ``gz``) holding ``members`` (path -> bytes), deterministic."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def imagenette_members(rng: np.random.Generator) -> dict[str, bytes]:
    """Imagenette-320 layout: two classes, 2 train + 1 val image each, varied sizes."""
    members = {}
    for wnid in ("n01440764", "n03888605"):
        for split, count in (("train", 2), ("val", 1)):
            for i in range(count):
                members[f"imagenette2-320/{split}/{wnid}/{wnid}_{split}{i}.JPEG"] = jpeg_bytes(rng, 24, 32 + 4 * i)
    members["imagenette2-320/noisy_imagenette.csv"] = b"path,noisy_labels_0\n"
    return members


CUB_BOXES = {1: (2.0, 3.0, 10.0, 8.0), 2: (0.0, 0.0, 40.0, 30.0), 3: (5.5, 4.5, 6.0, 6.0), 4: (10.0, 2.0, 20.0, 20.0)}
"""CUB fixture boxes ``x y w h`` per image id, on 40 x 30 images (image 2's box is the whole image)."""


def cub_members(rng: np.random.Generator) -> dict[str, bytes]:
    """CUB-200-2011 layout with 4 classes (train = 1, 2; test = 3, 4), one image each."""
    classes = {1: "001.Black_footed_Albatross", 2: "002.Laysan_Albatross", 3: "003.Sooty_Albatross", 4: "004.Groove_billed_Ani"}
    members = {}
    images, labels, boxes = [], [], []
    for image_id, class_id in ((1, 1), (2, 2), (3, 3), (4, 4)):
        path = f"{classes[class_id]}/img_{image_id}.jpg"
        members[f"CUB_200_2011/images/{path}"] = jpeg_bytes(rng, 30, 40)
        images.append(f"{image_id} {path}")
        labels.append(f"{image_id} {class_id}")
        boxes.append(f"{image_id} " + " ".join(str(v) for v in CUB_BOXES[image_id]))
    members["CUB_200_2011/images.txt"] = ("\n".join(images) + "\n").encode()
    members["CUB_200_2011/image_class_labels.txt"] = ("\n".join(labels) + "\n").encode()
    members["CUB_200_2011/bounding_boxes.txt"] = ("\n".join(boxes) + "\n").encode()
    members["CUB_200_2011/classes.txt"] = ("\n".join(f"{k} {v}" for k, v in classes.items()) + "\n").encode()
    return members


VOC_OBJECTS = {
    "000001": [("dog", (1, 1, 20, 10)), ("person", (21, 5, 40, 30))],
    "000004": [("car", (5, 6, 15, 16))],
}
"""VOC fixture objects (class, 1-based inclusive xmin ymin xmax ymax) on 40 x 30 images."""

VOC_DIFFICULT = {("000001", 1)}
"""(image id, object index) of the fixture objects flagged ``<difficult>1</difficult>``."""


def voc_members(rng: np.random.Generator) -> dict[str, bytes]:
    members = {}
    for image_id, objects in VOC_OBJECTS.items():
        xml = ["<annotation><filename>%s.jpg</filename><size><width>40</width><height>30</height>"
               "<depth>3</depth></size>" % image_id]
        for k, (name, (x0, y0, x1, y1)) in enumerate(objects):
            difficult = int((image_id, k) in VOC_DIFFICULT)
            xml.append(f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin>"
                       f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
        xml.append("</annotation>")
        members[f"VOCdevkit/VOC2007/Annotations/{image_id}.xml"] = "".join(xml).encode()
        members[f"VOCdevkit/VOC2007/JPEGImages/{image_id}.jpg"] = jpeg_bytes(rng, 30, 40)
    members["VOCdevkit/VOC2007/ImageSets/Main/test.txt"] = ("\n".join(VOC_OBJECTS) + "\n").encode()
    return members


ARCHIVES = {
    "imagenette": ("imagenette2-320.tgz", imagenette_members, True),
    "cub": ("CUB_200_2011.tgz", cub_members, True),
    "voc2007": ("VOCtest_06-Nov-2007.tar", voc_members, False),
}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def build_archive():
    """Build a tiny archive of a real dataset's format: ``build(name, drop=None) -> (filename, bytes)``.

    ``drop`` names a member to leave out (a file missing inside the archive), ``drop_prefix``
    a whole folder.
    """

    def build(name: str, drop: str | None = None, drop_prefix: str | None = None) -> tuple[str, bytes]:
        filename, members_of, gz = ARCHIVES[name]
        members = members_of(np.random.default_rng(0))
        if drop is not None:
            assert drop in members, drop
            del members[drop]
        if drop_prefix is not None:  # a whole folder missing from the archive
            kept = {k: v for k, v in members.items() if not k.startswith(drop_prefix)}
            assert len(kept) < len(members), drop_prefix
            members = kept
        return filename, make_tar(members, gz)

    return build


@pytest.fixture
def fixture_facts():
    """Ground truth the fixture archives were built with (for independent assertions)."""
    return {"cub_boxes": CUB_BOXES, "voc_objects": VOC_OBJECTS, "md5": md5}
