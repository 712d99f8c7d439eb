"""Miniature archives in the publishers' exact formats, to rehearse the paper-scale fetch offline.

The paper-scale config downloads three real archives (``config/paper-scale.yaml``,
``datasets:``). None can be downloaded here, so these builders write small archives with the
same file name, compression, folder layout and annotation formats as the real ones, filled with
synthetic pictures (coloured shapes on a textured background, each object drawn inside its box):

- :func:`build_imagenette` -> ``imagenette2-320.tgz``: ``imagenette2-320/{train,val}/<wnid>/*.JPEG``
  (320 px on the short side) and ``imagenette2-320/noisy_imagenette.csv``;
- :func:`build_voc2007_test` -> ``VOCtest_06-Nov-2007.tar`` (uncompressed):
  ``VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main,ImageSets/Segmentation,
  SegmentationClass,SegmentationObject}``, VOC XML with 1-based inclusive boxes;
- :func:`build_cub` -> ``CUB_200_2011.tgz``: ``CUB_200_2011/{images.txt, image_class_labels.txt,
  bounding_boxes.txt, classes.txt, train_test_split.txt, README, images/, parts/, attributes/}``
  and the top-level ``attributes.txt`` the real archive carries next to its folder.

Every build is byte-deterministic (same bytes, hence the same MD5, every run with the same
Pillow/libjpeg): sorted members with directory entries, one fixed mtime/uid/gid/owner, GNU tar
format, gzip header mtime 0 and no file name, JPEGs from seeded numpy pixels at a fixed quality.
What was put into an archive is described by the ``*_plan`` functions the builders draw from,
so tests can compare the converted datasets against it.
"""

from __future__ import annotations

import colorsys
import gzip
import hashlib
import io
import math
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from shared.data.convert import IMAGENETTE_WNIDS, VOC_CLASSES

FILENAMES = {
    "imagenette": "imagenette2-320.tgz",
    "voc2007": "VOCtest_06-Nov-2007.tar",
    "cub": "CUB_200_2011.tgz",
}
"""Archive file name of each dataset, keyed by its name in the config's ``datasets:`` section."""

TAR_MTIME = 1194307200  # 2007-11-06 00:00 UTC (VOC 2007 test's release), for every member
TAR_OWNER = ("repro", 1000)  # uname/gname and uid/gid of every member
JPEG_QUALITY = 75
SHAPES = ("ellipse", "rectangle", "triangle", "diamond")


# ----------------------------------------------------------------------------- shared helpers


def _tar_bytes(members: dict[str, bytes], gz: bool) -> bytes:
    """A tar (gzip-compressed if ``gz``) of ``members`` (path -> bytes) plus their folders, deterministic."""
    folders = {"/".join(name.split("/")[:i]) for name in members for i in range(1, name.count("/") + 1)}
    entries: list[tuple[str, bytes | None]] = [(f, None) for f in folders] + list(members.items())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in sorted(entries, key=lambda entry: entry[0]):
            info = tarfile.TarInfo(name)
            info.mtime = TAR_MTIME
            info.uname = info.gname = TAR_OWNER[0]
            info.uid = info.gid = TAR_OWNER[1]
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.mode, info.size = 0o644, len(data)
                tar.addfile(info, io.BytesIO(data))
    if not gz:
        return raw.getvalue()
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=6) as handle:
        handle.write(raw.getvalue())
    return packed.getvalue()


def _write(dest_dir: str | os.PathLike[str], filename: str, data: bytes) -> Path:
    """Write ``data`` to ``dest_dir/filename`` through a temporary file; return the path."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / filename
    tmp = dest / f".{filename}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _colour(hue: float, saturation: float = 0.8, value: float = 0.9) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32) * 255.0


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A muted, smooth colour field with stripes: texture that still compresses well in JPEG."""
    coarse = rng.uniform(70, 180, (4, 5, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse, "RGB").resize((width, height), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, freq, phase = rng.uniform(0, math.pi), rng.uniform(0.04, 0.12), rng.uniform(0, 2 * math.pi)
    stripes = 12.0 * np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
    return field + stripes[..., None]


def _shape_mask(height: int, width: int, box: tuple[float, float, float, float], shape: str) -> np.ndarray:
    """Boolean (H, W) mask of ``shape`` filling ``box`` = (x0, y0, x1, y1), 0-based inclusive pixels."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = box
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "ellipse":
        draw.ellipse(box, fill=255)
    elif shape == "rectangle":
        draw.rectangle(box, fill=255)
    elif shape == "triangle":
        draw.polygon([(x0, y1), (x1, y1), (mx, y0)], fill=255)
    elif shape == "diamond":
        draw.polygon([(mx, y0), (x1, my), (mx, y1), (x0, my)], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(mask) > 127


def _paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float = 1.0) -> None:
    canvas[mask] = (1.0 - alpha) * canvas[mask] + alpha * colour


def _jpeg(pixels: np.ndarray, grayscale: bool = False) -> bytes:
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    if grayscale:  # ImageNet and CUB both hold a few single-channel JPEGs
        image = image.convert("L")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=2)
    return buffer.getvalue()


def md5_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.md5()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def archive_entry(path: str | os.PathLike[str], url: str) -> dict:
    """The config's ``datasets.<name>`` entry for the archive at ``path`` served at ``url``."""
    path = Path(path)
    return {"url": url, "md5": md5_of(path), "size": path.stat().st_size}


# ----------------------------------------------------------------------------- Imagenette


@dataclass(frozen=True)
class NetteImage:
    """One picture of the miniature Imagenette."""

    split: str
    wnid: str
    filename: str
    width: int
    height: int
    grayscale: bool = False

    @property
    def member(self) -> str:
        return f"imagenette2-320/{self.split}/{self.wnid}/{self.filename}"

    @property
    def image_id(self) -> str:
        return self.filename.rsplit(".", 1)[0]

    @property
    def label(self) -> int:
        """The ImageNet-1k class index (what the converter writes)."""
        return IMAGENETTE_WNIDS[self.wnid][0]


def imagenette_plan(per_class_train: int = 2, per_class_val: int = 2, seed: int = 0) -> list[NetteImage]:
    """The pictures :func:`build_imagenette` writes, per split and class in archive order."""
    if per_class_train < 1 or per_class_val < 1:
        raise ValueError("Imagenette needs at least one train and one val image per class")
    rng = np.random.default_rng([seed, 1])
    wnids = sorted(IMAGENETTE_WNIDS)
    numbers = iter(rng.choice(np.arange(1, 50_000), len(wnids) * (per_class_train + per_class_val), replace=False))
    plan: list[NetteImage] = []
    for split, count in (("train", per_class_train), ("val", per_class_val)):
        for c, wnid in enumerate(wnids):
            images = []
            for k in range(count):
                number = int(next(numbers))
                # Like the real val/, which mixes ImageNet validation names and train-style names.
                name = f"ILSVRC2012_val_{number:08d}.JPEG" if split == "val" and k % 2 == 0 else f"{wnid}_{number}.JPEG"
                long_side = int(rng.integers(320, 481))
                width, height = (long_side, 320) if rng.random() < 0.75 else (320, long_side)
                grayscale = split == "train" and c == 1 and k == 0
                images.append(NetteImage(split, wnid, name, width, height, grayscale))
            plan.extend(sorted(images, key=lambda image: image.filename))
    return plan


def _imagenette_pixels(image: NetteImage, seed: int, index: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 11, index])
    canvas = _background(rng, image.height, image.width)
    c = sorted(IMAGENETTE_WNIDS).index(image.wnid)
    w = rng.uniform(0.35, 0.7) * image.width
    h = rng.uniform(0.35, 0.7) * image.height
    x0, y0 = rng.uniform(0, image.width - w), rng.uniform(0, image.height - h)
    mask = _shape_mask(image.height, image.width, (x0, y0, x0 + w - 1, y0 + h - 1), SHAPES[c % len(SHAPES)])
    _paint(canvas, mask, _colour(c / len(IMAGENETTE_WNIDS)))
    return canvas


def _noisy_csv(plan: list[NetteImage], seed: int) -> bytes:
    """``noisy_imagenette.csv`` as in the real archive: labels at 0/1/5/25/50 % noise, ``is_valid``."""
    rng = np.random.default_rng([seed, 12])
    wnids = sorted(IMAGENETTE_WNIDS)
    lines = ["path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,noisy_labels_50,is_valid"]
    for image in plan:
        noisy = [image.wnid]
        for percent in (1, 5, 25, 50):
            others = [w for w in wnids if w != image.wnid]
            noisy.append(others[int(rng.integers(len(others)))] if rng.random() < percent / 100 else image.wnid)
        path = image.member.split("/", 1)[1]
        lines.append(",".join([path, *noisy, str(image.split == "val")]))
    return ("\n".join(lines) + "\n").encode()


def build_imagenette(dest_dir: str | os.PathLike[str], per_class_train: int = 2, per_class_val: int = 2,
                     seed: int = 0) -> Path:
    """Write a miniature ``imagenette2-320.tgz`` into ``dest_dir``; return its path."""
    plan = imagenette_plan(per_class_train, per_class_val, seed)
    members = {image.member: _jpeg(_imagenette_pixels(image, seed, i), image.grayscale) for i, image in enumerate(plan)}
    members["imagenette2-320/noisy_imagenette.csv"] = _noisy_csv(plan, seed)
    return _write(dest_dir, FILENAMES["imagenette"], _tar_bytes(members, gz=True))


# ----------------------------------------------------------------------------- PASCAL VOC 2007 test


@dataclass(frozen=True)
class VocObject:
    """One annotated object; ``box`` is VOC's 1-based inclusive ``(xmin, ymin, xmax, ymax)``."""

    name: str
    box: tuple[int, int, int, int]
    difficult: bool = False
    truncated: bool = False
    pose: str = "Unspecified"
    head: tuple[int, int, int, int] | None = None  # a person's layout part, also 1-based inclusive

    @property
    def area(self) -> int:
        xmin, ymin, xmax, ymax = self.box
        return (xmax - xmin + 1) * (ymax - ymin + 1)


@dataclass(frozen=True)
class VocImage:
    image_id: str
    width: int
    height: int
    objects: tuple[VocObject, ...]
    segmented: bool = False

    @property
    def classes(self) -> list[str]:
        return [obj.name for obj in self.objects]


VOC_FIRST_IMAGE = VocImage(
    "000001", 500, 375,
    (VocObject("cat", (30, 60, 229, 330), pose="Left"), VocObject("dog", (270, 40, 480, 350), pose="Frontal")),
)
"""Image ``000001``, placed by hand: the Grad-CAM paper's cat-and-dog example (boxes fixed for tests)."""

VOC_SCENES: tuple[tuple[tuple[str, bool, bool], ...], ...] = (
    (("cat", False, False), ("dog", False, False)),  # VOC_FIRST_IMAGE the first time round
    (("car", False, False), ("bus", False, False)),
    (("horse", False, False), ("person", False, False)),
    (("cat", False, False), ("dog", False, True)),  # a small dog beside a cat
    (("bird", False, False),),
    (("person", False, False), ("person", True, False), ("bicycle", False, False)),
    (("dog", False, False), ("cat", True, False)),  # a difficult cat
    (("aeroplane", False, False),),
    (("bus", False, False), ("car", False, True)),  # a small car beside a bus
    (("dog", False, False), ("cat", False, False), ("sofa", True, False)),
    (("person", False, False), ("horse", False, False)),
    (("tvmonitor", True, False),),  # an image whose only object is difficult
)
"""Objects (class, difficult, small) of image ``i`` are ``VOC_SCENES[i % 12]``."""

VOC_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500))
_POSES = ("Left", "Right", "Frontal", "Rear", "Unspecified")


def _voc_id(i: int) -> str:
    # Non-contiguous like the real test ids (the trainval ids interleave with them).
    return f"{i + 1 + i // 2:06d}"


def _place(rng: np.random.Generator, width: int, height: int, scene) -> list[VocObject]:
    """Boxes for a scene's objects, side by side along the long axis (small ones < 5 % of the area)."""
    horizontal = width >= height
    along, across = (width, height) if horizontal else (height, width)
    cell = along / len(scene)
    objects = []
    for i, (name, difficult, small) in enumerate(scene):
        if small:
            size_along, size_across = rng.uniform(0.15, 0.2) * along, rng.uniform(0.15, 0.2) * across
        else:
            size_along, size_across = rng.uniform(0.6, 0.9) * cell, rng.uniform(0.5, 0.9) * across
        start_along = cell * i + rng.uniform(0, cell - size_along)
        start_across = rng.uniform(0, across - size_across)
        a0, c0 = int(start_along) + 1, int(start_across) + 1
        a1, c1 = min(along, a0 + int(size_along) - 1), min(across, c0 + int(size_across) - 1)
        box = (a0, c0, a1, c1) if horizontal else (c0, a0, c1, a1)
        truncated = box[0] == 1 or box[1] == 1 or box[2] == width or box[3] == height
        head = None
        if name == "person" and not difficult:
            xmin, ymin, xmax, ymax = box
            third = (xmax - xmin) // 3
            head = (xmin + third, ymin, xmax - third, ymin + (ymax - ymin) // 5)
        objects.append(VocObject(name, box, difficult, truncated, _POSES[int(rng.integers(len(_POSES)))], head))
    return objects


def voc2007_plan(n_images: int = 12, seed: int = 0) -> list[VocImage]:
    """The images :func:`build_voc2007_test` writes, in ``test.txt`` order."""
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    rng = np.random.default_rng([seed, 2])
    plan = []
    for i in range(n_images):
        if i == 0:
            plan.append(VOC_FIRST_IMAGE)
            continue
        width, height = VOC_SIZES[int(rng.integers(len(VOC_SIZES)))]
        objects = _place(rng, width, height, VOC_SCENES[i % len(VOC_SCENES)])
        plan.append(VocImage(_voc_id(i), width, height, tuple(objects), segmented=i == 1))
    return plan


def _voc_style(name: str) -> tuple[np.ndarray, str]:
    index = VOC_CLASSES.index(name)
    return _colour(index / len(VOC_CLASSES)), SHAPES[index % 3]


def _voc_render(image: VocImage, seed: int, index: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pixels and per-object masks; large objects first so small ones stay visible on top."""
    rng = np.random.default_rng([seed, 21, index])
    canvas = _background(rng, image.height, image.width)
    masks: list[np.ndarray] = [np.zeros((image.height, image.width), dtype=bool)] * len(image.objects)
    for k in sorted(range(len(image.objects)), key=lambda k: -image.objects[k].area):
        obj = image.objects[k]
        colour, shape = _voc_style(obj.name)
        xmin, ymin, xmax, ymax = obj.box
        masks[k] = _shape_mask(image.height, image.width, (xmin - 1, ymin - 1, xmax - 1, ymax - 1), shape)
        _paint(canvas, masks[k], colour, alpha=0.6 if obj.difficult else 1.0)
        if obj.head is not None:
            hx0, hy0, hx1, hy1 = obj.head
            head = _shape_mask(image.height, image.width, (hx0 - 1, hy0 - 1, hx1 - 1, hy1 - 1), "ellipse")
            _paint(canvas, head, np.array([230.0, 190.0, 160.0], dtype=np.float32))
    return canvas, masks


def _voc_xml(image: VocImage, flickr_id: int) -> bytes:
    """The annotation in VOC 2007's own layout (tab-indented, the same elements in the same order)."""

    def bndbox(box: tuple[int, int, int, int], indent: str) -> list[str]:
        return [f"{indent}<bndbox>",
                *(f"{indent}\t<{key}>{value}</{key}>" for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box)),
                f"{indent}</bndbox>"]

    lines = [
        "<annotation>",
        "\t<folder>VOC2007</folder>",
        f"\t<filename>{image.image_id}.jpg</filename>",
        "\t<source>",
        "\t\t<database>The VOC2007 Database</database>",
        "\t\t<annotation>PASCAL VOC2007</annotation>",
        "\t\t<image>flickr</image>",
        f"\t\t<flickrid>{flickr_id}</flickrid>",
        "\t</source>",
        "\t<owner>",
        "\t\t<flickrid>saliency-repro</flickrid>",
        "\t\t<name>miniature</name>",
        "\t</owner>",
        "\t<size>",
        f"\t\t<width>{image.width}</width>",
        f"\t\t<height>{image.height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        f"\t<segmented>{int(image.segmented)}</segmented>",
    ]
    for obj in image.objects:
        lines += [
            "\t<object>",
            f"\t\t<name>{obj.name}</name>",
            f"\t\t<pose>{obj.pose}</pose>",
            f"\t\t<truncated>{int(obj.truncated)}</truncated>",
            f"\t\t<difficult>{int(obj.difficult)}</difficult>",
            *bndbox(obj.box, "\t\t"),
        ]
        if obj.head is not None:
            lines += ["\t\t<part>", "\t\t\t<name>head</name>", *bndbox(obj.head, "\t\t\t"), "\t\t</part>"]
        lines.append("\t</object>")
    lines.append("</annotation>")
    return ("\n".join(lines) + "\n").encode()


def _voc_palette() -> list[int]:
    """VOC's segmentation colour map (index i -> the bit-interleaved colour VOCdevkit uses)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def _voc_segmentation(image: VocImage, masks: list[np.ndarray], by_class: bool) -> bytes:
    """A palette PNG: class (or object) index + 1 on each object, 255 (void) on its 2-px border."""
    seg = np.zeros((image.height, image.width), dtype=np.uint8)
    for k in sorted(range(len(masks)), key=lambda k: -image.objects[k].area):
        mask = masks[k]
        inner = mask.copy()
        for axis in (0, 1):
            for shift in (-2, 2):
                inner &= np.roll(mask, shift, axis=axis)
        seg[mask] = 255
        seg[inner] = VOC_CLASSES.index(image.objects[k].name) + 1 if by_class else k + 1
    png = Image.fromarray(seg, "P")
    png.putpalette(_voc_palette())
    buffer = io.BytesIO()
    png.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def build_voc2007_test(dest_dir: str | os.PathLike[str], n_images: int = 12, seed: int = 0) -> Path:
    """Write a miniature ``VOCtest_06-Nov-2007.tar`` into ``dest_dir``; return its path."""
    plan = voc2007_plan(n_images, seed)
    base = "VOCdevkit/VOC2007"
    rng = np.random.default_rng([seed, 22])
    members: dict[str, bytes] = {}
    for i, image in enumerate(plan):
        pixels, masks = _voc_render(image, seed, i)
        members[f"{base}/JPEGImages/{image.image_id}.jpg"] = _jpeg(pixels)
        members[f"{base}/Annotations/{image.image_id}.xml"] = _voc_xml(image, int(rng.integers(10**8, 10**9)))
        if image.segmented:
            members[f"{base}/SegmentationClass/{image.image_id}.png"] = _voc_segmentation(image, masks, True)
            members[f"{base}/SegmentationObject/{image.image_id}.png"] = _voc_segmentation(image, masks, False)
    ids = [image.image_id for image in plan]
    members[f"{base}/ImageSets/Main/test.txt"] = ("\n".join(ids) + "\n").encode()
    for name in VOC_CLASSES:  # <class>_test.txt: 1 present, 0 only difficult, -1 absent
        rows = []
        for image in plan:
            flags = [obj.difficult for obj in image.objects if obj.name == name]
            rows.append(f"{image.image_id} {(-1 if not flags else 0 if all(flags) else 1):2d}")
        members[f"{base}/ImageSets/Main/{name}_test.txt"] = ("\n".join(rows) + "\n").encode()
    segmented = [image.image_id for image in plan if image.segmented]
    if segmented:
        members[f"{base}/ImageSets/Segmentation/test.txt"] = ("\n".join(segmented) + "\n").encode()
    return _write(dest_dir, FILENAMES["voc2007"], _tar_bytes(members, gz=False))


# ----------------------------------------------------------------------------- CUB-200-2011


CUB_CLASSES = (
    "001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani",
    "005.Crested_Auklet", "006.Least_Auklet", "007.Parakeet_Auklet", "008.Rhinoceros_Auklet",
    "009.Brewer_Blackbird", "010.Red_winged_Blackbird", "011.Rusty_Blackbird", "012.Yellow_headed_Blackbird",
    "013.Bobolink", "014.Indigo_Bunting", "015.Lazuli_Bunting", "016.Painted_Bunting",
    "017.Cardinal", "018.Spotted_Catbird", "019.Gray_Catbird", "020.Yellow_breasted_Chat",
)
"""The first 20 of CUB-200-2011's ``classes.txt`` folder names."""

CUB_PARTS = ("back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing",
             "nape", "right eye", "right leg", "right wing", "tail", "throat")
"""``parts/parts.txt`` of CUB-200-2011 (part ids 1..15)."""

CUB_ATTRIBUTES = ("has_bill_shape::curved_(up_or_down)", "has_bill_shape::dagger", "has_bill_shape::hooked")
"""The first attributes of the real top-level ``attributes.txt`` (the real one has 312)."""


@dataclass(frozen=True)
class CubImage:
    """One picture; ``box`` is CUB's ``x y w h`` in pixels (floats in the file)."""

    image_id: int
    class_id: int
    path: str  # relative to CUB_200_2011/images/
    width: int
    height: int
    box: tuple[float, float, float, float]
    is_training: bool
    grayscale: bool = False

    @property
    def class_name(self) -> str:
        return CUB_CLASSES[self.class_id - 1].split(".", 1)[1]


def cub_plan(n_classes: int = 8, per_class: int = 3, seed: int = 0) -> list[CubImage]:
    """The pictures :func:`build_cub` writes, in ``images.txt`` order (ids 1..N)."""
    if not 2 <= n_classes <= len(CUB_CLASSES):
        raise ValueError(f"n_classes must be in 2..{len(CUB_CLASSES)}, got {n_classes}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng([seed, 3])
    plan: list[CubImage] = []
    for class_id in range(1, n_classes + 1):
        folder = CUB_CLASSES[class_id - 1]
        # File names capitalise every word of the class name: Black_Footed_Albatross_0046_18.jpg
        stem = "_".join(word[:1].upper() + word[1:] for word in folder.split(".", 1)[1].split("_"))
        numbers = rng.choice(np.arange(1, 130), per_class, replace=False)
        names = sorted(f"{folder}/{stem}_{int(n):04d}_{int(rng.integers(1, 800_000))}.jpg" for n in numbers)
        for k, path in enumerate(names):
            if rng.random() < 0.8:
                width, height = 500, int(rng.integers(300, 401))
            else:
                width, height = int(rng.integers(300, 401)), 500
            w, h = int(rng.uniform(0.4, 0.8) * width), int(rng.uniform(0.4, 0.8) * height)
            x = width - w if k == 1 else int(rng.uniform(0, width - w))  # some birds touch the edge
            y = int(rng.uniform(0, height - h))
            image_id = len(plan) + 1
            plan.append(CubImage(image_id, class_id, path, width, height, (float(x), float(y), float(w), float(h)),
                                 bool(rng.random() < 0.5), grayscale=image_id == 5))
    return plan


def _cub_pixels(image: CubImage, seed: int) -> np.ndarray:
    """A bird: body ellipse, head disc and beak triangle inside the box, in the class's colour."""
    rng = np.random.default_rng([seed, 31, image.image_id])
    canvas = _background(rng, image.height, image.width)
    x, y, w, h = image.box
    x1, y1 = x + w - 1, y + h - 1
    colour = _colour((image.class_id - 1) / 8.0, 0.7, 0.85)
    body = _shape_mask(image.height, image.width, (x, y + 0.3 * h, x1 - 0.2 * w, y1), "ellipse")
    head = _shape_mask(image.height, image.width, (x1 - 0.45 * w, y, x1 - 0.1 * w, y + 0.45 * h), "ellipse")
    beak = Image.new("L", (image.width, image.height), 0)
    tip = [(x1 - 0.12 * w, y + 0.15 * h), (x1, y + 0.22 * h), (x1 - 0.12 * w, y + 0.3 * h)]
    ImageDraw.Draw(beak).polygon(tip, fill=255)
    _paint(canvas, body, colour)
    _paint(canvas, head, colour * 0.7)
    _paint(canvas, np.asarray(beak) > 127, np.array([240.0, 200.0, 40.0], dtype=np.float32))
    return canvas


def build_cub(dest_dir: str | os.PathLike[str], n_classes: int = 8, per_class: int = 3, seed: int = 0) -> Path:
    """Write a miniature ``CUB_200_2011.tgz`` into ``dest_dir``; return its path."""
    plan = cub_plan(n_classes, per_class, seed)
    rng = np.random.default_rng([seed, 32])

    def text(lines: list[str]) -> bytes:
        return ("\n".join(lines) + "\n").encode()

    base = "CUB_200_2011"
    members = {f"{base}/images/{image.path}": _jpeg(_cub_pixels(image, seed), image.grayscale) for image in plan}
    members[f"{base}/classes.txt"] = text([f"{i} {name}" for i, name in enumerate(CUB_CLASSES[:n_classes], 1)])
    members[f"{base}/images.txt"] = text([f"{image.image_id} {image.path}" for image in plan])
    members[f"{base}/image_class_labels.txt"] = text([f"{image.image_id} {image.class_id}" for image in plan])
    members[f"{base}/bounding_boxes.txt"] = text(
        [f"{image.image_id} " + " ".join(f"{v:.1f}" for v in image.box) for image in plan])
    members[f"{base}/train_test_split.txt"] = text([f"{image.image_id} {int(image.is_training)}" for image in plan])
    members[f"{base}/README"] = text([
        "Miniature of the Caltech-UCSD Birds-200-2011 archive (saliency-repro tests): same layout and",
        f"file formats, {len(plan)} synthetic images of the first {n_classes} classes.",
    ])
    members[f"{base}/parts/parts.txt"] = text([f"{i} {name}" for i, name in enumerate(CUB_PARTS, 1)])
    locs = []
    for image in plan:
        x, y, w, h = image.box
        for part in range(1, len(CUB_PARTS) + 1):
            visible = rng.random() < 0.7
            px, py = (x + rng.uniform(0, w), y + rng.uniform(0, h)) if visible else (0.0, 0.0)
            locs.append(f"{image.image_id} {part} {px:.1f} {py:.1f} {int(visible)}")
    members[f"{base}/parts/part_locs.txt"] = text(locs)
    members[f"{base}/attributes/certainties.txt"] = text(["1 not visible", "2 guessing", "3 probably", "4 definitely"])
    members[f"{base}/attributes/image_attribute_labels.txt"] = text([
        f"{image.image_id} {a} {int(rng.random() < 0.3)} {int(rng.integers(1, 5))} {rng.uniform(1, 30):.4f}"
        for image in plan for a in range(1, len(CUB_ATTRIBUTES) + 1)])
    # The real archive also holds attributes.txt next to (not inside) CUB_200_2011/.
    members["attributes.txt"] = text([f"{i} {name}" for i, name in enumerate(CUB_ATTRIBUTES, 1)])
    return _write(dest_dir, FILENAMES["cub"], _tar_bytes(members, gz=True))


# ----------------------------------------------------------------------------- all three


def build_all(dest_dir: str | os.PathLike[str], seed: int = 0) -> dict[str, Path]:
    """The three miniatures with their default sizes, keyed by the config's dataset names."""
    return {
        "imagenette": build_imagenette(dest_dir, seed=seed),
        "voc2007": build_voc2007_test(dest_dir, seed=seed),
        "cub": build_cub(dest_dir, seed=seed),
    }
